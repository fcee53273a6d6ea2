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

// textCatalog is c writing the text shard form of earlier versions.
func textCatalog(regions []string, modes []int) *Catalog {
	c := MustCatalog(regions, modes)
	c.SetShardEncoding(ShardText)
	return c
}

func TestShardRoundTrip(t *testing.T) {
	for _, enc := range []ShardEncoding{ShardBinary, ShardText} {
		c := DefaultCatalog()
		c.SetShardEncoding(enc)
		r := rand.New(rand.NewPCG(9, 10))
		for i := 0; i < 300; i++ {
			counts := randomCounts(r, c, []float64{0, 0.1, 0.5, 1}[i%4])
			applied := r.Uint64N(1 << 62)
			h := ShardHeader{Partition: r.IntN(32), Owner: "worker-1", AppliedSeq: applied, DeliveredSeq: applied + r.Uint64N(1000)}
			back, got, dropped, err := c.DecodeShard(c.EncodeShard(h, counts))
			if err != nil || back != h || dropped != 0 || !got.Equal(counts) {
				t.Fatalf("encoding %d round trip: header %+v -> %+v, dropped %d, equal %v, err %v", enc, h, back, dropped, got.Equal(counts), err)
			}
		}
	}
}

func TestEncodeShardExact(t *testing.T) {
	c := MustCatalog([]string{"US", "EU"}, []int{1, 10})
	counts := NewCounts(c)
	counts.Add(Slot{0, 1}, 3)
	counts.Add(Slot{1, 1}, -2)
	// gms2, partition 4, applied 99, delivered 99 (+0), owner "me" (2), catalog "US,EU|1,10" (10),
	// sparse: 2 non-zero slots: slot 1 (distance 2) = 3 (zig-zag 6), slot 3 (distance 2) = -2 (zig-zag 3).
	want := "gms2\x04\x63\x00\x02me\x0aUS,EU|1,10\x00\x02\x02\x06\x02\x03"
	if got := string(c.EncodeShard(ShardHeader{Partition: 4, Owner: "me", AppliedSeq: 99}, counts)); got != want {
		t.Errorf("EncodeShard = %q, want %q", got, want)
	}
	// Three of four slots: dense, 4 counts 0, 3, 1, -2.
	counts.Add(Slot{1, 0}, 1)
	want = "gms2\x04\x63\x00\x02me\x0aUS,EU|1,10\x01\x04\x00\x06\x02\x03"
	if got := string(c.EncodeShard(ShardHeader{Partition: 4, Owner: "me", AppliedSeq: 99}, counts)); got != want {
		t.Errorf("EncodeShard = %q, want %q", got, want)
	}
	counts.Add(Slot{1, 0}, -1)
	if got, want := string(c.EncodeShardText(ShardHeader{Partition: 4, Owner: "me", AppliedSeq: 99}, counts)), "gms1 4 99 me 99\nUS,EU|1,10\n0,3,0,-2"; got != want {
		t.Errorf("EncodeShardText = %q, want %q", got, want)
	}
	// The delivered sequence after the applied one: binary as the difference, text last on the first line.
	h5 := ShardHeader{Partition: 4, Owner: "me", AppliedSeq: 99, DeliveredSeq: 105}
	if got, want := string(c.EncodeShard(h5, counts)), "gms2\x04\x63\x06\x02me\x0aUS,EU|1,10\x00\x02\x02\x06\x02\x03"; got != want {
		t.Errorf("EncodeShard = %q, want %q", got, want)
	}
	if got, want := string(c.EncodeShardText(h5, counts)), "gms1 4 99 me 105\nUS,EU|1,10\n0,3,0,-2"; got != want {
		t.Errorf("EncodeShardText = %q, want %q", got, want)
	}
	// The default catalog, a partition's counts of 10 million players over
	// 32 partitions (1,000-3,000 per slot): the binary form is at most half
	// the text form, and a third with one slot in ten filled.
	d := DefaultCatalog()
	r := rand.New(rand.NewPCG(1, 1))
	h := ShardHeader{Partition: 31, Owner: "host-12345", AppliedSeq: 123456789}
	for _, c := range []struct{ fill, ratio float64 }{{1, 0.5}, {0.1, 0.34}} {
		counts := NewCounts(d)
		for i := range counts.v {
			if r.Float64() < c.fill {
				counts.v[i] = 1000 + r.Int64N(2000)
			}
		}
		if bin, text := len(d.EncodeShard(h, counts)), len(d.EncodeShardText(h, counts)); float64(bin) > c.ratio*float64(text) {
			t.Errorf("fill %v: binary shard %d bytes, text %d", c.fill, bin, text)
		}
	}
}

