package jetstream

import (
	"context"
	"fmt"
	"strings"

	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/nats-io/nats.go/jetstream"
)

// kvChange is one change of a KV bucket as read from its stream.
type kvChange struct {
	Key     string
	Value   []byte
	Rev     uint64
	Deleted bool // deleted, purged or expired
}

// followBucket delivers the latest value of every key of a KV bucket, then
// every change, through an ordered consumer on the bucket's stream. The
// ordered consumer recreates itself after a server failover (the legacy KV
// watcher may not). synced runs once the initial values are delivered.
func followBucket(ctx context.Context, js jetstream.JetStream, bucket string, apply func(kvChange), synced func()) (stop func(), err error) {
	stream := topology.BucketStream(bucket)
	prefix := "$KV." + bucket + "."
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", bucket, err)
	}
	empty := s.CachedInfo().State.Msgs == 0
	c, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy})
	if err != nil {
		return nil, fmt.Errorf("follow bucket %s: %w", bucket, err)
	}
	done := false
	if empty {
		synced()
		done = true
	}
	cc, err := c.Consume(func(m jetstream.Msg) {
		md, err := m.Metadata()
		if err != nil {
			return
		}
		apply(kvChange{
			Key:     strings.TrimPrefix(m.Subject(), prefix),
			Value:   m.Data(),
			Rev:     md.Sequence.Stream,
			Deleted: isDeletion(m.Headers()),
		})
		if !done && md.NumPending == 0 {
			done = true
			synced()
		}
	})
	if err != nil {
		return nil, fmt.Errorf("follow bucket %s: %w", bucket, err)
	}
	return cc.Stop, nil
}
