package jetstream

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/nats-io/nats.go/jetstream"
)

// ShardSink receives count-shard changes (the lobby view).
type ShardSink interface {
	SetShard(partition int, counts domain.Counts)
	// SetApplied follows SetShard with the shard's applied sequence: every
	// event of the partition up to it is reflected in the counts just set.
	SetApplied(partition int, appliedSeq uint64)
	DeleteShard(partition int)
	MarkSynced()
}

// revisionSink is a ShardSink that also takes the counts-bucket revision
// (stream sequence) of each change before the change (the lobby view: its
// list versions then mean the same on every edge).
type revisionSink interface {
	ObserveRevision(rev uint64)
}

// ShardWatcher feeds every count-shard change of the counts bucket to a sink.
type ShardWatcher struct {
	js      jetstream.JetStream
	catalog *domain.Catalog
	sink    ShardSink
	log     *slog.Logger
	stop    func()
}

// NewShardWatcher returns a watcher; nothing happens until Start.
func NewShardWatcher(js jetstream.JetStream, catalog *domain.Catalog, sink ShardSink, log *slog.Logger) *ShardWatcher {
	return &ShardWatcher{js: js, catalog: catalog, sink: sink, log: log}
}

// Start begins following the counts bucket in the background. The sink is
// marked synced once every stored shard has been delivered.
func (w *ShardWatcher) Start(ctx context.Context) error {
	stop, err := followBucket(ctx, w.js, topology.CountsBucket, w.apply, w.sink.MarkSynced)
	if err != nil {
		return fmt.Errorf("watch count shards: %w", err)
	}
	w.stop = stop
	return nil
}

func (w *ShardWatcher) apply(c kvChange) {
	p, ok := topology.ParseShardKey(c.Key)
	if !ok {
		return
	}
	if rs, ok := w.sink.(revisionSink); ok {
		rs.ObserveRevision(c.Rev)
	}
	if c.Deleted {
		w.sink.DeleteShard(p)
		return
	}
	h, counts, _, err := w.catalog.DecodeShard(c.Value)
	if err != nil {
		w.log.Warn("count shard unreadable", "key", c.Key, "err", err)
		return
	}
	w.sink.SetShard(p, counts)
	w.sink.SetApplied(p, h.AppliedSeq)
}

// Stop ends the watch.
func (w *ShardWatcher) Stop() {
	if w.stop != nil {
		w.stop()
	}
}
