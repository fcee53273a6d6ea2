package main

import (
	"strings"
	"testing"

	"github.com/gamemodes/gamemodes/cmd/internal/workload"
	"github.com/gamemodes/gamemodes/modules/domain"
)

func TestCheckArchiveCountsLostDuplicatedAndUnknown(t *testing.T) {
	acked := []string{"a", "b", "c", "d"}
	unresolved := []string{"u1", "u2"}
	// Exactly once: nothing wrong.
	if c := checkArchive(acked, unresolved, []string{"a", "b", "c", "d", "u2"}, 5); c.Lost != 0 || c.Duplicated != 0 || c.Unknown != 0 || c.UnresolvedStored != 1 {
		t.Fatalf("exact archive: %+v", c)
	}
	// d missing, b twice, x never sent, one stream message beyond the
	// distinct events (a duplicate the stream let through).
	c := checkArchive(acked, unresolved, []string{"a", "b", "b", "c", "x"}, 5)
	if c.Lost != 1 || c.LostSample[0] != "d" || c.Duplicated != 2 || c.Unknown != 1 || c.Acknowledged != 4 || c.Rows != 5 {
		t.Fatalf("broken archive: %+v", c)
	}
}

func TestCheckPlayersComparesCertainPlayersOnly(t *testing.T) {
	in := func(r, m uint16) workload.State {
		return workload.State{Present: true, Slot: domain.Slot{Region: r, Mode: m}}
	}
	want := []playerExpectation{
		{Key: "0.a", State: in(1, 2), Certain: true},
		{Key: "0.b", State: workload.State{}, Certain: true}, // left: absent state or no key
		{Key: "1.c", State: workload.State{}, Certain: true}, // expired: no key
		{Key: "1.d", State: in(0, 0), Certain: false},        // near expiry: skipped
		{Key: "2.e", State: in(3, 3), Certain: true},         // stored elsewhere
		{Key: "2.f", State: in(3, 3), Certain: true},         // no key
		{Key: "2.g", State: workload.State{}, Certain: true}, // still stored present
	}
	stored := map[string]domain.PlayerState{
		"0.a": {Present: true, Slot: domain.Slot{Region: 1, Mode: 2}},
		"0.b": {},
		"2.e": {Present: true, Slot: domain.Slot{Region: 3, Mode: 1}},
		"2.g": {Present: true, Slot: domain.Slot{Region: 0, Mode: 0}},
	}
	c := checkPlayers(want, stored)
	if c.Checked != 6 || c.Uncertain != 1 || c.Mismatched != 3 {
		t.Fatalf("%+v", c)
	}
	joined := strings.Join(c.Sample, "\n")
	for _, k := range []string{"2.e", "2.f", "2.g"} {
		if !strings.Contains(joined, k) {
			t.Errorf("mismatch of %s not described: %s", k, joined)
		}
	}
}

func TestLobbyDiffChecksEveryRegionAgainstTheBounds(t *testing.T) {
	cat := domain.MustCatalog([]string{"US", "EU"}, []int{1, 2})
	b := workload.NewBounds(cat)
	us1, us2, eu1 := domain.Slot{Region: 0, Mode: 0}, domain.Slot{Region: 0, Mode: 1}, domain.Slot{Region: 1, Mode: 0}
	b.Lo.Add(us1, 3)
	b.Hi.Add(us1, 3)
	b.Hi.Add(us2, 1) // 0 or 1
	b.Lo.Add(eu1, 2)
	b.Hi.Add(eu1, 2)
	ok := map[string]map[int]int64{"US": {1: 3, 2: 1}, "EU": {1: 2}}
	if d := lobbyDiff(cat, b, ok); len(d) != 0 {
		t.Fatalf("within bounds: %v", d)
	}
	ok["US"] = map[int]int64{1: 3}
	if d := lobbyDiff(cat, b, ok); len(d) != 0 {
		t.Fatalf("within bounds (the range's low end): %v", d)
	}
	bad := map[string]map[int]int64{"US": {1: 4}, "EU": {1: 2, 2: 1}}
	d := lobbyDiff(cat, b, bad)
	if len(d) != 2 || !strings.Contains(d[0], "US: mode 1 want 3 got 4") || !strings.Contains(d[1], "EU: mode 2 want 0 got 1") {
		t.Fatalf("%q", d)
	}
	if d := lobbyDiff(cat, b, map[string]map[int]int64{"US": {1: 3}}); len(d) != 1 || d[0] != "EU: not read" {
		t.Fatalf("a region not read: %q", d)
	}
}

// A worker stopped longer than the lease TTL must have lost every lease it
// held by its resume, and say so in its log; one that held none passes
// without a log line (the soak's first version wanted a fenced write or a
// lost lease in the log of every stalled worker, and a worker that owned
// nothing when it was stopped has neither to log).
func TestStallCheck(t *testing.T) {
	before := map[int]uint64{1: 10, 4: 12}
	c := stallCheck{Worker: "worker2"}
	judgeStall(&c, before, map[int]lease{1: {owner: "worker1", rev: 30}, 4: {owner: "worker3", rev: 31}})
	if c.Held != 2 || len(c.Kept) != 0 || stalledOK(c) {
		t.Fatalf("taken over, no log line yet: %+v ok=%v", c, stalledOK(c))
	}
	c.Stepped = true
	if !stalledOK(c) {
		t.Fatalf("taken over and stepped down: %+v", c)
	}
	// Lease 4 expired and nobody took it: lost all the same.
	c = stallCheck{Worker: "worker2", Stepped: true}
	judgeStall(&c, before, map[int]lease{1: {owner: "worker1", rev: 30}})
	if len(c.Kept) != 0 || !stalledOK(c) {
		t.Fatalf("expired: %+v", c)
	}
	// Lease 4 still names the stalled worker: not fenced.
	c = stallCheck{Worker: "worker2", Stepped: true}
	judgeStall(&c, before, map[int]lease{1: {owner: "worker1", rev: 30}, 4: {owner: "worker2", rev: 12}})
	if len(c.Kept) != 1 || c.Kept[0] != 4 || stalledOK(c) {
		t.Fatalf("kept: %+v", c)
	}
	// Nothing held: nothing to lose or log.
	c = stallCheck{Worker: "worker2"}
	judgeStall(&c, map[int]uint64{}, map[int]lease{1: {owner: "worker1", rev: 30}})
	if c.Held != 0 || !stalledOK(c) {
		t.Fatalf("nothing held: %+v", c)
	}
}
