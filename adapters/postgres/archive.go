// Package postgres adapts gamemodes to Postgres through pgx: the connection
// pool and the archive store of the archiver (tables event and
// rejected_event of the migrations in sql/).
package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gamemodes/gamemodes/modules/archive"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Open returns a connection pool on url (a postgres:// URL or key=value
// string). It does not connect yet: a Postgres that is down at start only
// fails the first use. Connection attempts time out after 5 s unless url
// sets connect_timeout.
func Open(ctx context.Context, url string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres url: %w", err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	cfg.MaxConnIdleTime = time.Minute
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres pool: %w", err)
	}
	return pool, nil
}

// Archive is the archiver's store: it writes batches of events and
// rejected messages in one transaction each, idempotently.
type Archive struct {
	pool *pgxpool.Pool
}

var _ archive.Store = (*Archive)(nil)

// NewArchive returns an archive store on pool.
func NewArchive(pool *pgxpool.Pool) *Archive { return &Archive{pool: pool} }

// stageTable is a session-local staging table: COPY fills it, one INSERT
// moves its rows into event, and the commit empties it.
const stageTable = "gamemodes_archive_event_stage"

var stageColumns = []string{
	"event_id", "user_id", "event_type", "event_payload", "timestamp",
	"stream_seq", "partition", "region", "game_mode", "received_at",
}

const createStage = `CREATE TEMP TABLE IF NOT EXISTS ` + stageTable + ` (
	event_id      TEXT,
	user_id       TEXT,
	event_type    TEXT,
	event_payload JSONB,
	timestamp     TIMESTAMP,
	stream_seq    BIGINT,
	partition     INT,
	region        TEXT,
	game_mode     INT,
	received_at   TIMESTAMPTZ
) ON COMMIT DELETE ROWS`

// The first occurrence in stream order wins when one event_id was stored
// twice (under different Nats-Msg-Ids), whatever the order the copies are
// archived in: after a crash a redelivered earlier copy can come after a
// later one. Rewriting the same row changes nothing.
const moveStage = `INSERT INTO event AS e (event_id, user_id, event_type, event_payload, timestamp,
	stream_seq, partition, region, game_mode, received_at)
SELECT DISTINCT ON (event_id) event_id, user_id, event_type, event_payload, timestamp,
	stream_seq, partition, region, game_mode, received_at
FROM ` + stageTable + `
ORDER BY event_id, received_at, stream_seq
ON CONFLICT (event_id) DO UPDATE SET
	user_id = excluded.user_id, event_type = excluded.event_type, event_payload = excluded.event_payload,
	timestamp = excluded.timestamp, stream_seq = excluded.stream_seq, partition = excluded.partition,
	region = excluded.region, game_mode = excluded.game_mode, received_at = excluded.received_at,
	archived_at = now()
WHERE (excluded.received_at, excluded.stream_seq) < (e.received_at, e.stream_seq)`

const insertRejected = `INSERT INTO rejected_event (stream_seq, received_at, subject, msg_id, payload, reason, detail)
SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::text[], $5::bytea[], $6::text[], $7::text[])
ON CONFLICT (stream_seq, received_at) DO NOTHING`

// WriteBatch archives events and rejected messages in one transaction:
// events are copied into a staging table and inserted with ON CONFLICT
// (event_id) DO NOTHING, rejected ones with ON CONFLICT DO NOTHING on
// their stream sequence and time. Writing a batch again changes nothing.
func (a *Archive) WriteBatch(ctx context.Context, events []archive.ArchivedEvent, rejected []archive.RejectedEvent) error {
	if len(events) == 0 && len(rejected) == 0 {
		return nil
	}
	err := pgx.BeginFunc(ctx, a.pool, func(tx pgx.Tx) error {
		if len(events) > 0 {
			if _, err := tx.Exec(ctx, createStage); err != nil {
				return fmt.Errorf("staging table: %w", err)
			}
			n, err := tx.CopyFrom(ctx, pgx.Identifier{stageTable}, stageColumns, &eventRows{events: events, i: -1})
			if err != nil {
				return fmt.Errorf("copy events: %w", err)
			}
			if n != int64(len(events)) {
				return fmt.Errorf("copy events: %d of %d rows copied", n, len(events))
			}
			if _, err := tx.Exec(ctx, moveStage); err != nil {
				return fmt.Errorf("insert events: %w", err)
			}
		}
		if len(rejected) > 0 {
			if _, err := tx.Exec(ctx, insertRejected, rejectedColumns(rejected)...); err != nil {
				return fmt.Errorf("insert rejected: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("archive batch of %d events, %d rejected: %w", len(events), len(rejected), err)
	}
	return nil
}

// eventRows feeds events to COPY without building all rows up front.
type eventRows struct {
	events []archive.ArchivedEvent
	i      int
	row    [10]any
}

func (r *eventRows) Next() bool {
	r.i++
	return r.i < len(r.events)
}

func (r *eventRows) Values() ([]any, error) {
	e := &r.events[r.i]
	if e.StreamSeq > 1<<63-1 {
		return nil, errors.New("stream sequence out of range")
	}
	r.row = [10]any{
		e.EventID, e.UserID, e.EventType, e.Payload, e.Timestamp.UTC(),
		int64(e.StreamSeq), int32(e.Partition), e.Region, int32(e.GameMode), e.ReceivedAt,
	}
	return r.row[:], nil
}

func (r *eventRows) Err() error { return nil }

func rejectedColumns(rs []archive.RejectedEvent) []any {
	seqs := make([]int64, len(rs))
	times := make([]time.Time, len(rs))
	subjects := make([]string, len(rs))
	msgIDs := make([]*string, len(rs))
	payloads := make([][]byte, len(rs))
	reasons := make([]string, len(rs))
	details := make([]string, len(rs))
	for i := range rs {
		r := &rs[i]
		seqs[i] = int64(r.StreamSeq)
		times[i] = r.ReceivedAt
		subjects[i] = text(r.Subject)
		if r.MsgID != "" {
			id := text(r.MsgID)
			msgIDs[i] = &id
		}
		payloads[i] = r.Payload
		if payloads[i] == nil {
			payloads[i] = []byte{}
		}
		reasons[i] = text(r.Reason)
		details[i] = text(r.Detail)
	}
	return []any{seqs, times, subjects, msgIDs, payloads, reasons, details}
}

// text makes s storable in a Postgres text column (valid UTF-8, no NUL):
// the fields of rejected messages come from publishers as they are, and a
// value Postgres refuses would block the archive.
func text(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	}
	return s
}
