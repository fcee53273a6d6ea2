package domain

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"slices"
	"sort"
	"testing"
)

func TestRank(t *testing.T) {
	c := MustCatalog([]string{"US"}, []int{1, 2, 3, 5, 8, 13})
	tests := []struct {
		name    string
		perMode []int64
		want    []ModeCount
	}{
		{"count desc then mode asc, zeros omitted", []int64{5, 0, 7, 5, 0, 1},
			[]ModeCount{{3, 7}, {1, 5}, {5, 5}, {13, 1}}},
		{"all tied", []int64{2, 2, 2, 2, 2, 2},
			[]ModeCount{{1, 2}, {2, 2}, {3, 2}, {5, 2}, {8, 2}, {13, 2}}},
		{"ascending input", []int64{1, 2, 3, 4, 5, 6},
			[]ModeCount{{13, 6}, {8, 5}, {5, 4}, {3, 3}, {2, 2}, {1, 1}}},
		{"negative omitted", []int64{-1, 0, 3, 0, 0, 0}, []ModeCount{{3, 3}}},
		{"large", []int64{1 << 40, 1<<40 + 1, 0, 0, 0, 0}, []ModeCount{{2, 1<<40 + 1}, {1, 1 << 40}}},
		{"all zero", []int64{0, 0, 0, 0, 0, 0}, []ModeCount{}},
	}
	for _, tt := range tests {
		got := c.Rank(tt.perMode)
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: Rank(%v) = %v, want %v", tt.name, tt.perMode, got, tt.want)
		}
	}
	// An empty lobby list is a JSON array, never null.
	b, _ := json.Marshal(c.Rank(make([]int64, 6)))
	if string(b) != "[]" {
		t.Errorf("empty Rank marshals as %s, want []", b)
	}
	b, _ = json.Marshal(c.Rank([]int64{0, 2000, 0, 0, 0, 1000}))
	if want := `[{"game_mode":2,"player_count":2000},{"game_mode":13,"player_count":1000}]`; string(b) != want {
		t.Errorf("Rank JSON %s, want %s", b, want)
	}
}

func TestRankProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	modes := make([]int, 0, 30)
	for m := range 30 {
		modes = append(modes, m*3+r.IntN(3))
	}
	c := MustCatalog([]string{"US"}, modes)
	for i := 0; i < 2000; i++ {
		per := make([]int64, c.NumModes())
		for j := range per {
			per[j] = r.Int64N(5) - 1 // many ties, zeros and negatives
		}
		var want []ModeCount
		for j, n := range per {
			if n > 0 {
				want = append(want, ModeCount{c.GameMode(j), n})
			}
		}
		sort.SliceStable(want, func(a, b int) bool { return want[a].PlayerCount > want[b].PlayerCount })
		got := c.Rank(per)
		if len(got) != len(want) || (len(want) > 0 && !slices.Equal(got, want)) {
			t.Fatalf("Rank(%v) = %v, want %v", per, got, want)
		}
	}
}

func randomCounts(r *rand.Rand, c *Catalog, fill float64) Counts {
	counts := NewCounts(c)
	for reg := 0; reg < c.NumRegions(); reg++ {
		for m := 0; m < c.NumModes(); m++ {
			if r.Float64() < fill {
				counts.Add(Slot{uint16(reg), uint16(m)}, 1+r.Int64N(1_000_000))
			}
		}
	}
	return counts
}

func TestShardRoundTrip(t *testing.T) {
	c := DefaultCatalog()
	r := rand.New(rand.NewPCG(9, 10))
	for i := 0; i < 300; i++ {
		counts := randomCounts(r, c, []float64{0, 0.1, 0.5, 1}[i%4])
		applied := r.Uint64N(1 << 62)
		h := ShardHeader{Partition: r.IntN(32), Owner: "worker-1", AppliedSeq: applied, DeliveredSeq: applied + r.Uint64N(1000)}
		back, got, dropped, err := c.DecodeShard(c.EncodeShard(h, counts))
		if err != nil || back != h || dropped != 0 || !got.Equal(counts) {
			t.Fatalf("round trip: header %+v -> %+v, dropped %d, equal %v, err %v", h, back, dropped, got.Equal(counts), err)
		}
	}
}

