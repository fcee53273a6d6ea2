package jetstream_test

import (
	"context"
	"errors"
	"testing"

	jsadapter "github.com/gamemodes/gamemodes/adapters/jetstream"
	"github.com/gamemodes/gamemodes/modules/lease"
	"github.com/gamemodes/gamemodes/nats/natstest"
	"github.com/gamemodes/gamemodes/nats/topology"
)

// A renewal whose answer was lost has moved the lease's revision: the next
// renewal from the older revision keeps the lease (it still names this
// member) instead of reporting it lost; a lease another member took is lost.
func TestRenewAfterALostAnswerKeepsTheLease(t *testing.T) {
	ns := natstest.RunServer(t)
	s := newStack(t, ns.ClientURL(), 0, 4)
	ctx := context.Background()
	coord, err := jsadapter.NewCoordinator(ctx, s.js, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	defer coord.Close()
	rev, err := coord.Lease(1).Acquire(ctx, "w1")
	if err != nil {
		t.Fatal(err)
	}
	// The renewal lands, its answer does not reach w1.
	leases, err := s.js.KeyValue(ctx, topology.LeasesBucket)
	if err != nil {
		t.Fatal(err)
	}
	landed, err := leases.Update(ctx, topology.ShardKey(1), []byte("w1"), rev)
	if err != nil {
		t.Fatal(err)
	}
	newRev, err := coord.Lease(1).Renew(ctx, "w1", rev)
	if err != nil || newRev <= landed {
		t.Fatalf("renewal from the revision before a lost answer: rev %d, %v; want a revision after %d", newRev, err, landed)
	}
	// Another member took the lease (w1's had expired): lost.
	if _, err := leases.Put(ctx, topology.ShardKey(1), []byte("w2")); err != nil {
		t.Fatal(err)
	}
	if _, err := coord.Lease(1).Renew(ctx, "w1", newRev); !errors.Is(err, lease.ErrConflict) {
		t.Fatalf("renewal of a lease w2 holds: %v, want a conflict", err)
	}
}
