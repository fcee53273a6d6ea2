package partitiontest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/modules/lease"
	"github.com/gamemodes/gamemodes/modules/partition"
)

// StoreHarness is a fresh, empty partition.Store and the write limits its
// owners use (the store's batch size and batches in flight).
type StoreHarness struct {
	Store  partition.Store
	Limits partition.WriteLimits
}

// StoreContract runs the partition.Store contract against the stores
// newStore makes, one per subtest: claims fence earlier claims, fenced
// player writes load back, count shards are revision-checked, writes are
// acknowledged in their order, partitions are separate.
func StoreContract(t *testing.T, newStore func(t *testing.T) StoreHarness) {
	t.Run("FencedWritesLoadBack", func(t *testing.T) {
		h := newStore(t)
		fence := claim(t, h.Store, 1)
		rev1, err := writePlayers(h.Store, 1, fence, players("a=1", "b=1", "c=1"))
		if err != nil || rev1 == 0 {
			t.Fatalf("write: rev %d, %v", rev1, err)
		}
		rev2, err := writePlayers(h.Store, 1, fence, players("b=2"))
		if err != nil || rev2 <= rev1 {
			t.Fatalf("second write: rev %d, %v; want a revision after %d", rev2, err, rev1)
		}
		got, snap := load(t, h.Store, 1)
		if want := "a=1 b=2 c=1"; render(got) != want {
			t.Fatalf("loaded %q, want %q", render(got), want)
		}
		for _, sp := range got {
			if d := time.Since(sp.Written); d < -time.Minute || d > time.Minute {
				t.Fatalf("player %s written at %v, %v from now", sp.Token, sp.Written, d)
			}
		}
		if snap.Shard != nil {
			t.Fatalf("a partition never flushed has shard %q", snap.Shard)
		}
	})
	t.Run("ANewClaimFencesTheOldOne", func(t *testing.T) {
		h := newStore(t)
		old := claim(t, h.Store, 2)
		if _, err := writePlayers(h.Store, 2, old, players("a=1")); err != nil {
			t.Fatal(err)
		}
		fence := claim(t, h.Store, 2)
		if fence == old {
			t.Fatalf("a second claim returned the same fence %d", fence)
		}
		if _, err := writePlayers(h.Store, 2, old, players("a=2", "b=2")); !errors.Is(err, partition.ErrConflict) {
			t.Fatalf("write fenced by an earlier claim: %v, want partition.ErrConflict", err)
		}
		if got, _ := load(t, h.Store, 2); render(got) != "a=1" {
			t.Fatalf("a refused batch stored something: loaded %q, want %q", render(got), "a=1")
		}
		if _, err := writePlayers(h.Store, 2, fence, players("b=3")); err != nil {
			t.Fatalf("write under the new claim: %v", err)
		}
		if got, _ := load(t, h.Store, 2); render(got) != "a=1 b=3" {
			t.Fatalf("loaded %q, want %q", render(got), "a=1 b=3")
		}
	})
	t.Run("ShardWritesAreRevisionChecked", func(t *testing.T) {
		h := newStore(t)
		if _, snap := load(t, h.Store, 3); snap.Shard != nil || snap.ShardRev != 0 {
			t.Fatalf("new partition: shard %q at %d", snap.Shard, snap.ShardRev)
		}
		rev1, err := writeShard(h.Store, 3, []byte("one"), 0)
		if err != nil || rev1 == 0 {
			t.Fatalf("first shard: rev %d, %v", rev1, err)
		}
		if _, err := writeShard(h.Store, 3, []byte("stale"), 0); !errors.Is(err, partition.ErrConflict) {
			t.Fatalf("shard written over without its revision: %v, want partition.ErrConflict", err)
		}
		rev2, err := writeShard(h.Store, 3, []byte("two"), rev1)
		if err != nil || rev2 <= rev1 {
			t.Fatalf("second shard: rev %d, %v; want a revision after %d", rev2, err, rev1)
		}
		if _, snap := load(t, h.Store, 3); string(snap.Shard) != "two" || snap.ShardRev != rev2 {
			t.Fatalf("loaded shard %q at %d, want %q at %d", snap.Shard, snap.ShardRev, "two", rev2)
		}
		if _, err := writeShard(h.Store, 4, []byte("other"), 0); err != nil {
			t.Fatalf("another partition's first shard: %v", err)
		}
	})
	t.Run("WritesAreAcknowledgedInOrder", func(t *testing.T) {
		h := newStore(t)
		fence := claim(t, h.Store, 0)
		// As an owner sends: up to Limits.MaxInflight batches of up to
		// Limits.MaxBatch players, the next sent once the oldest completes.
		const batches = 12
		type result struct {
			i   int
			rev uint64
			err error
		}
		results := make(chan result, batches)
		inflight := make(chan struct{}, max(1, h.Limits.MaxInflight))
		for i := range batches {
			n := 1 + i%3
			if i == batches-1 {
				n = max(1, h.Limits.MaxBatch) // the store takes a batch of its own limit
			}
			batch := make([]partition.PlayerWrite, n)
			for j := range batch {
				batch[j] = partition.PlayerWrite{Token: fmt.Sprintf("u%d", j), Value: []byte(fmt.Sprint(i))}
			}
			inflight <- struct{}{}
			h.Store.WritePlayers(0, batch, fence, func(rev uint64, err error) {
				<-inflight
				results <- result{i, rev, err}
			})
		}
		var last uint64
		for want := range batches {
			select {
			case r := <-results:
				if r.err != nil || r.i != want || r.rev <= last {
					t.Fatalf("acknowledgement %d: batch %d at rev %d, %v; want batch %d after rev %d", want, r.i, r.rev, r.err, want, last)
				}
				last = r.rev
			case <-time.After(10 * time.Second):
				t.Fatalf("batch %d never acknowledged", want)
			}
		}
		got, _ := load(t, h.Store, 0)
		if len(got) != max(1, h.Limits.MaxBatch, 3) {
			t.Fatalf("loaded %d players, want %d", len(got), max(1, h.Limits.MaxBatch, 3))
		}
		for _, sp := range got {
			if string(sp.Value) != fmt.Sprint(batches-1) {
				t.Fatalf("player %s holds %q after the last batch wrote %d", sp.Token, sp.Value, batches-1)
			}
		}
	})
	t.Run("PartitionsAreSeparate", func(t *testing.T) {
		h := newStore(t)
		f0, f1 := claim(t, h.Store, 0), claim(t, h.Store, 1)
		if _, err := writePlayers(h.Store, 0, f0, players("a=0")); err != nil {
			t.Fatal(err)
		}
		claim(t, h.Store, 0) // fences partition 0 only
		if _, err := writePlayers(h.Store, 1, f1, players("a=1")); err != nil {
			t.Fatalf("write to partition 1 after partition 0 was claimed again: %v", err)
		}
		if got, _ := load(t, h.Store, 0); render(got) != "a=0" {
			t.Fatalf("partition 0 loaded %q", render(got))
		}
		if got, _ := load(t, h.Store, 1); render(got) != "a=1" {
			t.Fatalf("partition 1 loaded %q", render(got))
		}
		if got, _ := load(t, h.Store, 2); len(got) != 0 {
			t.Fatalf("partition 2 loaded %q", render(got))
		}
	})
}

