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
	SetShard(partition int, shard domain.Shard)
	DeleteShard(partition int)
	MarkSynced()
}

// ShardWatcher feeds every count-shard change of the counts bucket to a sink.
type ShardWatcher struct {
	js   jetstream.JetStream
	sink ShardSink
	log  *slog.Logger

	cancel context.CancelFunc
	done   chan struct{}
}

// NewShardWatcher returns a watcher; nothing happens until Start.
func NewShardWatcher(js jetstream.JetStream, sink ShardSink, log *slog.Logger) *ShardWatcher {
	return &ShardWatcher{js: js, sink: sink, log: log}
}

// Start begins watching in the background. The sink is marked synced once
// every stored shard has been delivered.
func (w *ShardWatcher) Start(ctx context.Context) error {
	kv, err := w.js.KeyValue(ctx, topology.CountsBucket)
	if err != nil {
		return fmt.Errorf("counts bucket: %w", err)
	}
	wctx, cancel := context.WithCancel(context.Background())
	watcher, err := kv.WatchAll(wctx)
	if err != nil {
		cancel()
		return fmt.Errorf("watch count shards: %w", err)
	}
	w.cancel, w.done = cancel, make(chan struct{})
	go func() {
		defer close(w.done)
		defer func() { _ = watcher.Stop() }()
		for {
			select {
			case e, ok := <-watcher.Updates():
				if !ok {
					return
				}
				w.apply(e)
			case <-wctx.Done():
				return
			}
		}
	}()
	return nil
}

func (w *ShardWatcher) apply(e jetstream.KeyValueEntry) {
	if e == nil {
		w.sink.MarkSynced()
		return
	}
	p, ok := topology.ParseShardKey(e.Key())
	if !ok {
		return
	}
	if e.Operation() != jetstream.KeyValuePut {
		w.sink.DeleteShard(p)
		return
	}
	s, err := domain.UnmarshalShard(e.Value())
	if err != nil {
		w.log.Warn("count shard unreadable", "key", e.Key(), "err", err)
		return
	}
	w.sink.SetShard(p, s)
}

// Stop ends the watch.
func (w *ShardWatcher) Stop() {
	if w.cancel != nil {
		w.cancel()
		<-w.done
	}
}
