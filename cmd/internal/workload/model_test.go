package workload

import (
	"math"
	"math/rand/v2"
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
	absent := State{}
	inA := State{Present: true, Slot: slotA}
	tests := []struct {
		name string
		cur  State
		typ  domain.EventType
		slot domain.Slot
		want State
	}{
		{"enter while absent counts in", absent, domain.EventEnter, slotA, inA},
		{"enter elsewhere moves", inA, domain.EventEnter, slotB, State{Present: true, Slot: slotB}},
		{"enter another region moves", inA, domain.EventEnter, slotC, State{Present: true, Slot: slotC}},
		{"enter the same mode only refreshes", inA, domain.EventEnter, slotA, inA},
		{"leave the current mode", inA, domain.EventLeave, slotA, absent},
		{"stale leave of another mode changes nothing", inA, domain.EventLeave, slotB, inA},
		{"stale leave of another region changes nothing", inA, domain.EventLeave, slotC, inA},
		{"leave while absent changes nothing", absent, domain.EventLeave, slotA, absent},
		{"heartbeat while absent counts in", absent, domain.EventHeartbeat, slotA, inA},
		{"heartbeat of the current mode changes nothing", inA, domain.EventHeartbeat, slotA, inA},
		{"heartbeat of another mode moves", inA, domain.EventHeartbeat, slotB, State{Present: true, Slot: slotB}},
	}
	for _, tt := range tests {
		if got := Next(tt.cur, tt.typ, tt.slot); got != tt.want {
			t.Errorf("%s: got %+v want %+v", tt.name, got, tt.want)
		}
	}
}

// The loadgen's model is written independently of the service's state
// machine; on random sequences both must agree on where a player counts.
func TestNextStateAgreesWithDomainApply(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		var model State
		var svc domain.PlayerState
		for seq := uint64(1); seq <= 50; seq++ {
			typ := []domain.EventType{domain.EventEnter, domain.EventLeave, domain.EventHeartbeat}[rng.IntN(3)]
			slot := domain.Slot{Region: uint16(rng.IntN(2)), Mode: uint16(rng.IntN(3))}
			model = Next(model, typ, slot)
			svc = domain.Apply(svc, typ, slot, seq).Next
			if model.Present != svc.Present || model.Present && model.Slot != svc.Slot {
				t.Fatalf("after %v %+v: model %+v, domain %+v", typ, slot, model, svc)
			}
		}
	}
}

