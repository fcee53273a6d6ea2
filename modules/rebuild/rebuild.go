// Package rebuild recreates the live state (players and count shards) from
// the event archive: the disaster recovery when NATS storage is lost, or a
// reset of the live state to what the archive says.
package rebuild

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gamemodes/gamemodes/modules/domain"
)

// ArchivedEvent is one archived event as a rebuild reads it.
type ArchivedEvent struct {
	UserID   string
	Type     string
	Region   string
	GameMode int
	// ReceivedAt is the stream time of the event.
	ReceivedAt time.Time
}

// Archive yields archived events received in [from, to], grouped by user
// and in stream order within a user (received_at, then stream sequence).
type Archive interface {
	PlayerEvents(ctx context.Context, from, to time.Time, each func(user string, events []ArchivedEvent) error) error
}

// LiveState is the live state a rebuild replaces.
type LiveState interface {
	// LiveWorkers names the workers that are running (heartbeats or leases).
	LiveWorkers(ctx context.Context) ([]string, error)
	// Reset removes every player and count shard. It returns the events
	// stream's last sequence: the rebuilt state counts as applied up to it.
	Reset(ctx context.Context) (appliedSeq uint64, err error)
	// WritePlayer stores a player's state with the time it has left to live.
	WritePlayer(ctx context.Context, partition int, token string, value []byte, ttl time.Duration) error
	// WriteShard stores a partition's count shard.
	WriteShard(ctx context.Context, partition int, shard []byte) error
	// Flush waits until every write is stored.
	Flush(ctx context.Context) error
}

// Options of a rebuild.
type Options struct {
	// At is the instant to rebuild (normally now).
	At time.Time
	// PlayerTTL is how long a player stays counted after their last event.
	PlayerTTL time.Duration
	// Window is how far before At events are read (default 3 x PlayerTTL):
	// a player whose state depends on older events (a chain of stale leaves
	// longer than that) is rebuilt from the window only.
	Window time.Duration
	// Partitions is the events stream's partition count.
	Partitions int
	// Force runs even while workers are live (they will be fenced by the
	// rewritten state only when they reload: stop them first).
	Force bool
}

// Report says what a rebuild restored.
type Report struct {
	Users      int                      `json:"users"`
	Players    int                      `json:"players_restored"`
	Dropped    int                      `json:"players_dropped"`
	AppliedSeq uint64                   `json:"applied_seq"`
	Counts     map[string]map[int]int64 `json:"counts"`
}

// ErrLiveWorkers means workers are running and Force was not set.
var ErrLiveWorkers = errors.New("workers are running")

// Run rebuilds the live state from the archive.
func Run(ctx context.Context, catalog *domain.Catalog, opts Options, archive Archive, live LiveState) (Report, error) {
	if opts.Window == 0 {
		opts.Window = 3 * opts.PlayerTTL
	}
	if opts.PlayerTTL <= 0 || opts.Partitions < 1 {
		return Report{}, fmt.Errorf("rebuild: player TTL and partitions are required")
	}
	workers, err := live.LiveWorkers(ctx)
	if err != nil {
		return Report{}, fmt.Errorf("rebuild: check workers: %w", err)
	}
	if len(workers) > 0 && !opts.Force {
		return Report{}, fmt.Errorf("rebuild: %w (%v): stop them first, or use --force", ErrLiveWorkers, workers)
	}
	applied, err := live.Reset(ctx)
	if err != nil {
		return Report{}, fmt.Errorf("rebuild: reset live state: %w", err)
	}
	rep := Report{AppliedSeq: applied, Counts: map[string]map[int]int64{}}
	shards := make([]domain.Counts, opts.Partitions)
	for p := range shards {
		shards[p] = domain.NewCounts(catalog)
	}
	var past []domain.PastEvent
	err = archive.PlayerEvents(ctx, opts.At.Add(-opts.Window), opts.At, func(user string, events []ArchivedEvent) error {
		rep.Users++
		past = past[:0]
		for _, e := range events {
			typ, ok1 := domain.ParseEventType(e.Type)
			slot, ok2 := catalog.SlotOf(e.Region, e.GameMode)
			if !ok1 || !ok2 {
				continue // a region or mode no longer configured
			}
			past = append(past, domain.PastEvent{Type: typ, Slot: slot, Time: e.ReceivedAt})
		}
		slot, last, present := domain.StateAt(past, opts.At, opts.PlayerTTL)
		if !present {
			rep.Dropped++
			return nil
		}
		token := domain.UserToken(user)
		p := domain.PartitionOf(token, opts.Partitions)
		st := domain.PlayerState{Present: true, Slot: slot, LastSeq: applied}
		left := last.Add(opts.PlayerTTL).Sub(opts.At)
		if err := live.WritePlayer(ctx, p, token, catalog.EncodePlayer(st), max(left, time.Second)); err != nil {
			return fmt.Errorf("write player %s: %w", token, err)
		}
		shards[p].Add(slot, 1)
		rep.Players++
		region, mode := catalog.Region(int(slot.Region)), catalog.GameMode(int(slot.Mode))
		if rep.Counts[region] == nil {
			rep.Counts[region] = map[int]int64{}
		}
		rep.Counts[region][mode]++
		return nil
	})
	if err != nil {
		return Report{}, fmt.Errorf("rebuild: read archive: %w", err)
	}
	for p, counts := range shards {
		shard := catalog.EncodeShard(domain.ShardHeader{Partition: p, Owner: "rebuild", AppliedSeq: applied}, counts)
		if err := live.WriteShard(ctx, p, shard); err != nil {
			return Report{}, fmt.Errorf("rebuild: write shard %d: %w", p, err)
		}
	}
	if err := live.Flush(ctx); err != nil {
		return Report{}, fmt.Errorf("rebuild: %w", err)
	}
	return rep, nil
}
