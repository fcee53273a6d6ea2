package jetstream

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// stopOrdered stops consuming from an ordered consumer and deletes its
// server-side consumer in the background. Stopping alone leaves the
// consumer on the server for its inactivity threshold (5 minutes in
// nats.go): measured, a process that had just taken its partitions over
// left 32 such consumers on the events stream, each signalled on every
// event stored for those 5 minutes.
func stopOrdered(js jetstream.JetStream, stream string, c jetstream.Consumer, cc jetstream.ConsumeContext) {
	cc.Stop()
	info := c.CachedInfo()
	if info == nil || info.Name == "" {
		return
	}
	go func(name string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = js.DeleteConsumer(ctx, stream, name) // gone already, or the server will expire it
	}(info.Name)
}