func TestSamplerStaysInRangeAndIsSkewed(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{1, 2, 10, 20} {
		for _, s := range []float64{0, 0.5, 1, 2} {
			z := NewSampler(n, s)
			hits := make([]int, n)
			for range 20000 {
				i := z.Sample(rng)
				if i < 0 || i >= n {
					t.Fatalf("n=%d s=%v: sampled %d", n, s, i)
				}
				hits[i]++
			}
			total := 0.0
			for i := range n {
				total += z.Share(i)
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
	if got, want := NewSampler(10, 1).Share(0), 1/2.9289682539682538; math.Abs(got-want) > 1e-9 {
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
	m := Mix{Leave: 0.25, Drop: 0.02, StaleLeave: 0.05, Travel: 0.05, Heartbeat: 0.1}
	pop := NewPopulation(cat, 500, 1, 1, m, 7, "p-", false, true)
	if !pop.hasProbe || pop.probe != (domain.Slot{Region: 2, Mode: 3}) {
		t.Fatalf("probe slot %+v (reserved %v)", pop.probe, pop.hasProbe)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	seen := map[string]int{}
	for range 50000 {
		i := rng.IntN(len(pop.players))
		if !pop.Usable(i) {
			continue
		}
		before := pop.players[i].state
		pe, ok := pop.Plan(rng, i)
		if !ok {
			seen["drop"]++
			if pop.Usable(i) {
				t.Fatal("dropped player still usable")
			}
			continue
		}
		if pe.Slot == pop.probe {
			t.Fatalf("planned the probe Slot: %+v", pe)
		}
		switch {
		case pe.Type == domain.EventHeartbeat:
			if !before.Present || before.Slot != pe.Slot {
				t.Fatalf("heartbeat %+v of a player at %+v", pe, before)
			}
			seen["heartbeat"]++
		case pe.Type == domain.EventEnter && !before.Present:
			seen["enter"]++
		case pe.Type == domain.EventEnter && before.Slot == pe.Slot:
			seen["refresh"]++
		case pe.Type == domain.EventEnter && before.Slot.Region != pe.Slot.Region:
			seen["travel"]++
		case pe.Type == domain.EventEnter:
			seen["move"]++
		case before.Present && before.Slot == pe.Slot:
			seen["leave"]++
		default:
			seen["stale_leave"]++
		}
		pop.Ack(pe, time.Now())
	}
	for _, k := range []string{"enter", "move", "travel", "leave", "stale_leave", "heartbeat", "drop"} {
		if seen[k] == 0 {
			t.Errorf("no %s in %v", k, seen)
		}
	}
	b, st := pop.Truth(time.Now(), 0, 0)
	if !b.Exact() {
		t.Error("truth not exact without uncertainty or expiry")
	}
	recount := domain.NewCounts(cat)
	var present int64
	for _, p := range pop.players {
		if p.state.Present {
			recount.Add(p.state.Slot, 1)
			present++
		}
	}
	if !b.Lo.Equal(recount) || st.Counted != present {
		t.Errorf("truth differs from a recount (counted %d, present %d)", st.Counted, present)
	}
	if b.Lo.Get(pop.probe) != 0 {
		t.Errorf("probe slot counted %d players", b.Lo.Get(pop.probe))
	}
	if st.Dropped == 0 {
		t.Error("dropped players not reported")
	}
}

func TestTruthCountsDroppedPlayersUntilTheirTTL(t *testing.T) {
	cat := testCatalog(t)
	pop := NewPopulation(cat, 3, 0, 0, Mix{Drop: 1}, 1, "p-", true, false)
	t0 := time.Unix(1000, 0)
	for i := range 3 {
		pop.Ack(Planned{Player: i, Type: domain.EventEnter, Slot: slotA}, t0)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	if _, ok := pop.Plan(rng, 0); ok { // drop ratio 1: the present player drops
		t.Fatal("expected a drop")
	}
	ttl, slack := time.Hour, 5*time.Second

	b, st := pop.Truth(t0.Add(time.Minute), 0, 0) // expiry not modelled
	if b.Lo.Get(slotA) != 3 || !b.Exact() || st.Dropped != 1 {
		t.Errorf("no ttl: lo %d exact %v dropped %d", b.Lo.Get(slotA), b.Exact(), st.Dropped)
	}
	b, _ = pop.Truth(t0.Add(time.Minute), ttl, slack)
	if b.Lo.Get(slotA) != 3 || !b.Exact() {
		t.Errorf("before ttl: lo %d hi %d", b.Lo.Get(slotA), b.Hi.Get(slotA))
	}
	b, st = pop.Truth(t0.Add(ttl+time.Second), ttl, slack)
	if b.Lo.Get(slotA) != 0 || b.Hi.Get(slotA) != 3 || st.MaybeExpired != 3 {
		t.Errorf("within slack: lo %d hi %d maybe %d", b.Lo.Get(slotA), b.Hi.Get(slotA), st.MaybeExpired)
	}
	b, st = pop.Truth(t0.Add(ttl+slack), ttl, slack)
	if b.Hi.Get(slotA) != 0 || st.Expired != 3 {
		t.Errorf("after slack: hi %d expired %d", b.Hi.Get(slotA), st.Expired)
	}
}

func TestTruthOfAnUnresolvedEventAllowsBothStates(t *testing.T) {
	cat := testCatalog(t)
	pop := NewPopulation(cat, 2, 0, 0, Mix{}, 1, "p-", false, false)
	now := time.Now()
	pop.Ack(Planned{Player: 0, Type: domain.EventEnter, Slot: slotA}, now)
	pop.Ack(Planned{Player: 1, Type: domain.EventEnter, Slot: slotA}, now)
	pop.Unresolved(Planned{Player: 0, Type: domain.EventEnter, Slot: slotB}, now) // moved or not
	pop.Unresolved(Planned{Player: 1, Type: domain.EventEnter, Slot: slotA}, now) // a refresh: same either way
	if pop.Usable(0) || pop.Usable(1) {
		t.Error("uncertain players still usable")
	}
	b, st := pop.Truth(now, 0, 0)
	if b.Lo.Get(slotA) != 1 || b.Hi.Get(slotA) != 2 || b.Lo.Get(slotB) != 0 || b.Hi.Get(slotB) != 1 || st.Uncertain != 1 {
		t.Errorf("A %d-%d B %d-%d uncertain %d", b.Lo.Get(slotA), b.Hi.Get(slotA), b.Lo.Get(slotB), b.Hi.Get(slotB), st.Uncertain)
	}
}

func TestEventJSONIsAValidContractEvent(t *testing.T) {
	cat := testCatalog(t)
	body := AppendEventJSON(nil, "run1-2a", "lgabc-42", domain.EventLeave, "EU", 3, 1_790_000_000_123)
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
	shards := NewShards(10, 3)
	seen := map[int32]bool{}
	for w, s := range shards {
		for _, i := range s.Live {
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
	s.Remove(0)
	if len(s.Live) != 3 {
		t.Errorf("remove left %v", s.Live)
	}
}

func TestParseLobbyChecksTheContract(t *testing.T) {
	got, err := ParseLobby("US", []byte(`{"region":"US","game_modes":[{"game_mode":2,"player_count":5},{"game_mode":1,"player_count":3},{"game_mode":3,"player_count":3}]}`))
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
		if _, err := ParseLobby("US", []byte(bad)); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

// With expiry-aware planning a player silent near the TTL gets no stale
// LEAVE (its outcome depends on whether the service expired them), and one
// silent past the TTL and the slack is planned as absent.
func TestExpiryAwarePlanning(t *testing.T) {
	cat := testCatalog(t)
	ttl, guard, slack := 20*time.Second, 3*time.Second, 30*time.Second
	pop := NewPopulation(cat, 1, 0, 0, Mix{StaleLeave: 1}, 1, "p-", true, false)
	pop.SetExpiryAware(ttl, guard, slack)
	rng := rand.New(rand.NewPCG(1, 1))
	pop.Ack(Planned{Player: 0, Type: domain.EventEnter, Slot: slotA}, time.Now())
	if pe, ok := pop.Plan(rng, 0); !ok || pe.Type != domain.EventLeave || pe.Slot == slotA {
		t.Fatalf("fresh player: %+v, want a stale leave", pe)
	}
	pop.Ack(Planned{Player: 0, Type: domain.EventEnter, Slot: slotA}, time.Now().Add(-ttl+time.Second))
	if pe, ok := pop.Plan(rng, 0); !ok || pe.Type != domain.EventHeartbeat || pe.Slot != slotA {
		t.Fatalf("near the TTL: %+v, want a heartbeat of the slot", pe)
	}
	pop.Ack(Planned{Player: 0, Type: domain.EventEnter, Slot: slotA}, time.Now().Add(-ttl-slack))
	if pe, ok := pop.Plan(rng, 0); !ok || pe.Type != domain.EventLeave {
		t.Fatalf("surely expired: %+v, want the absent player's stale leave", pe)
	}
	if st, certain := pop.Expect(0, time.Now(), ttl, slack); st.Present || !certain {
		t.Fatalf("surely expired: expected %+v certain %v", st, certain)
	}
}

// Keep keeps counted players where they are, makes uncertain ones certain
// with an event whose outcome does not depend on what the service holds, and
// leaves dropped and absent players alone.
func TestKeepAndResolve(t *testing.T) {
	cat := testCatalog(t)
	pop := NewPopulation(cat, 4, 0, 0, Mix{Drop: 1}, 1, "p-", true, false)
	rng := rand.New(rand.NewPCG(2, 2))
	now := time.Now()
	pop.Ack(Planned{Player: 0, Type: domain.EventEnter, Slot: slotA}, now)
	pop.Ack(Planned{Player: 1, Type: domain.EventEnter, Slot: slotA}, now)
	pop.Unresolved(Planned{Player: 1, Type: domain.EventEnter, Slot: slotB}, now)
	pop.Ack(Planned{Player: 2, Type: domain.EventEnter, Slot: slotC}, now)
	if _, ok := pop.Plan(rng, 2); ok { // drops
		t.Fatal("expected a drop")
	}
	if pe, ok := pop.Keep(rng, 0); !ok || pe.Type != domain.EventHeartbeat || pe.Slot != slotA {
		t.Fatalf("counted player: %+v", pe)
	}
	pe, ok := pop.Keep(rng, 1)
	if !ok || pe.Type != domain.EventHeartbeat || pe.Slot != slotB {
		t.Fatalf("uncertain player: %+v", pe)
	}
	if _, certain := pop.Expect(1, now, time.Hour, time.Minute); certain {
		t.Fatal("an uncertain player expected with certainty")
	}
	pop.Resolve(pe, now)
	if st, certain := pop.Expect(1, now, time.Hour, time.Minute); !certain || !st.Present || st.Slot != slotB || !pop.Usable(1) {
		t.Fatalf("resolved: %+v certain %v usable %v", st, certain, pop.Usable(1))
	}
	if _, ok := pop.Keep(rng, 2); ok {
		t.Fatal("a dropped player kept")
	}
	if _, ok := pop.Keep(rng, 3); ok {
		t.Fatal("an absent player kept")
	}
	if b, _ := pop.Truth(now, time.Hour, time.Minute); !b.Exact() {
		t.Fatal("truth not exact after resolving")
	}
}