// TestShardReadsEitherForm: a reader decodes shards of both forms, also
// written with another catalog (mapped by name), whatever it writes itself.
func TestShardReadsEitherForm(t *testing.T) {
	counts := NewCounts(MustCatalog([]string{"US", "EU", "BR"}, []int{1, 2, 5}))
	counts.Add(Slot{0, 0}, 7)
	counts.Add(Slot{2, 2}, 123456789)
	counts.Add(Slot{1, 1}, -1) // transient negatives must survive too
	h := ShardHeader{Partition: 9, Owner: "host-1", AppliedSeq: 42, DeliveredSeq: 50}
	for _, writer := range []*Catalog{MustCatalog([]string{"US", "EU", "BR"}, []int{1, 2, 5}), textCatalog([]string{"US", "EU", "BR"}, []int{1, 2, 5})} {
		b := writer.EncodeShard(h, counts)
		for _, reader := range []*Catalog{MustCatalog([]string{"US", "EU", "BR"}, []int{1, 2, 5}), textCatalog([]string{"US", "EU", "BR"}, []int{1, 2, 5})} {
			back, got, dropped, err := reader.DecodeShard(b)
			if err != nil || dropped != 0 || back != h || !got.Equal(counts) {
				t.Fatalf("round trip of %q: %+v %v dropped %d err %v", b, back, got.v, dropped, err)
			}
		}
		// Another process's catalog (modes sorted: 1, 5): counts are mapped by name, unknown slots dropped.
		other := MustCatalog([]string{"BR", "US", "JP"}, []int{5, 1})
		_, got, dropped, err := other.DecodeShard(b)
		if err != nil || dropped != 1 || got.Get(Slot{1, 0}) != 7 || got.Get(Slot{0, 1}) != 123456789 {
			t.Fatalf("mapped decode of %q: %v dropped %d err %v", b, got.v, dropped, err)
		}
	}
}

func TestDecodeShardRefusesBadInput(t *testing.T) {
	c := MustCatalog([]string{"US"}, []int{1, 2})
	good := string(c.EncodeShard(ShardHeader{Partition: 1, Owner: "o", AppliedSeq: 5}, func() Counts { n := NewCounts(c); n.Add(Slot{0, 1}, 4); return n }()))
	bad := []string{"", "gms1 1 2", "gms1 x 2 o\nUS|1\n1", "gms1 1 2 o\nUS|1\n1,2", "gms1 1 2 o\nUS|1\nx", "json{}",
		"gms2", "gms2\x01\x05\x09o", // owner longer than the rest
		good[:len(good)-1], // truncated count
		good + "\x00",      // trailing byte
		"gms2\x01\x05\x01o\x04US|1\x00\x01\x03\x02",  // slot 2 of a 1x1 catalog
		"gms2\x01\x05\x01o\x05US|1,\x00\x01\x00\x02", // distance 0
		"gms2\x01\x05\x01o\x03USx\x00\x00",           // catalog line without "|"
		"gms2\x01\x05\x01o\x06US|1,2\x01\x01\x02",    // dense: 1 count for 2 slots
		"gms2\x01\x05\x01o\x06US|1,2\x02\x00",        // unknown layout
		"gms2\x01\x05\x01o\x06US|1,2",                // no counts
	}
	for _, b := range bad {
		if _, _, _, err := c.DecodeShard([]byte(b)); err == nil {
			t.Errorf("DecodeShard(%q) accepted", b)
		}
	}
	if _, got, _, err := c.DecodeShard([]byte(good)); err != nil || got.Get(Slot{0, 1}) != 4 {
		t.Fatalf("good shard %q: %v %v", good, got.v, err)
	}
	// Random bytes after either magic never panic.
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 20000; i++ {
		b := []byte([]string{"gms2", "gms1 "}[i%2])
		for range r.IntN(40) {
			b = append(b, byte(r.IntN(256)))
		}
		_, _, _, _ = c.DecodeShard(b)
	}
}

