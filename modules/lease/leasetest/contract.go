package leasetest

import (
	"context"
	"errors"
	"testing"

	"github.com/gamemodes/gamemodes/modules/lease"
)

// Contract runs the lease.Lease contract against implementations that
// newLease makes: each call returns a fresh lease nobody holds, and
// lostRenewal renews member's lease held at rev behind the holder's back,
// as a renewal whose answer never arrived would have.
func Contract(t *testing.T, newLease func(t *testing.T) (l lease.Lease, lostRenewal func(t *testing.T, member string, rev uint64))) {
	ctx := context.Background()
	t.Run("OneHolderAtATime", func(t *testing.T) {
		l, _ := newLease(t)
		if _, err := l.Acquire(ctx, "a"); err != nil {
			t.Fatalf("acquire a free lease: %v", err)
		}
		if _, err := l.Acquire(ctx, "b"); !errors.Is(err, lease.ErrConflict) {
			t.Fatalf("acquire a held lease: %v, want lease.ErrConflict", err)
		}
		if _, err := l.Acquire(ctx, "a"); !errors.Is(err, lease.ErrConflict) {
			t.Fatalf("acquire again by its holder: %v, want lease.ErrConflict", err)
		}
	})
	t.Run("RenewMovesTheRevision", func(t *testing.T) {
		l, _ := newLease(t)
		rev, err := l.Acquire(ctx, "a")
		if err != nil {
			t.Fatal(err)
		}
		next, err := l.Renew(ctx, "a", rev)
		if err != nil || next <= rev {
			t.Fatalf("renew at %d: %d, %v; want a later revision", rev, next, err)
		}
		// Another member knows no revision but its own, stale ones.
		if _, err := l.Renew(ctx, "b", rev); !errors.Is(err, lease.ErrConflict) {
			t.Fatalf("renew by another member: %v, want lease.ErrConflict", err)
		}
	})
	t.Run("RenewAfterALostAnswerKeepsTheLease", func(t *testing.T) {
		l, lost := newLease(t)
		rev, err := l.Acquire(ctx, "a")
		if err != nil {
			t.Fatal(err)
		}
		lost(t, "a", rev)
		if _, err := l.Renew(ctx, "a", rev); err != nil {
			t.Fatalf("renew from the revision before a lost answer: %v", err)
		}
	})
	t.Run("ReleaseLetsAnotherTakeIt", func(t *testing.T) {
		l, _ := newLease(t)
		stale, err := l.Acquire(ctx, "a")
		if err != nil {
			t.Fatal(err)
		}
		rev, err := l.Renew(ctx, "a", stale)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Release(ctx, "b", stale); err == nil {
			t.Fatal("a member released a lease another holds")
		}
		if _, err := l.Acquire(ctx, "b"); !errors.Is(err, lease.ErrConflict) {
			t.Fatalf("acquire after a refused release: %v, want lease.ErrConflict", err)
		}
		if err := l.Release(ctx, "a", rev); err != nil {
			t.Fatalf("release by the holder: %v", err)
		}
		if _, err := l.Acquire(ctx, "b"); err != nil {
			t.Fatalf("acquire a released lease: %v", err)
		}
		if _, err := l.Renew(ctx, "a", rev); !errors.Is(err, lease.ErrConflict) {
			t.Fatalf("renew a lease released and taken by another: %v, want lease.ErrConflict", err)
		}
	})
}
