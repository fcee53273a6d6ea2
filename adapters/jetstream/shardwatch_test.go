package jetstream

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/modules/domain"
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
// counts, an unreadable shard and a deletion go through as before.
func TestShardWatcherDecodesOnlyChangedCounts(t *testing.T) {
	js := afSetup(t)
	ctx := context.Background()
	kv, err := js.KeyValue(ctx, topology.CountsBucket)
	if err != nil {
		t.Fatal(err)
	}
	binary := domain.DefaultCatalog()
	text := domain.DefaultCatalog()
	text.SetShardEncoding(domain.ShardText)
	a := domain.NewCounts(binary)
	a.Add(domain.Slot{Region: 0, Mode: 1}, 5)
	b := domain.NewCounts(binary)
	b.Add(domain.Slot{Region: 2, Mode: 3}, 7)
	sink := &recordingSink{}
	w := NewShardWatcher(js, binary, sink, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	put := func(c *domain.Catalog, applied uint64, counts domain.Counts) {
		t.Helper()
		if _, err := kv.Put(ctx, topology.ShardKey(3), c.EncodeShard(domain.ShardHeader{Partition: 3, Owner: "o", AppliedSeq: applied}, counts)); err != nil {
			t.Fatal(err)
		}
	}
	// A shard of partition 5 first: once it arrives, the watch follows
	// the bucket. (A shard written at once after Start on an empty bucket
	// can be missed until that partition's next shard: seen here.)
	if _, err := kv.Put(ctx, topology.ShardKey(5), binary.EncodeShard(domain.ShardHeader{Partition: 5, Owner: "o"}, a)); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); len(sink.wait(t, 0, 0)) == 0; time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			_, _ = kv.Put(ctx, topology.ShardKey(5), binary.EncodeShard(domain.ShardHeader{Partition: 5, Owner: "o"}, a))
			deadline = time.Now().Add(5 * time.Second)
		}
	}
	put(text, 1, a)   // an older writer's text shard
	put(binary, 2, a) // the same counts in the binary form: another body, decoded
	put(binary, 3, a) // only the applied sequence moved: not decoded
	put(binary, 4, b) // changed counts
	if _, err := kv.Put(ctx, topology.ShardKey(3), []byte("gms2\xff")); err != nil {
		t.Fatal(err)
	}
	put(binary, 5, b) // after an unreadable shard: decoded again
	if err := kv.Delete(ctx, topology.ShardKey(3)); err != nil {
		t.Fatal(err)
	}
	var sets []sinkSet
	for _, s := range sink.wait(t, 6, 1) {
		if s.partition == 3 {
			sets = append(sets, s)
		}
	}
	if len(sets) != 5 {
		t.Fatalf("sink got %d sets, want 5 (the unreadable shard is skipped)", len(sets))
	}
	same := func(x, y domain.Counts) bool { return &x.Region(0)[0] == &y.Region(0)[0] }
	for i, want := range []struct {
		applied uint64
		counts  domain.Counts
	}{{1, a}, {2, a}, {3, a}, {4, b}, {5, b}} {
		got := sets[i]
		if got.partition != 3 || got.applied != want.applied || !got.counts.Equal(want.counts) {
			t.Fatalf("set %d: partition %d applied %d equal %v", i, got.partition, got.applied, got.counts.Equal(want.counts))
		}
	}
	if same(sets[0].counts, sets[1].counts) || !same(sets[1].counts, sets[2].counts) || same(sets[2].counts, sets[3].counts) || same(sets[3].counts, sets[4].counts) {
		t.Fatal("want the counts decoded for sets 1, 2, 4 and 5, and set 3 handed the counts of set 2")
	}
}
