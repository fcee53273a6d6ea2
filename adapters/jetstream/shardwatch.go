package jetstream

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"

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

// ShardWatcher feeds every count-shard change of the counts bucket to a sink.
// A shard whose counts are those of the partition's previous shard (only
// its applied sequence moved, as after heartbeats) is not decoded again:
// the watcher compares the shard's body with the previous one's.
type ShardWatcher struct {
	js      jetstream.JetStream
	catalog *domain.Catalog
	sink    ShardSink
	log     *slog.Logger
	stop    func()
	last    map[int]lastShard // by partition; used by the watch's goroutine only
}

// lastShard is a partition's last decoded shard body and its counts.
type lastShard struct {
	body   []byte
	counts domain.Counts
}

// NewShardWatcher returns a watcher; nothing happens until Start.
func NewShardWatcher(js jetstream.JetStream, catalog *domain.Catalog, sink ShardSink, log *slog.Logger) *ShardWatcher {
	return &ShardWatcher{js: js, catalog: catalog, sink: sink, log: log, last: map[int]lastShard{}}
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

// Stop ends the watch.
func (w *ShardWatcher) Stop() {
	if w.stop != nil {
		w.stop()
	}
}