func claim(t *testing.T, s partition.Store, p int) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fence, err := s.Claim(ctx, p, "owner")
	if err != nil {
		t.Fatalf("claim partition %d: %v", p, err)
	}
	return fence
}

// players makes writes from "token=value" pairs.
func players(pairs ...string) []partition.PlayerWrite {
	out := make([]partition.PlayerWrite, len(pairs))
	for i, kv := range pairs {
		k, v, _ := strings.Cut(kv, "=")
		out[i] = partition.PlayerWrite{Token: k, Value: []byte(v)}
	}
	return out
}

func render(sps []partition.StoredPlayer) string {
	var parts []string
	for _, sp := range sps {
		parts = append(parts, sp.Token+"="+string(sp.Value))
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}

// ack is a write's outcome.
type ack struct {
	rev uint64
	err error
}

// await runs a write and waits for its acknowledgement.
func await(write func(done func(uint64, error))) (uint64, error) {
	done := make(chan ack, 1)
	write(func(rev uint64, err error) { done <- ack{rev, err} })
	select {
	case r := <-done:
		return r.rev, r.err
	case <-time.After(10 * time.Second):
		return 0, errors.New("write never acknowledged")
	}
}

func writePlayers(s partition.Store, p int, fence uint64, batch []partition.PlayerWrite) (uint64, error) {
	return await(func(done func(uint64, error)) { s.WritePlayers(p, batch, fence, done) })
}

func writeShard(s partition.Store, p int, value []byte, expect uint64) (uint64, error) {
	return await(func(done func(uint64, error)) { s.WriteShard(p, value, expect, done) })
}

func load(t *testing.T, s partition.Store, p int) ([]partition.StoredPlayer, partition.Snapshot) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []partition.StoredPlayer
	snap, err := s.LoadPartition(ctx, p, func(b []partition.StoredPlayer) { got = append(got, b...) })
	if err != nil {
		t.Fatalf("load partition %d: %v", p, err)
	}
	return got, snap
}

