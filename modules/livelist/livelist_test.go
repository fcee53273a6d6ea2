package livelist_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/modules/lease"
	"github.com/gamemodes/gamemodes/modules/lease/leasetest"
	"github.com/gamemodes/gamemodes/modules/livelist"
	"github.com/gamemodes/gamemodes/modules/lobby"
)

// The live-list policy on fakes: a lease table and a recording sender,
// over a real lobby view and broadcaster.

const leaseTTL = 90 * time.Millisecond // renewals every 30 ms

var catalog = domain.MustCatalog([]string{"US", "EU"}, []int{1, 2})

// lists is a synced lobby view with one counted player and its broadcaster.
func lists(t *testing.T) (*lobby.View, *lobby.Broadcaster) {
	v := lobby.NewView(catalog, nil)
	counts := domain.NewCounts(catalog)
	counts.Add(domain.Slot{Region: 0, Mode: 0}, 1)
	v.SetShard(0, 1, 0, counts)
	v.MarkSynced()
	b := lobby.NewBroadcaster(v, 5*time.Millisecond)
	b.Start()
	t.Cleanup(b.Stop)
	return v, b
}

// sender records what it sends.
type sender struct {
	disconnected atomic.Bool
	mu           sync.Mutex
	sent         []lobby.Update
}

func (s *sender) Connected() bool { return !s.disconnected.Load() }

func (s *sender) Send(u lobby.Update) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent = append(s.sent, u)
	return nil
}

func (s *sender) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sent)
}

func start(t *testing.T, l lease.Lease, src livelist.Source, s livelist.Sender, member string) *livelist.Publisher {
	p := livelist.New(l, src, s, livelist.Config{Member: member, LeaseTTL: leaseTTL}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	p.Start()
	t.Cleanup(func() { _ = p.Stop(context.Background()) })
	return p
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestOnePublisherAtATimeAndATakeOverOnStop(t *testing.T) {
	_, b := lists(t)
	table := leasetest.NewTable(nil)
	var sa, sb sender
	a := start(t, table.Lease("live"), b, &sa, "a")
	waitFor(t, "a publishing every region", func() bool { return a.Leader() && sa.count() >= 2 })
	other := start(t, table.Lease("live"), b, &sb, "b")
	time.Sleep(3 * leaseTTL)
	if other.Leader() || sb.count() != 0 {
		t.Fatalf("b leader %v, sent %d while a holds the lease", other.Leader(), sb.count())
	}
	if err := a.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if a.Leader() {
		t.Fatal("a still leader after stop")
	}
	waitFor(t, "b to take over", func() bool { return other.Leader() && sb.count() >= 2 })
}

func TestALostLeaseStopsPublishing(t *testing.T) {
	_, b := lists(t)
	table := leasetest.NewTable(nil)
	var s sender
	p := start(t, table.Lease("live"), b, &s, "a")
	waitFor(t, "a publishing", p.Leader)
	table.Expire("live")
	if _, err := table.Lease("live").Acquire(context.Background(), "b"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a to stop publishing", func() bool { return !p.Leader() })
	if h, _ := table.Holder("live"); h != "b" {
		t.Fatalf("lease held by %q, want b", h)
	}
}

func TestNoCampaignWhileDisconnectedOrNotSynced(t *testing.T) {
	v := lobby.NewView(catalog, nil) // never synced
	b := lobby.NewBroadcaster(v, 5*time.Millisecond)
	b.Start()
	t.Cleanup(b.Stop)
	table := leasetest.NewTable(nil)
	var s sender
	start(t, table.Lease("unsynced"), b, &s, "a")
	_, synced := lists(t)
	var down sender
	down.disconnected.Store(true)
	start(t, table.Lease("down"), synced, &down, "a")
	time.Sleep(3 * leaseTTL)
	for _, key := range []string{"unsynced", "down"} {
		if h, ok := table.Holder(key); ok {
			t.Fatalf("lease %s taken by %s", key, h)
		}
	}
	if s.count()+down.count() != 0 {
		t.Fatalf("sent %d lists", s.count()+down.count())
	}
}

// flaky is a lease whose renewals fail without saying the lease is lost
// (the lease store unreachable).
type flaky struct {
	lease.Lease
	failing atomic.Bool
}

func (f *flaky) Renew(ctx context.Context, member string, rev uint64) (uint64, error) {
	if f.failing.Load() {
		return 0, errors.New("lease store unreachable")
	}
	return f.Lease.Renew(ctx, member, rev)
}

// A holder that cannot renew keeps publishing only within the validity
// window (2/3 of the TTL after its last renewal was sent), then stops,
// before the lease can expire and another take it.
func TestPublishingEndsWithTheValidityWindow(t *testing.T) {
	v, b := lists(t)
	l := &flaky{Lease: leasetest.NewTable(nil).Lease("live")}
	var s sender
	p := start(t, l, b, &s, "a")
	waitFor(t, "a publishing", p.Leader)
	l.failing.Store(true)
	waitFor(t, "a to stop publishing", func() bool { return !p.Leader() })
	sent := s.count()
	counts := domain.NewCounts(catalog)
	counts.Add(domain.Slot{Region: 1, Mode: 1}, 3)
	v.SetShard(1, 2, 0, counts)
	time.Sleep(3 * leaseTTL)
	if s.count() != sent {
		t.Fatalf("sent %d lists after the lease was given up", s.count()-sent)
	}
}