func TestEncodeShardExact(t *testing.T) {
	c := MustCatalog([]string{"US", "EU"}, []int{1, 10})
	counts := NewCounts(c)
	counts.Add(Slot{0, 1}, 3)
	if got, want := string(c.EncodeShard(ShardHeader{Partition: 4, Owner: "me", AppliedSeq: 99, DeliveredSeq: 105}, counts)), "gms1 4 99 me 105\nUS,EU|1,10\n0,3,0,0"; got != want {
		t.Errorf("EncodeShard = %q, want %q", got, want)
	}
	// Without a delivered sequence, it is the applied one.
	if got, want := string(c.EncodeShard(ShardHeader{Partition: 4, Owner: "me", AppliedSeq: 99}, counts)), "gms1 4 99 me 99\nUS,EU|1,10\n0,3,0,0"; got != want {
		t.Errorf("EncodeShard = %q, want %q", got, want)
	}
}

// A shard written before the delivered sequence existed reads with
// everything applied delivered.
func TestDecodeShardOfFourFields(t *testing.T) {
	c := MustCatalog([]string{"US", "EU"}, []int{1, 10})
	h, counts, _, err := c.DecodeShard([]byte("gms1 4 99 me\nUS,EU|1,10\n0,3,0,0"))
	if err != nil || h != (ShardHeader{Partition: 4, Owner: "me", AppliedSeq: 99, DeliveredSeq: 99}) || counts.Get(Slot{0, 1}) != 3 {
		t.Fatalf("old shard: %+v %v %v", h, counts.v, err)
	}
}

func TestCompactShardRoundTrip(t *testing.T) {
	c := MustCatalog([]string{"US", "EU", "BR"}, []int{1, 2, 5})
	counts := NewCounts(c)
	counts.Add(Slot{0, 0}, 7)
	counts.Add(Slot{2, 2}, 123456789)
	counts.Add(Slot{1, 1}, -1) // transient negatives must survive too
	b := c.EncodeShard(ShardHeader{Partition: 9, Owner: "host-1", AppliedSeq: 42}, counts)
	h, got, dropped, err := c.DecodeShard(b)
	if err != nil || dropped != 0 || h != (ShardHeader{Partition: 9, Owner: "host-1", AppliedSeq: 42, DeliveredSeq: 42}) || !got.Equal(counts) {
		t.Fatalf("round trip of %q: %+v %v dropped %d err %v", b, h, got.v, dropped, err)
	}
	// Another process's catalog (modes sorted: 1, 5): counts are mapped by name, unknown slots dropped.
	other := MustCatalog([]string{"BR", "US", "JP"}, []int{5, 1})
	_, got, dropped, err = other.DecodeShard(b)
	if err != nil || dropped != 1 || got.Get(Slot{1, 0}) != 7 || got.Get(Slot{0, 1}) != 123456789 {
		t.Fatalf("mapped decode: %v dropped %d err %v", got.v, dropped, err)
	}
	for _, bad := range []string{"", "gms1 1 2", "gms1 x 2 o\nUS|1\n1", "gms1 1 2 o\nUS|1\n1,2", "gms1 1 2 o\nUS|1\nx", "json{}", "gms1 1 2 o 1\nUS|1\n1", "gms1 1 2 o x\nUS|1\n1"} {
		if _, _, _, err := c.DecodeShard([]byte(bad)); err == nil {
			t.Errorf("DecodeShard(%q) accepted", bad)
		}
	}
}

func BenchmarkDecodeShard(b *testing.B) {
	c := DefaultCatalog()
	counts := NewCounts(c)
	for i := range counts.v {
		counts.v[i] = int64(i * 1000)
	}
	enc := c.EncodeShard(ShardHeader{Partition: 3, Owner: "w", AppliedSeq: 99}, counts)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, err := c.DecodeShard(enc); err != nil {
			b.Fatal(err)
		}
	}
}
