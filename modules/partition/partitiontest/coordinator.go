package partitiontest

import (
	"context"
	"maps"
	"slices"
	"strconv"
	"sync"

	"github.com/gamemodes/gamemodes/modules/lease"
	"github.com/gamemodes/gamemodes/modules/lease/leasetest"
	"github.com/gamemodes/gamemodes/modules/partition"
)

// Coordinator is an in-memory partition.Coordinator: members stay until
// they leave or Expire drops them (with their leases), partition leases
// live in a leasetest.Table.
type Coordinator struct {
	mu      sync.Mutex
	members map[string]bool
	leases  *leasetest.Table
	changed chan struct{}
}

var _ partition.Coordinator = (*Coordinator)(nil)

// NewCoordinator returns a coordinator without members or leases.
func NewCoordinator() *Coordinator {
	c := &Coordinator{members: map[string]bool{}, changed: make(chan struct{}, 1)}
	c.leases = leasetest.NewTable(c.signal)
	return c
}

func (c *Coordinator) signal() {
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// Heartbeat adds member (a known member's heartbeat is no change).
func (c *Coordinator) Heartbeat(ctx context.Context, member string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	had := c.members[member]
	c.members[member] = true
	c.mu.Unlock()
	if !had {
		c.signal()
	}
	return nil
}

// Leave removes member.
func (c *Coordinator) Leave(ctx context.Context, member string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.drop(member)
	return nil
}

func (c *Coordinator) drop(member string) {
	c.mu.Lock()
	had := c.members[member]
	delete(c.members, member)
	c.mu.Unlock()
	if had {
		c.signal()
	}
}

// Expire drops member and its partition leases, as their TTL would once
// a member stops heartbeating.
func (c *Coordinator) Expire(member string) {
	c.drop(member)
	c.leases.ExpireMember(member)
}

// Members lists the members, sorted.
func (c *Coordinator) Members(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Sorted(maps.Keys(c.members)), nil
}

// Lease is partition p's lease.
func (c *Coordinator) Lease(p int) lease.Lease { return c.leases.Lease(strconv.Itoa(p)) }

// Holder returns the member holding partition p's lease, if any.
func (c *Coordinator) Holder(p int) (string, bool) { return c.leases.Holder(strconv.Itoa(p)) }

// Changed is signalled when members or lease holders change.
func (c *Coordinator) Changed() <-chan struct{} { return c.changed }
