package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gamemodes/gamemodes/modules/lease"
	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/nats-io/nats.go/jetstream"
)

// Coordinator implements partition.Coordinator with two KV buckets whose
// TTL is the lease time: worker heartbeats and partition leases. Member ids
// must be valid KV keys (see MemberID). Both buckets are followed to signal
// changes at once; Members lists the workers bucket at most every membersRefresh (2 s).
type Coordinator struct {
	workers jetstream.KeyValue
	leases  jetstream.KeyValue
	log     *slog.Logger

	mu      sync.Mutex
	members map[string]bool
	listed  time.Time      // when members was last listed from the bucket
	owners  map[int]string // partition -> the member its lease names
	changed chan struct{}
	stops   []func()
}

// NewCoordinator opens the buckets and starts following them.
func NewCoordinator(ctx context.Context, js jetstream.JetStream, log *slog.Logger) (*Coordinator, error) {
	workers, err := js.KeyValue(ctx, topology.WorkersBucket)
	if err != nil {
		return nil, fmt.Errorf("workers bucket: %w", err)
	}
	leases, err := js.KeyValue(ctx, topology.LeasesBucket)
	if err != nil {
		return nil, fmt.Errorf("leases bucket: %w", err)
	}
	c := &Coordinator{workers: workers, leases: leases, log: log,
		members: map[string]bool{}, owners: map[int]string{}, changed: make(chan struct{}, 1)}
	for bucket, apply := range map[string]func(kvChange) bool{topology.WorkersBucket: c.applyWorker, topology.LeasesBucket: c.applyLease} {
		stop, err := followBucket(ctx, js, bucket, func(ch kvChange) {
			c.mu.Lock()
			changed := apply(ch)
			c.mu.Unlock()
			if changed {
				c.signal()
			}
		}, func() {})
		if err != nil {
			c.Close()
			return nil, err
		}
		c.stops = append(c.stops, stop)
	}
	return c, nil
}

// applyWorker tracks the member set; heartbeats of known members are not
// changes (signalling them would make every heartbeat wake every assigner).
func (c *Coordinator) applyWorker(ch kvChange) bool {
	had := c.members[ch.Key]
	if ch.Deleted {
		delete(c.members, ch.Key)
		return had
	}
	c.members[ch.Key] = true
	return !had
}

// applyLease tracks the leases; a renewal by the same owner is not a change.
func (c *Coordinator) applyLease(ch kvChange) bool {
	p, ok := topology.ParseShardKey(ch.Key)
	if !ok {
		return false
	}
	old, had := c.owners[p]
	if ch.Deleted {
		delete(c.owners, p)
		return had
	}
	c.owners[p] = string(ch.Value)
	return !had || old != string(ch.Value)
}

func (c *Coordinator) signal() {
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// Close stops following the buckets.
func (c *Coordinator) Close() {
	for _, stop := range c.stops {
		stop()
	}
	c.stops = nil
}

// MemberID makes a name a valid member id (a KV key): characters other than
// A-Z a-z 0-9 - _ = become _.
func MemberID(id string) string {
	return strings.Map(func(r rune) rune {
		if r < 128 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '=') {
			return r
		}
		return '_'
	}, id)
}

// Heartbeat refreshes this member's key.
func (c *Coordinator) Heartbeat(ctx context.Context, member string) error {
	if _, err := c.workers.Put(ctx, member, []byte(member)); err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	return nil
}

// Leave removes this member's key.
func (c *Coordinator) Leave(ctx context.Context, member string) error {
	if err := c.workers.Delete(ctx, member); err != nil {
		return fmt.Errorf("leave: %w", err)
	}
	return nil
}

// Members lists the live members. The followed bucket answers between
// listings; the bucket itself is listed at most once per membersRefresh
// (a listing creates a consumer on the server), which also recovers from
// a follow that missed a change.
func (c *Coordinator) Members(ctx context.Context) ([]string, error) {
	c.mu.Lock()
	if time.Since(c.listed) < membersRefresh {
		out := make([]string, 0, len(c.members))
		for m := range c.members {
			out = append(out, m)
		}
		c.mu.Unlock()
		slices.Sort(out)
		return out, nil
	}
	c.mu.Unlock()
	lister, err := c.workers.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list members: %w", err)
	}
	defer func() { _ = lister.Stop() }()
	var out []string
	for k := range lister.Keys() {
		out = append(out, k)
	}
	slices.Sort(out)
	c.mu.Lock()
	c.listed = time.Now()
	c.members = make(map[string]bool, len(out))
	for _, m := range out {
		c.members[m] = true
	}
	c.mu.Unlock()
	return out, nil
}

// membersRefresh bounds how often Members lists the workers bucket.
const membersRefresh = 2 * time.Second

func leaseErr(op string, err error) error {
	if errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("%s: %w: %w", op, lease.ErrConflict, err)
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		return fmt.Errorf("%s: %w: %w", op, lease.ErrConflict, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// kvLease is one lease key of the leases bucket, a lease.Lease: a member
// creates it while nobody holds it, renews it at the revision it last
// wrote, and deletes it when it lets go; the bucket's TTL ends a lease
// nobody renews.
type kvLease struct {
	kv  jetstream.KeyValue
	key string
}

// Acquire creates the lease for member if nobody holds it; a holder's lease
// is a lease.ErrConflict.
func (l kvLease) Acquire(ctx context.Context, member string) (uint64, error) {
	rev, err := l.kv.Create(ctx, l.key, []byte(member))
	if err != nil {
		return 0, leaseErr("acquire lease "+l.key, err)
	}
	return rev, nil
}

// Renew rewrites the lease if it is still at rev; else lease.ErrConflict.
// A renewal whose answer was lost (a timeout under load) has moved the
// revision past rev: when the lease still names member at a later
// revision, it is still member's, at that revision.
func (l kvLease) Renew(ctx context.Context, member string, rev uint64) (uint64, error) {
	newRev, err := l.kv.Update(ctx, l.key, []byte(member), rev)
	if err == nil {
		return newRev, nil
	}
	err = leaseErr("renew lease "+l.key, err)
	if errors.Is(err, lease.ErrConflict) {
		if e, gerr := l.kv.Get(ctx, l.key); gerr == nil && string(e.Value()) == member && e.Revision() > rev {
			return l.Renew(ctx, member, e.Revision())
		}
	}
	return 0, err
}

// Release deletes the lease if member still holds it. rev is the revision
// member last saw; if a renewal landed whose answer was lost, the current
// revision is used when the lease still names member.
func (l kvLease) Release(ctx context.Context, member string, rev uint64) error {
	err := l.kv.Delete(ctx, l.key, jetstream.LastRevision(rev))
	if err == nil {
		return nil
	}
	e, gerr := l.kv.Get(ctx, l.key)
	if gerr != nil || string(e.Value()) != member {
		return leaseErr("release lease "+l.key, err)
	}
	if err := l.kv.Delete(ctx, l.key, jetstream.LastRevision(e.Revision())); err != nil {
		return leaseErr("release lease "+l.key, err)
	}
	return nil
}

// Lease is partition p's lease.
func (c *Coordinator) Lease(p int) lease.Lease {
	return kvLease{kv: c.leases, key: topology.ShardKey(p)}
}

// Changed is signalled when memberships or leases change.
func (c *Coordinator) Changed() <-chan struct{} { return c.changed }
