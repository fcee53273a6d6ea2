package main

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/modules/domain"
)

var (
	slotA = domain.Slot{Region: 0, Mode: 0}
	slotB = domain.Slot{Region: 0, Mode: 1}
	slotC = domain.Slot{Region: 1, Mode: 0}
)

func TestNextStateFollowsTheContract(t *testing.T) {
	absent := slotState{}
	inA := slotState{present: true, slot: slotA}
	tests := []struct {
		name string
		cur  slotState
		typ  domain.EventType
		slot domain.Slot
		want slotState
	}{
		{"enter while absent counts in", absent, domain.EventEnter, slotA, inA},
		{"enter elsewhere moves", inA, domain.EventEnter, slotB, slotState{present: true, slot: slotB}},
		{"enter another region moves", inA, domain.EventEnter, slotC, slotState{present: true, slot: slotC}},
		{"enter the same mode only refreshes", inA, domain.EventEnter, slotA, inA},
		{"leave the current mode", inA, domain.EventLeave, slotA, absent},
		{"stale leave of another mode changes nothing", inA, domain.EventLeave, slotB, inA},
		{"stale leave of another region changes nothing", inA, domain.EventLeave, slotC, inA},
		{"leave while absent changes nothing", absent, domain.EventLeave, slotA, absent},
		{"heartbeat while absent counts in", absent, domain.EventHeartbeat, slotA, inA},
		{"heartbeat of the current mode changes nothing", inA, domain.EventHeartbeat, slotA, inA},
		{"heartbeat of another mode moves", inA, domain.EventHeartbeat, slotB, slotState{present: true, slot: slotB}},
	}
	for _, tt := range tests {
		if got := nextState(tt.cur, tt.typ, tt.slot); got != tt.want {
			t.Errorf("%s: got %+v want %+v", tt.name, got, tt.want)
		}
	}
}

// The loadgen's model is written independently of the service's state
// machine; on random sequences both must agree on where a player counts.
func TestNextStateAgreesWithDomainApply(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		var model slotState
		var svc domain.PlayerState
		for seq := uint64(1); seq <= 50; seq++ {
			typ := []domain.EventType{domain.EventEnter, domain.EventLeave, domain.EventHeartbeat}[rng.IntN(3)]
			slot := domain.Slot{Region: uint16(rng.IntN(2)), Mode: uint16(rng.IntN(3))}
			model = nextState(model, typ, slot)
			svc = domain.Apply(svc, typ, slot, seq).Next
			if model.present != svc.Present || model.present && model.slot != svc.Slot {
				t.Fatalf("after %v %+v: model %+v, domain %+v", typ, slot, model, svc)
			}
		}
	}
}

func TestSamplerStaysInRangeAndIsSkewed(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{1, 2, 10, 20} {
		for _, s := range []float64{0, 0.5, 1, 2} {
			z := newSampler(n, s)
			hits := make([]int, n)
			for range 20000 {
				i := z.sample(rng)
				if i < 0 || i >= n {
					t.Fatalf("n=%d s=%v: sampled %d", n, s, i)
				}
				hits[i]++
			}
			total := 0.0
			for i := range n {
				total += z.share(i)
			}
			if math.Abs(total-1) > 1e-9 {
				t.Errorf("n=%d s=%v: shares sum to %v", n, s, total)
			}
			if n > 1 && s >= 1 && hits[0]*2 <= hits[n-1]*3 {
				t.Errorf("n=%d s=%v: first %d not well above last %d", n, s, hits[0], hits[n-1])
			}
			if n > 1 && s == 0 && math.Abs(float64(hits[0]-hits[n-1])) > 20000/float64(n)*0.2 {
				t.Errorf("n=%d uniform: first %d last %d", n, hits[0], hits[n-1])
			}
		}
	}
	// Zipf s=1 over 10: the first index has 1/H(10) of the mass.
	if got, want := newSampler(10, 1).share(0), 1/2.9289682539682538; math.Abs(got-want) > 1e-9 {
		t.Errorf("share(0) = %v want %v", got, want)
	}
}

