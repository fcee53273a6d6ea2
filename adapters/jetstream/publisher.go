// Package jetstream adapts gamemodes to NATS JetStream, on the names of
// nats/topology:
//   - the edge's event publisher;
//   - the partition owners' shared feed of the events stream, player store
//     (fenced atomic batches, the load pass, expiry markers) and count-shard
//     writes;
//   - the worker coordination: heartbeats and partition leases;
//   - the lobby view's count-shard watcher and the live-list publisher on
//     core NATS;
//   - the archiver's feed of the events stream;
//   - the operations reader behind the operations page;
//   - the live state that a rebuild from the archive writes.
package jetstream

import (
	"context"
	"fmt"

	"github.com/gamemodes/gamemodes/modules/ingest"
	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// SourceHeader marks events stored by an edge (value topology.SourceHTTP);
// events published directly by game servers do not carry it.
const SourceHeader = topology.HeaderSource

// EventPublisher stores events in the events stream and waits for the
// stream's acknowledgement.
type EventPublisher struct {
	js jetstream.JetStream
}

// NewEventPublisher returns a publisher on js.
func NewEventPublisher(js jetstream.JetStream) *EventPublisher { return &EventPublisher{js: js} }

// PublishEvent stores payload under the events subject of region and user
// token with msgID as Nats-Msg-Id and returns the stream's sequence of the
// event and whether the stream had already stored that id (then the
// sequence is the first copy's: the server's acknowledgement of a duplicate
// carries it).
func (p *EventPublisher) PublishEvent(ctx context.Context, region, token, msgID string, payload []byte) (ingest.PublishAck, error) {
	msg := &nats.Msg{Subject: topology.EventSubject(region, token), Data: payload, Header: nats.Header{}}
	msg.Header.Set(SourceHeader, topology.SourceHTTP)
	fut, err := p.js.PublishMsgAsync(msg, jetstream.WithMsgID(msgID))
	if err != nil {
		return ingest.PublishAck{}, fmt.Errorf("publish event: %w", err)
	}
	select {
	case ack := <-fut.Ok():
		return ingest.PublishAck{Sequence: ack.Sequence, Duplicate: ack.Duplicate}, nil
	case err := <-fut.Err():
		return ingest.PublishAck{}, fmt.Errorf("publish event: %w", err)
	case <-ctx.Done():
		return ingest.PublishAck{}, fmt.Errorf("publish event: %w", ctx.Err())
	}
}