// FeedHarness is a partition.Feed over a fresh, empty events stream and
// how to publish on that stream as a game server does.
type FeedHarness struct {
	Feed partition.Feed
	// Publish stores an event under region and user token; it returns
	// the event's sequence.
	Publish func(t *testing.T, region, token string, data []byte) uint64
}

// FeedContract runs the partition.Feed contract against the feeds newFeed
// makes over a stream of partitions partitions, one per subtest: each
// registration gets its partition's events from its sequence on, in
// order, with the partition and region parsed, until stopped.
func FeedContract(t *testing.T, newFeed func(t *testing.T, partitions int) FeedHarness) {
	const partitions = 4
	type published struct {
		seq           uint64
		p             int
		region, token string
	}
	publish := func(t *testing.T, h FeedHarness, from, to int) []published {
		var out []published
		for i := from; i < to; i++ {
			token := fmt.Sprintf("u%d", i)
			region := []string{"US", "EU"}[i%2]
			seq := h.Publish(t, region, token, []byte(token))
			out = append(out, published{seq: seq, p: domain.PartitionOf(token, partitions), region: region, token: token})
		}
		return out
	}
	collect := func(t *testing.T, f partition.Feed, p int, from uint64) (chan partition.EventMsg, func()) {
		got := make(chan partition.EventMsg, 1000)
		stop, err := f.Events(context.Background(), p, from, func(m partition.EventMsg) { got <- m })
		if err != nil {
			t.Fatalf("events of partition %d: %v", p, err)
		}
		t.Cleanup(stop)
		return got, stop
	}
	expect := func(t *testing.T, got chan partition.EventMsg, want []published) {
		t.Helper()
		for _, w := range want {
			select {
			case m := <-got:
				if m.Seq != w.seq || m.Partition != w.p || m.Region != w.region || string(m.Data) != w.token || m.Time.IsZero() {
					t.Fatalf("delivered seq %d partition %d region %q data %q time %v; want seq %d partition %d region %q data %q",
						m.Seq, m.Partition, m.Region, m.Data, m.Time, w.seq, w.p, w.region, w.token)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("event %d (%s) never delivered", w.seq, w.token)
			}
		}
		select {
		case m := <-got:
			t.Fatalf("delivered seq %d (%q) besides", m.Seq, m.Data)
		case <-time.After(50 * time.Millisecond):
		}
	}
	of := func(evs []published, p int, from uint64) []published {
		var out []published
		for _, e := range evs {
			if e.p == p && e.seq >= from {
				out = append(out, e)
			}
		}
		return out
	}
	t.Run("EachPartitionItsEventsInOrder", func(t *testing.T) {
		h := newFeed(t, partitions)
		evs := publish(t, h, 0, 20)
		var gots []chan partition.EventMsg
		for p := range partitions {
			got, _ := collect(t, h.Feed, p, 1)
			gots = append(gots, got)
		}
		evs = append(evs, publish(t, h, 20, 40)...)
		for p, got := range gots {
			expect(t, got, of(evs, p, 1))
		}
	})
	t.Run("FromASequenceOn", func(t *testing.T) {
		h := newFeed(t, partitions)
		evs := publish(t, h, 0, 30)
		mine := of(evs, 1, 1)
		if len(mine) < 3 {
			t.Fatalf("only %d events in partition 1", len(mine))
		}
		got, _ := collect(t, h.Feed, 1, mine[2].seq)
		expect(t, got, mine[2:])
		// A later registration of another partition from the start does
		// not deliver partition 1's events again.
		got0, _ := collect(t, h.Feed, 0, 1)
		expect(t, got0, of(evs, 0, 1))
		select {
		case m := <-got:
			t.Fatalf("partition 1 delivered seq %d again", m.Seq)
		case <-time.After(50 * time.Millisecond):
		}
	})
	t.Run("StopEndsDelivery", func(t *testing.T) {
		h := newFeed(t, partitions)
		got, stop := collect(t, h.Feed, 2, 1)
		evs := publish(t, h, 0, 20)
		expect(t, got, of(evs, 2, 1))
		stop()
		publish(t, h, 20, 40)
		select {
		case m := <-got:
			t.Fatalf("delivered seq %d after stop", m.Seq)
		case <-time.After(100 * time.Millisecond):
		}
	})
}

// CoordinatorContract runs the partition.Coordinator contract against the
// coordinators newCoord makes, one per subtest on a fresh store: members
// join by heartbeat and go by leaving, each partition has a lease of its
// own, and changes are signalled.
func CoordinatorContract(t *testing.T, newCoord func(t *testing.T) partition.Coordinator) {
	ctx := context.Background()
	t.Run("MembersJoinAndLeave", func(t *testing.T) {
		c := newCoord(t)
		for _, m := range []string{"b", "a"} {
			if err := c.Heartbeat(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
		Eventually(t, "members a and b", func() bool { ms, err := c.Members(ctx); return err == nil && slices.Equal(ms, []string{"a", "b"}) })
		if err := c.Leave(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		Eventually(t, "members b", func() bool { ms, err := c.Members(ctx); return err == nil && slices.Equal(ms, []string{"b"}) })
	})
	t.Run("ALeaseEachPartition", func(t *testing.T) {
		c := newCoord(t)
		rev, err := c.Lease(1).Acquire(ctx, "a")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Lease(1).Acquire(ctx, "b"); !errors.Is(err, lease.ErrConflict) {
			t.Fatalf("acquire partition 1's lease a holds: %v, want lease.ErrConflict", err)
		}
		if _, err := c.Lease(2).Acquire(ctx, "b"); err != nil {
			t.Fatalf("acquire partition 2 while a holds 1: %v", err)
		}
		if rev, err = c.Lease(1).Renew(ctx, "a", rev); err != nil {
			t.Fatal(err)
		}
		if err := c.Lease(1).Release(ctx, "a", rev); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Lease(1).Acquire(ctx, "b"); err != nil {
			t.Fatalf("acquire a released lease: %v", err)
		}
	})
	t.Run("ChangesAreSignalled", func(t *testing.T) {
		c := newCoord(t)
		drain := func() {
			for {
				select {
				case <-c.Changed():
				case <-time.After(100 * time.Millisecond):
					return
				}
			}
		}
		signalled := func(what string) {
			t.Helper()
			select {
			case <-c.Changed():
			case <-time.After(10 * time.Second):
				t.Fatalf("no change signalled after %s", what)
			}
		}
		drain()
		if err := c.Heartbeat(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		signalled("a member joined")
		drain()
		if _, err := c.Lease(3).Acquire(ctx, "b"); err != nil {
			t.Fatal(err)
		}
		signalled("a lease was taken")
	})
}

// Eventually waits up to 10 s of wall-clock time for cond, checking it
// every 5 ms.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
