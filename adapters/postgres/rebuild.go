package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/gamemodes/gamemodes/modules/rebuild"
	"github.com/jackc/pgx/v5/pgxpool"
)

// RebuildArchive reads archived events for a rebuild.
type RebuildArchive struct {
	pool *pgxpool.Pool
}

var _ rebuild.Archive = (*RebuildArchive)(nil)

// NewRebuildArchive returns a reader on pool.
func NewRebuildArchive(pool *pgxpool.Pool) *RebuildArchive { return &RebuildArchive{pool: pool} }

// PlayerEvents streams the events received in [from, to], grouped by user,
// each user's in stream order (received_at, then stream sequence: the
// stream time survives a recreated stream whose sequences restart).
func (r *RebuildArchive) PlayerEvents(ctx context.Context, from, to time.Time, each func(string, []rebuild.ArchivedEvent) error) error {
	rows, err := r.pool.Query(ctx, `
		SELECT user_id, event_type, region, game_mode, received_at
		FROM event
		WHERE received_at >= $1 AND received_at <= $2
		ORDER BY user_id, received_at, stream_seq`, from, to)
	if err != nil {
		return fmt.Errorf("query events: %w", err)
	}
	defer rows.Close()
	var (
		user   string
		events []rebuild.ArchivedEvent
	)
	for rows.Next() {
		var e rebuild.ArchivedEvent
		if err := rows.Scan(&e.UserID, &e.Type, &e.Region, &e.GameMode, &e.ReceivedAt); err != nil {
			return fmt.Errorf("scan event: %w", err)
		}
		if e.UserID != user && len(events) > 0 {
			if err := each(user, events); err != nil {
				return err
			}
			events = events[:0]
		}
		user = e.UserID
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read events: %w", err)
	}
	if len(events) > 0 {
		return each(user, events)
	}
	return nil
}
