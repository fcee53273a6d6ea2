package jetstream

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/gamemodes/gamemodes/modules/rebuild"
	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// RebuildState writes a rebuilt live state into the players and counts buckets.
type RebuildState struct {
	js      jetstream.JetStream
	pending []jetstream.PubAckFuture
}

var _ rebuild.LiveState = (*RebuildState)(nil)

// NewRebuildState returns a writer on js.
func NewRebuildState(js jetstream.JetStream) *RebuildState { return &RebuildState{js: js} }

// LiveWorkers lists workers with a heartbeat or a partition lease.
func (r *RebuildState) LiveWorkers(ctx context.Context) ([]string, error) {
	var live []string
	for _, bucket := range []string{topology.WorkersBucket, topology.LeasesBucket} {
		kv, err := r.js.KeyValue(ctx, bucket)
		if err != nil {
			return nil, fmt.Errorf("bucket %s: %w", bucket, err)
		}
		lister, err := kv.ListKeys(ctx)
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", bucket, err)
		}
		for k := range lister.Keys() {
			if bucket == topology.LeasesBucket && k == topology.PopularPublisherKey {
				continue // held by an edge, not a worker
			}
			live = append(live, bucket+"/"+k)
		}
	}
	return live, nil
}

// Reset purges every player, fence and count shard, and returns the events
// stream's last sequence.
func (r *RebuildState) Reset(ctx context.Context) (uint64, error) {
	for _, name := range []string{topology.PlayersStream, topology.BucketStream(topology.CountsBucket)} {
		s, err := r.js.Stream(ctx, name)
		if err != nil {
			return 0, fmt.Errorf("stream %s: %w", name, err)
		}
		if err := s.Purge(ctx); err != nil {
			return 0, fmt.Errorf("purge %s: %w", name, err)
		}
	}
	s, err := r.js.Stream(ctx, topology.EventsStream)
	if err != nil {
		return 0, fmt.Errorf("events stream: %w", err)
	}
	return s.CachedInfo().State.LastSeq, nil
}

// WritePlayer stores a player value that expires after ttl (a per-message
// TTL: the time the player had left at the rebuilt instant).
func (r *RebuildState) WritePlayer(ctx context.Context, p int, token string, value []byte, ttl time.Duration) error {
	msg := &nats.Msg{Subject: topology.PlayerSubject(p, token), Data: value, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgTTLHeader, strconv.Itoa(int(ttl.Round(time.Second)/time.Second))+"s")
	f, err := r.js.PublishMsgAsync(msg)
	if err != nil {
		return fmt.Errorf("publish player: %w", err)
	}
	r.pending = append(r.pending, f)
	if len(r.pending) >= 10000 {
		return r.Flush(ctx)
	}
	return nil
}

// WriteShard stores a partition's count shard.
func (r *RebuildState) WriteShard(ctx context.Context, p int, shard []byte) error {
	kv, err := r.js.KeyValue(ctx, topology.CountsBucket)
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, topology.ShardKey(p), shard); err != nil {
		return fmt.Errorf("put shard: %w", err)
	}
	return nil
}

// Flush waits for every pending player write.
func (r *RebuildState) Flush(ctx context.Context) error {
	for _, f := range r.pending {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("player write: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r.pending = r.pending[:0]
	return nil
}
