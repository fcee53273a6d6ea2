package jetstream

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/nats-io/nats.go/jetstream"
)

// ShardSink receives count-shard changes (the lobby view).
type ShardSink interface {
	// SetShard replaces a partition's counts with those of its shard at
	// counts-bucket revision rev, whose applied sequence is appliedSeq
	// (every event of the partition up to it is reflected in the counts).
	SetShard(partition int, rev, appliedSeq uint64, counts domain.Counts)
	// DeleteShard removes a partition's counts (deleted at revision rev).
	DeleteShard(partition int, rev uint64)
	// MarkSynced records that every stored shard has been delivered.
	MarkSynced()
}

// DefaultShardReread is how often the watcher reads every count shard again.
const DefaultShardReread = time.Second

// ShardWatcher feeds every count-shard change of the counts bucket to a sink.
// A shard whose counts are those of the partition's previous shard (only
// its applied sequence moved, as after heartbeats) is not decoded again:
// the watcher compares the shard's body with the previous one's.
//
// It also reads every shard again each Reread (one batched direct get) and
// applies those at a later revision than the one last applied: should the
// watch miss a change (its ordered consumer is recreated after every NATS
// node failure it meets), the view heals within a second instead of
// keeping the partition's old counts until its next change, which for a
// partition that stops changing is never.
type ShardWatcher struct {
	js      jetstream.JetStream
	catalog *domain.Catalog
	sink    ShardSink
	log     *slog.Logger
	// Reread is the period of the full re-read (DefaultShardReread; 0 or
	// less: none). Set it before Start.
	Reread time.Duration

	stopWatch func()
	quit      chan struct{}
	done      chan struct{}

	mu   sync.Mutex        // guards last and revs: the watch and the re-read both apply
	last map[int]lastShard // by partition
	revs map[int]uint64    // by partition: the revision last applied (deletions too)
}

// lastShard is a partition's last decoded shard body and its counts.
type lastShard struct {
	body   []byte
	counts domain.Counts
}

// NewShardWatcher returns a watcher; nothing happens until Start.
func NewShardWatcher(js jetstream.JetStream, catalog *domain.Catalog, sink ShardSink, log *slog.Logger) *ShardWatcher {
	return &ShardWatcher{js: js, catalog: catalog, sink: sink, log: log, Reread: DefaultShardReread,
		last: map[int]lastShard{}, revs: map[int]uint64{}}
}

// Start begins following the counts bucket in the background. The sink is
// marked synced once every stored shard has been delivered.
func (w *ShardWatcher) Start(ctx context.Context) error {
	stop, err := followBucket(ctx, w.js, topology.CountsBucket, w.apply, w.sink.MarkSynced)
	if err != nil {
		return fmt.Errorf("watch count shards: %w", err)
	}
	w.stopWatch = stop
	w.quit, w.done = make(chan struct{}), make(chan struct{})
	go w.rereadLoop()
	return nil
}

// rereadLoop reads every shard again each Reread until Stop.
func (w *ShardWatcher) rereadLoop() {
	defer close(w.done)
	if w.Reread <= 0 {
		return
	}
	t := time.NewTicker(w.Reread)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-w.quit:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), max(w.Reread, time.Second))
		n, err := w.RereadOnce(ctx)
		cancel()
		switch {
		case err != nil && !failing:
			w.log.Warn("count shards not read again (retrying each period)", "err", err)
		case err == nil && failing:
			w.log.Info("count shards read again")
		}
		failing = err != nil
		if n > 0 {
			// Under load mostly changes the watch was about to deliver.
			w.log.Debug("count shards applied from a re-read, ahead of the watch", "shards", n)
		}
	}
}

// RereadOnce reads every count shard and applies those whose revision is
// later than the one last applied; it returns how many it applied.
func (w *ShardWatcher) RereadOnce(ctx context.Context) (int, error) {
	entries, err := lastEntries(ctx, w.js, topology.CountsBucket)
	if err != nil {
		return 0, err
	}
	n := 0
	for key, e := range entries {
		if w.applyIfNewer(kvChange{Key: key, Value: e.value, Rev: e.rev}) {
			n++
		}
	}
	return n, nil
}

// applyIfNewer applies c unless its partition is at its revision or later.
func (w *ShardWatcher) applyIfNewer(c kvChange) bool {
	p, ok := topology.ParseShardKey(c.Key)
	if !ok {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if c.Rev <= w.revs[p] {
		return false
	}
	w.applyLocked(p, c)
	return true
}

func (w *ShardWatcher) apply(c kvChange) {
	p, ok := topology.ParseShardKey(c.Key)
	if !ok {
		return
	}
	// The watch delivers in stream order and is applied as it comes, even
	// at a revision a re-read applied already (a watch a moment behind) or
	// below it (a bucket created again starts its revisions over).
	w.mu.Lock()
	defer w.mu.Unlock()
	w.applyLocked(p, c)
}

// applyLocked applies c to partition p's shard; w.mu is held.
func (w *ShardWatcher) applyLocked(p int, c kvChange) {
	w.revs[p] = c.Rev
	if c.Deleted {
		delete(w.last, p)
		w.sink.DeleteShard(p, c.Rev)
		return
	}
	h, body, err := domain.DecodeShardHeader(c.Value)
	if err == nil {
		if prev, ok := w.last[p]; ok && bytes.Equal(prev.body, body) {
			w.sink.SetShard(p, c.Rev, h.AppliedSeq, prev.counts) // the same counts: nothing to decode
			return
		}
	}
	h, counts, _, err := w.catalog.DecodeShard(c.Value)
	if err != nil {
		delete(w.last, p)
		w.log.Warn("count shard unreadable", "key", c.Key, "err", err)
		return
	}
	w.last[p] = lastShard{body: body, counts: counts}
	w.sink.SetShard(p, c.Rev, h.AppliedSeq, counts)
}

// Stop ends the watch and the re-reads.
func (w *ShardWatcher) Stop() {
	if w.stopWatch != nil {
		w.stopWatch()
		close(w.quit)
		<-w.done
		w.stopWatch = nil
	}
}
