package jetstream

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/nats/natstest"
	"github.com/gamemodes/gamemodes/nats/topology"
)

// recordingSink records what a ShardWatcher hands it.
type recordingSink struct {
	mu      sync.Mutex
	sets    []sinkSet
	deletes []int
}

type sinkSet struct {
	partition int
	rev       uint64
	applied   uint64
	counts    domain.Counts
}

func (s *recordingSink) SetShard(partition int, rev, applied uint64, counts domain.Counts) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sets = append(s.sets, sinkSet{partition, rev, applied, counts})
}

func (s *recordingSink) DeleteShard(partition int, _ uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deletes = append(s.deletes, partition)
}

func (s *recordingSink) MarkSynced() {}

func (s *recordingSink) wait(t *testing.T, sets, deletes int) []sinkSet {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		got := append([]sinkSet(nil), s.sets...)
		dels := len(s.deletes)
		s.mu.Unlock()
		if len(got) >= sets && dels >= deletes {
			return got
		}
		if time.Now().After(deadline) {
			var applied []uint64
			for _, g := range got {
				applied = append(applied, g.applied)
			}
			t.Fatalf("sink got %d sets (applied %v) and %d deletes, want %d and %d", len(got), applied, dels, sets, deletes)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestShardWatcherDecodesOnlyChangedCounts: a shard whose counts are the
// previous shard's (only the applied sequence moved) hands the sink the
// counts it already has, without decoding; shards of either form, changed
// counts, an unreadable shard and a deletion go through as before. The
// changes are applied as the bucket watch delivers them, in order.
func TestShardWatcherDecodesOnlyChangedCounts(t *testing.T) {
	binary := domain.DefaultCatalog()
	text := domain.DefaultCatalog()
	text.SetShardEncoding(domain.ShardText)
	a := domain.NewCounts(binary)
	a.Add(domain.Slot{Region: 0, Mode: 1}, 5)
	b := domain.NewCounts(binary)
	b.Add(domain.Slot{Region: 2, Mode: 3}, 7)
	sink := &recordingSink{}
	w := NewShardWatcher(nil, binary, sink, slog.New(slog.NewTextHandler(io.Discard, nil)))
	rev := uint64(0)
	put := func(c *domain.Catalog, applied uint64, counts domain.Counts) {
		rev++
		w.apply(kvChange{Key: topology.ShardKey(3), Rev: rev, Value: c.EncodeShard(domain.ShardHeader{Partition: 3, Owner: "o", AppliedSeq: applied}, counts)})
	}
	put(text, 1, a)   // an older writer's text shard
	put(binary, 2, a) // the same counts in the binary form: another body, decoded
	put(binary, 3, a) // only the applied sequence moved: not decoded
	put(binary, 4, b) // changed counts
	rev++
	w.apply(kvChange{Key: topology.ShardKey(3), Rev: rev, Value: []byte("gms2\xff")})
	put(binary, 5, b) // after an unreadable shard: decoded again
	rev++
	w.apply(kvChange{Key: topology.ShardKey(3), Rev: rev, Deleted: true})
	put(binary, 6, b) // after a deletion: decoded again

	sets := sink.wait(t, 6, 1)
	if len(sets) != 6 {
		t.Fatalf("sink got %d sets, want 6 (the unreadable shard is skipped)", len(sets))
	}
	same := func(x, y domain.Counts) bool { return &x.Region(0)[0] == &y.Region(0)[0] }
	for i, want := range []struct {
		applied uint64
		counts  domain.Counts
	}{{1, a}, {2, a}, {3, a}, {4, b}, {5, b}, {6, b}} {
		got := sets[i]
		if got.partition != 3 || got.applied != want.applied || !got.counts.Equal(want.counts) {
			t.Fatalf("set %d: partition %d applied %d equal %v", i, got.partition, got.applied, got.counts.Equal(want.counts))
		}
	}
	for i, wantSame := range []bool{false, true, false, false, false} {
		if got := same(sets[i].counts, sets[i+1].counts); got != wantSame {
			t.Fatalf("sets %d and %d share their counts: %v, want %v (only a shard with an unchanged body skips decoding)", i+1, i+2, got, wantSame)
		}
	}
}

// TestShardWatcherRereadHealsAMissedChange: a change the bucket watch does
// not deliver (here the watch is stopped, as a watch that missed an update
// around a node failure would be) reaches the sink through the periodic
// re-read; a re-read of unchanged shards applies nothing, and one older
// than what the watch delivered never goes back.
func TestShardWatcherRereadHealsAMissedChange(t *testing.T) {
	ns := natstest.RunServer(t)
	_, js := natstest.Connect(t, ns.ClientURL())
	ctx := context.Background()
	if _, err := topology.Ensure(ctx, js, topology.Config{Partitions: 4}); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, topology.CountsBucket)
	if err != nil {
		t.Fatal(err)
	}
	cat := domain.DefaultCatalog()
	shard := func(applied uint64, n int64) []byte {
		c := domain.NewCounts(cat)
		c.Add(domain.Slot{Region: 1, Mode: 2}, n)
		return cat.EncodeShard(domain.ShardHeader{Partition: 2, Owner: "o", AppliedSeq: applied}, c)
	}
	if _, err := kv.Put(ctx, topology.ShardKey(2), shard(1, 5)); err != nil {
		t.Fatal(err)
	}
	sink := &recordingSink{}
	w := NewShardWatcher(js, cat, sink, slog.New(slog.NewTextHandler(io.Discard, nil)))
	w.Reread = 50 * time.Millisecond
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if got := sink.wait(t, 1, 0); got[0].counts.Get(domain.Slot{Region: 1, Mode: 2}) != 5 {
		t.Fatalf("initial shard: %+v", got[0])
	}
	time.Sleep(200 * time.Millisecond) // re-reads of an unchanged shard
	if n, err := w.RereadOnce(ctx); err != nil || n != 0 {
		t.Fatalf("re-read of unchanged shards applied %d (%v), want 0", n, err)
	}
	sink.mu.Lock()
	if len(sink.sets) != 1 {
		t.Errorf("unchanged shards were applied again: %d sets", len(sink.sets))
	}
	sink.mu.Unlock()

	w.stopWatch() // the watch delivers nothing from now on
	rev, err := kv.Put(ctx, topology.ShardKey(2), shard(9, 7))
	if err != nil {
		t.Fatal(err)
	}
	got := sink.wait(t, 2, 0)
	if last := got[len(got)-1]; last.rev != rev || last.applied != 9 || last.counts.Get(domain.Slot{Region: 1, Mode: 2}) != 7 {
		t.Fatalf("after a missed change: %+v, want revision %d with 7 players", last, rev)
	}
	if w.applyIfNewer(kvChange{Key: topology.ShardKey(2), Rev: rev - 1, Value: shard(1, 5)}) {
		t.Error("a re-read older than what was applied went back")
	}
}
