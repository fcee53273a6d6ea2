// Package leasetest holds an in-memory table of leases and the contract
// suite every lease.Lease implementation passes (the table here, and the
// KV leases in adapters/jetstream's tests).
package leasetest

import (
	"context"
	"fmt"
	"sync"

	"github.com/gamemodes/gamemodes/modules/lease"
)

// Table is an in-memory set of named leases sharing one revision sequence,
// as the keys of one KV bucket do. Leases do not expire by themselves:
// Expire ends one as the bucket's TTL would.
type Table struct {
	mu      sync.Mutex
	rev     uint64
	held    map[string]held
	changed func()
}

type held struct {
	member string
	rev    uint64
}

// NewTable returns a table without leases; changed, if not nil, is called
// (outside the table's lock) whenever a lease changes hands.
func NewTable(changed func()) *Table {
	return &Table{held: map[string]held{}, changed: changed}
}

// Lease returns the lease named key.
func (t *Table) Lease(key string) lease.Lease { return tableLease{t: t, key: key} }

// Holder returns the member holding key's lease, if any.
func (t *Table) Holder(key string) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	h, ok := t.held[key]
	return h.member, ok
}

// Expire ends key's lease as if nobody had renewed it in time.
func (t *Table) Expire(key string) {
	t.mu.Lock()
	_, ok := t.held[key]
	delete(t.held, key)
	t.mu.Unlock()
	if ok {
		t.signal()
	}
}

// ExpireMember ends every lease member holds.
func (t *Table) ExpireMember(member string) {
	t.mu.Lock()
	n := 0
	for k, h := range t.held {
		if h.member == member {
			delete(t.held, k)
			n++
		}
	}
	t.mu.Unlock()
	if n > 0 {
		t.signal()
	}
}

func (t *Table) signal() {
	if t.changed != nil {
		t.changed()
	}
}

type tableLease struct {
	t   *Table
	key string
}

func (l tableLease) Acquire(ctx context.Context, member string) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	t := l.t
	t.mu.Lock()
	if h, ok := t.held[l.key]; ok {
		t.mu.Unlock()
		return 0, fmt.Errorf("acquire lease %s: %w (held by %s)", l.key, lease.ErrConflict, h.member)
	}
	t.rev++
	t.held[l.key] = held{member: member, rev: t.rev}
	rev := t.rev
	t.mu.Unlock()
	t.signal()
	return rev, nil
}

// Renew succeeds while member holds the lease at rev or later (a renewal
// whose answer was lost moved it on).
func (l tableLease) Renew(ctx context.Context, member string, rev uint64) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	t := l.t
	t.mu.Lock()
	defer t.mu.Unlock()
	h, ok := t.held[l.key]
	if !ok || h.member != member || h.rev < rev {
		return 0, fmt.Errorf("renew lease %s: %w", l.key, lease.ErrConflict)
	}
	t.rev++
	t.held[l.key] = held{member: member, rev: t.rev}
	return t.rev, nil
}

func (l tableLease) Release(ctx context.Context, member string, rev uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t := l.t
	t.mu.Lock()
	h, ok := t.held[l.key]
	if !ok || h.member != member || h.rev < rev {
		t.mu.Unlock()
		return fmt.Errorf("release lease %s: %w", l.key, lease.ErrConflict)
	}
	delete(t.held, l.key)
	t.mu.Unlock()
	t.signal()
	return nil
}
