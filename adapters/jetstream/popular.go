package jetstream

import (
	"context"
	"fmt"
	"strconv"

	"github.com/gamemodes/gamemodes/modules/lease"
	"github.com/gamemodes/gamemodes/modules/lobby"
	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Headers of the lobby lists published on gamemodes.popular.<REGION>.
const (
	// HeaderPopularVersion carries the list's version (decimal): it
	// increases with every change of the region's list and is the
	// counts-bucket revision as of which the list is exact, so it is
	// comparable across publishers. A subscriber drops a message whose
	// version is not above the last one it kept.
	HeaderPopularVersion = topology.HeaderPopularVersion
	// HeaderPopularPublisher names the edge that published the list.
	HeaderPopularPublisher = topology.HeaderPopularPublisher
)

// PopularSender sends lobby lists on core NATS, gamemodes.popular.<REGION>,
// with their version and the publishing member in the headers: the send of
// the live-list publisher (livelist.Sender), whose policy is in
// modules/livelist.
type PopularSender struct {
	nc     *nats.Conn
	member string
}

// NewPopularSender returns a sender on nc naming member as the publisher.
func NewPopularSender(nc *nats.Conn, member string) *PopularSender {
	return &PopularSender{nc: nc, member: member}
}

// Connected reports whether the connection is up: core NATS would
// otherwise buffer the lists during a reconnect and deliver them late.
func (s *PopularSender) Connected() bool { return s.nc.IsConnected() }

// Send publishes u on its region's subject.
func (s *PopularSender) Send(u lobby.Update) error {
	msg := nats.NewMsg(topology.PopularSubject(u.Region))
	msg.Data = u.List
	msg.Header.Set(HeaderPopularVersion, strconv.FormatUint(u.Version, 10))
	msg.Header.Set(HeaderPopularPublisher, s.member)
	if err := s.nc.PublishMsg(msg); err != nil {
		return fmt.Errorf("publish %s: %w", msg.Subject, err)
	}
	return nil
}

// OpenLease returns the lease named key in the leases bucket, whose TTL
// (topology.Topology.LeaseTTL) is the lease time: the live-list
// publisher's is topology.PopularPublisherKey.
func OpenLease(ctx context.Context, js jetstream.JetStream, key string) (lease.Lease, error) {
	kv, err := js.KeyValue(ctx, topology.LeasesBucket)
	if err != nil {
		return nil, fmt.Errorf("leases bucket: %w", err)
	}
	return kvLease{kv: kv, key: key}, nil
}