func testCatalog(t *testing.T) *domain.Catalog {
	t.Helper()
	cat, err := domain.NewCatalog([]string{"US", "EU", "BR"}, []int{1, 2, 3, 4})
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

// Planning and acknowledging many events keeps the invariants: the probe
// slot is never used, LEAVEs are of the current slot unless stale, dropped
// players are never planned again, and the truth equals a recount of every
// player's state.
func TestPopulationPlansValidTransitions(t *testing.T) {
	cat := testCatalog(t)
	m := mix{leave: 0.25, drop: 0.02, staleLeave: 0.05, travel: 0.05, heartbeat: 0.1}
	pop := newPopulation(cat, 500, 1, 1, m, 7, "p-", false, true)
	if !pop.hasProbe || pop.probe != (domain.Slot{Region: 2, Mode: 3}) {
		t.Fatalf("probe slot %+v (reserved %v)", pop.probe, pop.hasProbe)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	seen := map[string]int{}
	for range 50000 {
		i := rng.IntN(len(pop.players))
		if !pop.usable(i) {
			continue
		}
		before := pop.players[i].state
		pe, ok := pop.plan(rng, i)
		if !ok {
			seen["drop"]++
			if pop.usable(i) {
				t.Fatal("dropped player still usable")
			}
			continue
		}
		if pe.slot == pop.probe {
			t.Fatalf("planned the probe slot: %+v", pe)
		}
		switch {
		case pe.typ == domain.EventHeartbeat:
			if !before.present || before.slot != pe.slot {
				t.Fatalf("heartbeat %+v of a player at %+v", pe, before)
			}
			seen["heartbeat"]++
		case pe.typ == domain.EventEnter && !before.present:
			seen["enter"]++
		case pe.typ == domain.EventEnter && before.slot == pe.slot:
			seen["refresh"]++
		case pe.typ == domain.EventEnter && before.slot.Region != pe.slot.Region:
			seen["travel"]++
		case pe.typ == domain.EventEnter:
			seen["move"]++
		case before.present && before.slot == pe.slot:
			seen["leave"]++
		default:
			seen["stale_leave"]++
		}
		pop.ack(pe, time.Now())
	}
	for _, k := range []string{"enter", "move", "travel", "leave", "stale_leave", "heartbeat", "drop"} {
		if seen[k] == 0 {
			t.Errorf("no %s in %v", k, seen)
		}
	}
	b, st := pop.truth(time.Now(), 0, 0)
	if !b.exact() {
		t.Error("truth not exact without uncertainty or expiry")
	}
	recount := domain.NewCounts(cat)
	var present int64
	for _, p := range pop.players {
		if p.state.present {
			recount.Add(p.state.slot, 1)
			present++
		}
	}
	if !b.lo.Equal(recount) || st.Counted != present {
		t.Errorf("truth differs from a recount (counted %d, present %d)", st.Counted, present)
	}
	if b.lo.Get(pop.probe) != 0 {
		t.Errorf("probe slot counted %d players", b.lo.Get(pop.probe))
	}
	if st.Dropped == 0 {
		t.Error("dropped players not reported")
	}
}

func TestTruthCountsDroppedPlayersUntilTheirTTL(t *testing.T) {
	cat := testCatalog(t)
	pop := newPopulation(cat, 3, 0, 0, mix{drop: 1}, 1, "p-", true, false)
	t0 := time.Unix(1000, 0)
	for i := range 3 {
		pop.ack(plannedEvent{player: i, typ: domain.EventEnter, slot: slotA}, t0)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	if _, ok := pop.plan(rng, 0); ok { // drop ratio 1: the present player drops
		t.Fatal("expected a drop")
	}
	ttl, slack := time.Hour, 5*time.Second

	b, st := pop.truth(t0.Add(time.Minute), 0, 0) // expiry not modelled
	if b.lo.Get(slotA) != 3 || !b.exact() || st.Dropped != 1 {
		t.Errorf("no ttl: lo %d exact %v dropped %d", b.lo.Get(slotA), b.exact(), st.Dropped)
	}
	b, _ = pop.truth(t0.Add(time.Minute), ttl, slack)
	if b.lo.Get(slotA) != 3 || !b.exact() {
		t.Errorf("before ttl: lo %d hi %d", b.lo.Get(slotA), b.hi.Get(slotA))
	}
	b, st = pop.truth(t0.Add(ttl+time.Second), ttl, slack)
	if b.lo.Get(slotA) != 0 || b.hi.Get(slotA) != 3 || st.MaybeExpired != 3 {
		t.Errorf("within slack: lo %d hi %d maybe %d", b.lo.Get(slotA), b.hi.Get(slotA), st.MaybeExpired)
	}
	b, st = pop.truth(t0.Add(ttl+slack), ttl, slack)
	if b.hi.Get(slotA) != 0 || st.Expired != 3 {
		t.Errorf("after slack: hi %d expired %d", b.hi.Get(slotA), st.Expired)
	}
}

func TestTruthOfAnUnresolvedEventAllowsBothStates(t *testing.T) {
	cat := testCatalog(t)
	pop := newPopulation(cat, 2, 0, 0, mix{}, 1, "p-", false, false)
	now := time.Now()
	pop.ack(plannedEvent{player: 0, typ: domain.EventEnter, slot: slotA}, now)
	pop.ack(plannedEvent{player: 1, typ: domain.EventEnter, slot: slotA}, now)
	pop.unresolved(plannedEvent{player: 0, typ: domain.EventEnter, slot: slotB}, now) // moved or not
	pop.unresolved(plannedEvent{player: 1, typ: domain.EventEnter, slot: slotA}, now) // a refresh: same either way
	if pop.usable(0) || pop.usable(1) {
		t.Error("uncertain players still usable")
	}
	b, st := pop.truth(now, 0, 0)
	if b.lo.Get(slotA) != 1 || b.hi.Get(slotA) != 2 || b.lo.Get(slotB) != 0 || b.hi.Get(slotB) != 1 || st.Uncertain != 1 {
		t.Errorf("A %d-%d B %d-%d uncertain %d", b.lo.Get(slotA), b.hi.Get(slotA), b.lo.Get(slotB), b.hi.Get(slotB), st.Uncertain)
	}
	if !within(map[int]int64{1: 1, 2: 1}, map[int]int64{1: 1}, map[int]int64{1: 2, 2: 1}) ||
		!within(map[int]int64{1: 2}, map[int]int64{1: 1}, map[int]int64{1: 2, 2: 1}) ||
		within(map[int]int64{1: 3}, map[int]int64{1: 1}, map[int]int64{1: 2, 2: 1}) ||
		within(map[int]int64{}, map[int]int64{1: 1}, map[int]int64{1: 2, 2: 1}) {
		t.Error("within is wrong")
	}
}

func TestEventJSONIsAValidContractEvent(t *testing.T) {
	cat := testCatalog(t)
	body := appendEventJSON(nil, "run1-2a", "lgabc-42", domain.EventLeave, "EU", 3, 1_790_000_000_123)
	ev, err := cat.DecodeEvent(body, time.Now())
	if err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	if ev.ID != "run1-2a" || ev.UserID != "lgabc-42" || ev.Type != domain.EventLeave || ev.Region != "EU" || ev.GameMode != 3 ||
		ev.Timestamp.UnixMilli() != 1_790_000_000_123 {
		t.Errorf("decoded %+v", ev)
	}
}

func TestShardsPartitionPlayersByWorker(t *testing.T) {
	shards := newShards(10, 3)
	seen := map[int32]bool{}
	for w, s := range shards {
		for _, i := range s.live {
			if int(i)%3 != w || seen[i] {
				t.Fatalf("player %d in shard %d", i, w)
			}
			seen[i] = true
		}
	}
	if len(seen) != 10 {
		t.Fatalf("%d players sharded", len(seen))
	}
	s := shards[0]
	s.remove(0)
	if len(s.live) != 3 {
		t.Errorf("remove left %v", s.live)
	}
}

func TestMixedTicketsKeepTheReadRatio(t *testing.T) {
	for _, ratio := range []float64{0, 0.5, 1, 2, 3} {
		posts := 0
		const n = 3000
		for k := range int64(n) {
			if !opIsRead(k, ratio) {
				posts++
			}
		}
		if want := float64(n) / (1 + ratio); math.Abs(float64(posts)-want) > 1 {
			t.Errorf("ratio %v: %d posts of %d, want %.0f", ratio, posts, n, want)
		}
	}
}

func TestPacerStopsAtTheLimit(t *testing.T) {
	stop := make(chan struct{})
	p := newPacer(0, 0, 5, stop)
	timer := newStoppedTimer()
	n := 0
	for {
		if _, _, ok := p.take(timer); !ok {
			break
		}
		n++
	}
	if n != 5 || p.taken.Load() != 5 {
		t.Errorf("handed out %d tickets (taken %d), want 5", n, p.taken.Load())
	}
	open := newPacer(1e6, 0, 100, stop)
	for {
		_, lag, ok := open.take(timer)
		if !ok {
			break
		}
		if lag < 0 {
			t.Fatalf("negative lag %v", lag)
		}
	}
	if open.taken.Load() != 100 || open.missed() != 0 {
		t.Errorf("open loop: taken %d missed %d", open.taken.Load(), open.missed())
	}
	close(stop)
	if _, _, ok := newPacer(0, time.Hour, 0, stop).take(timer); ok {
		t.Error("a stopped pacer handed out a ticket")
	}
}

func TestParseLobbyChecksTheContract(t *testing.T) {
	got, err := parseLobby("US", []byte(`{"region":"US","game_modes":[{"game_mode":2,"player_count":5},{"game_mode":1,"player_count":3},{"game_mode":3,"player_count":3}]}`))
	if err != nil || got[2] != 5 || got[1] != 3 || got[3] != 3 {
		t.Fatalf("got %v, %v", got, err)
	}
	for _, bad := range []string{
		`{"region":"EU","game_modes":[]}`,
		`{"region":"US","game_modes":[{"game_mode":1,"player_count":3},{"game_mode":2,"player_count":5}]}`,
		`{"region":"US","game_modes":[{"game_mode":3,"player_count":3},{"game_mode":1,"player_count":3}]}`,
		`{"region":"US","game_modes":[{"game_mode":1,"player_count":0}]}`,
		`not json`,
	} {
		if _, err := parseLobby("US", []byte(bad)); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	var out strings.Builder
	if _, err := parseConfig([]string{"--http-url", "http://127.0.0.1:1"}, &out); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, args := range [][]string{
		{"--mode", "http"},
		{"--mode", "nats", "--nats-url", "nats://127.0.0.1:1"},
		{"--mode", "bogus", "--http-url", "http://127.0.0.1:1"},
		{"--http-url", "http://127.0.0.1:1", "--leave-ratio", "0.9", "--drop-ratio", "0.2"},
		{"--http-url", "http://127.0.0.1:1", "--user-prefix", "a b"},
		{"--http-url", "http://127.0.0.1:1", "--duration", "0"},
		{"--http-url", "ftp://x"},
	} {
		if _, err := parseConfig(args, &out); err == nil {
			t.Errorf("accepted %v", args)
		}
	}
	if c, err := parseConfig([]string{"--mode", "nats", "--nats-url", "nats://127.0.0.1:1", "--no-verify"}, &out); err != nil || c.verify {
		t.Errorf("nats without http-url and --no-verify: %v verify=%v", err, c.verify)
	}
}