// TestShardBodyNamesCounts: two shards differing only in their header have
// equal bodies; different counts make different bodies.
func TestShardBodyNamesCounts(t *testing.T) {
	for _, c := range []*Catalog{DefaultCatalog(), textCatalog(DefaultRegions, DefaultGameModes)} {
		a := randomCounts(rand.New(rand.NewPCG(5, 6)), c, 0.3)
		b := NewCounts(c)
		copy(b.v, a.v)
		_, body1, err1 := DecodeShardHeader(c.EncodeShard(ShardHeader{Partition: 1, Owner: "x", AppliedSeq: 10}, a))
		h2, body2, err2 := DecodeShardHeader(c.EncodeShard(ShardHeader{Partition: 1, Owner: "longer-owner", AppliedSeq: 1 << 40}, b))
		if err1 != nil || err2 != nil || string(body1) != string(body2) || h2.AppliedSeq != 1<<40 || h2.Owner != "longer-owner" {
			t.Fatalf("equal counts: bodies differ or errors %v %v", err1, err2)
		}
		b.v[7]++
		_, body3, _ := DecodeShardHeader(c.EncodeShard(ShardHeader{Partition: 1, Owner: "x", AppliedSeq: 10}, b))
		if string(body1) == string(body3) {
			t.Fatal("different counts, equal bodies")
		}
	}
}

func TestParseShardEncoding(t *testing.T) {
	for in, want := range map[string]ShardEncoding{"binary": ShardBinary, "": ShardBinary, "text": ShardText} {
		if got, err := ParseShardEncoding(in); err != nil || got != want {
			t.Errorf("ParseShardEncoding(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseShardEncoding("json"); err == nil {
		t.Error("json accepted")
	}
}

func BenchmarkDecodeShard(b *testing.B) {
	for _, enc := range []struct {
		name string
		e    ShardEncoding
	}{{"binary", ShardBinary}, {"text", ShardText}} {
		b.Run(enc.name, func(b *testing.B) {
			c := DefaultCatalog()
			c.SetShardEncoding(enc.e)
			counts := NewCounts(c)
			for i := range counts.v {
				counts.v[i] = int64(i * 1000)
			}
			shard := c.EncodeShard(ShardHeader{Partition: 3, Owner: "w", AppliedSeq: 99}, counts)
			b.ReportMetric(float64(len(shard)), "bytes")
			b.ReportAllocs()
			for b.Loop() {
				if _, _, _, err := c.DecodeShard(shard); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A text shard written before the delivered sequence existed reads with
// everything applied delivered; a bad delivered sequence is refused.
func TestDecodeShardOfFourFields(t *testing.T) {
	c := MustCatalog([]string{"US", "EU"}, []int{1, 10})
	h, counts, _, err := c.DecodeShard([]byte("gms1 4 99 me\nUS,EU|1,10\n0,3,0,0"))
	if err != nil || h != (ShardHeader{Partition: 4, Owner: "me", AppliedSeq: 99, DeliveredSeq: 99}) || counts.Get(Slot{0, 1}) != 3 {
		t.Fatalf("old shard: %+v %v %v", h, counts.v, err)
	}
	for _, bad := range []string{"gms1 1 2 o 1\nUS|1\n1", "gms1 1 2 o x\nUS|1\n1"} {
		if _, _, _, err := c.DecodeShard([]byte(bad)); err == nil {
			t.Errorf("DecodeShard(%q) accepted", bad)
		}
	}
}
