package main

import (
	"math"
	"math/rand/v2"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/gamemodes/gamemodes/modules/domain"
)

// sampler draws indexes 0..n-1 with Zipf-like weights 1/(i+1)^s: index 0 is
// the most popular; s = 0 is uniform.
type sampler struct{ cum []float64 }

// newSampler returns a sampler over n indexes with exponent s.
func newSampler(n int, s float64) *sampler {
	cum := make([]float64, n)
	total := 0.0
	for i := range cum {
		total += 1 / math.Pow(float64(i+1), s)
		cum[i] = total
	}
	return &sampler{cum: cum}
}

// sample draws one index.
func (z *sampler) sample(rng *rand.Rand) int {
	u := rng.Float64() * z.cum[len(z.cum)-1]
	return sort.Search(len(z.cum)-1, func(i int) bool { return z.cum[i] > u })
}

// share returns the probability of index i.
func (z *sampler) share(i int) float64 {
	prev := 0.0
	if i > 0 {
		prev = z.cum[i-1]
	}
	return (z.cum[i] - prev) / z.cum[len(z.cum)-1]
}

// slotState is where the service counts a player: nowhere, or in one slot.
type slotState struct {
	present bool
	slot    domain.Slot
}

// nextState is the contract's semantics of one acknowledged event, written
// independently of the service's code: ENTER and HEARTBEAT count the player
// in the slot (moving them, or only refreshing when they are already there);
// LEAVE removes them only from the slot they are in, a stale LEAVE changes
// nothing.
func nextState(cur slotState, typ domain.EventType, slot domain.Slot) slotState {
	switch typ {
	case domain.EventEnter, domain.EventHeartbeat:
		return slotState{present: true, slot: slot}
	case domain.EventLeave:
		if cur.present && cur.slot == slot {
			return slotState{}
		}
	}
	return cur
}

// Player flags.
const (
	flagDropped   uint8 = 1 << iota // went silent without LEAVE: no more events this run
	flagUncertain                   // an event was never acknowledged: stored or not, unknown
)

// player is one simulated player: home region, where the ground truth
// counts them, and flags.
type player struct {
	home  uint16
	state slotState
	flags uint8
}

// plannedEvent is the next event of one player.
type plannedEvent struct {
	player int
	typ    domain.EventType
	slot   domain.Slot
}

// mix is the probabilities of a counted player's next step; the rest moves
// to another mode of the same region.
type mix struct {
	leave, drop, staleLeave, travel, heartbeat float64
}

// population is the simulated players and the loadgen's ground truth: the
// state of each player after their acknowledged events. Player i is only
// touched by the worker that owns it (i modulo the workers), so the state
// needs no lock; uncertain players' alternative states sit in a locked map.
type population struct {
	cat      *domain.Catalog
	regions  *sampler
	modes    *sampler
	mix      mix
	probe    domain.Slot
	hasProbe bool
	prefix   string
	players  []player
	// lastAck is each player's last acknowledged event in unix nanoseconds;
	// nil unless expiry is modelled (--player-ttl).
	lastAck []int64

	mu   sync.Mutex
	alts map[int]slotState
}

// newPopulation creates n absent players with skewed home regions. With
// reserveProbe (and at least two slots) the least popular slot is kept free
// of the workload for the freshness probe.
func newPopulation(cat *domain.Catalog, n int, regionSkew, modeSkew float64, m mix, seed uint64, prefix string, trackAcks, reserveProbe bool) *population {
	p := &population{
		cat:     cat,
		regions: newSampler(cat.NumRegions(), regionSkew),
		modes:   newSampler(cat.NumModes(), modeSkew),
		mix:     m,
		prefix:  prefix,
		players: make([]player, n),
		alts:    map[int]slotState{},
	}
	if reserveProbe && cat.NumRegions()*cat.NumModes() >= 2 {
		p.hasProbe = true
		p.probe = domain.Slot{Region: uint16(cat.NumRegions() - 1), Mode: uint16(cat.NumModes() - 1)}
	}
	if trackAcks {
		p.lastAck = make([]int64, n)
	}
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	for i := range p.players {
		p.players[i].home = uint16(p.regions.sample(rng))
	}
	return p
}

// userID returns the user id of player i.
func (p *population) userID(i int) string { return p.prefix + strconv.Itoa(i) }

// allowed reports whether the workload may use a slot (not the probe's).
func (p *population) allowed(s domain.Slot) bool { return !p.hasProbe || s != p.probe }

// plan returns player i's next event. It returns false when the player
// drops instead: they are marked dropped and must not be planned again.
func (p *population) plan(rng *rand.Rand, i int) (plannedEvent, bool) {
	pl := &p.players[i]
	u := rng.Float64()
	if !pl.state.present {
		if u < p.mix.staleLeave {
			if s, ok := p.pickSlot(rng, int(pl.home), domain.Slot{}, false); ok {
				return plannedEvent{player: i, typ: domain.EventLeave, slot: s}, true
			}
		}
		return plannedEvent{player: i, typ: domain.EventEnter, slot: p.enterSlot(rng, int(pl.home))}, true
	}
	cur := pl.state.slot
	leave := func(s domain.Slot) (plannedEvent, bool) {
		return plannedEvent{player: i, typ: domain.EventLeave, slot: s}, true
	}
	enter := func(s domain.Slot) (plannedEvent, bool) {
		return plannedEvent{player: i, typ: domain.EventEnter, slot: s}, true
	}
	m := p.mix
	switch {
	case u < m.drop:
		pl.flags |= flagDropped
		return plannedEvent{}, false
	case u < m.drop+m.leave:
		return leave(cur)
	case u < m.drop+m.leave+m.staleLeave:
		if s, ok := p.pickSlot(rng, int(cur.Region), cur, true); ok {
			return leave(s)
		}
		return leave(cur)
	case u < m.drop+m.leave+m.staleLeave+m.travel:
		if s, ok := p.pickSlot(rng, p.otherRegion(rng, int(cur.Region)), cur, true); ok {
			return enter(s)
		}
	case u < m.drop+m.leave+m.staleLeave+m.travel+m.heartbeat:
		return plannedEvent{player: i, typ: domain.EventHeartbeat, slot: cur}, true
	}
	if s, ok := p.pickSlot(rng, int(cur.Region), cur, true); ok {
		return enter(s)
	}
	return enter(cur) // no other mode: a refresh
}

// enterSlot picks a slot for an absent player, preferring their home region.
func (p *population) enterSlot(rng *rand.Rand, home int) domain.Slot {
	if s, ok := p.pickSlot(rng, home, domain.Slot{}, false); ok {
		return s
	}
	for r := range p.cat.NumRegions() {
		if s, ok := p.pickSlot(rng, r, domain.Slot{}, false); ok {
			return s
		}
	}
	return domain.Slot{} // unreachable: the probe is only reserved with two slots or more
}

// pickSlot draws a popular mode of region that the workload may use and
// that is not avoid (when hasAvoid); false if there is none.
func (p *population) pickSlot(rng *rand.Rand, region int, avoid domain.Slot, hasAvoid bool) (domain.Slot, bool) {
	ok := func(s domain.Slot) bool { return p.allowed(s) && !(hasAvoid && s == avoid) }
	for range 16 {
		if s := (domain.Slot{Region: uint16(region), Mode: uint16(p.modes.sample(rng))}); ok(s) {
			return s, true
		}
	}
	for m := range p.cat.NumModes() {
		if s := (domain.Slot{Region: uint16(region), Mode: uint16(m)}); ok(s) {
			return s, true
		}
	}
	return domain.Slot{}, false
}

// otherRegion draws a region other than cur (cur when there is only one).
func (p *population) otherRegion(rng *rand.Rand, cur int) int {
	n := p.cat.NumRegions()
	if n == 1 {
		return cur
	}
	for range 16 {
		if r := p.regions.sample(rng); r != cur {
			return r
		}
	}
	return (cur + 1) % n
}

// ack applies an acknowledged event to the ground truth.
func (p *population) ack(e plannedEvent, at time.Time) {
	pl := &p.players[e.player]
	pl.state = nextState(pl.state, e.typ, e.slot)
	if p.lastAck != nil {
		p.lastAck[e.player] = at.UnixNano()
	}
}

// unresolved records an event that was never acknowledged: the service may
// or may not hold it, so the player counts either way and is not used again.
func (p *population) unresolved(e plannedEvent, at time.Time) {
	pl := &p.players[e.player]
	pl.flags |= flagUncertain
	p.mu.Lock()
	p.alts[e.player] = nextState(pl.state, e.typ, e.slot)
	p.mu.Unlock()
	if p.lastAck != nil {
		p.lastAck[e.player] = at.UnixNano()
	}
}

// usable reports whether player i may still be planned.
func (p *population) usable(i int) bool { return p.players[i].flags&(flagDropped|flagUncertain) == 0 }

// bounds are the counts the lobby may show for the loadgen's players: lo <=
// count <= hi in every slot, equal where the truth is exact.
type bounds struct{ lo, hi domain.Counts }

// truthStats describes how exact a truth is.
type truthStats struct {
	Counted      int64 `json:"players_counted"`                 // players surely counted somewhere
	Dropped      int   `json:"players_dropped"`                 // dropped players (silent, not left) still in a slot
	Uncertain    int   `json:"players_uncertain"`               // players with an event never acknowledged
	MaybeExpired int   `json:"players_maybe_expired,omitempty"` // silent for the TTL but not the slack yet
	Expired      int   `json:"players_expired,omitempty"`       // silent for the TTL and the slack: gone
}

// newBounds returns zero bounds.
func newBounds(cat *domain.Catalog) bounds {
	return bounds{lo: domain.NewCounts(cat), hi: domain.NewCounts(cat)}
}

// exact reports whether lo equals hi everywhere.
func (b bounds) exact() bool { return b.lo.Equal(b.hi) }

// truth computes the bounds at time now. Without expiry modelling (ttl 0)
// every player counts where their last acknowledged event put them, dropped
// players included. With ttl, a player silent for ttl may be gone, and one
// silent for ttl+slack is gone.
func (p *population) truth(now time.Time, ttl, slack time.Duration) (bounds, truthStats) {
	b := newBounds(p.cat)
	var st truthStats
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range p.players {
		pl := &p.players[i]
		if pl.flags&flagDropped != 0 && pl.state.present {
			st.Dropped++
		}
		alt, uncertain := pl.state, pl.flags&flagUncertain != 0
		if uncertain {
			alt = p.alts[i]
		}
		if !pl.state.present && !alt.present {
			continue
		}
		maybeGone := false
		if ttl > 0 {
			age := now.Sub(time.Unix(0, p.lastAck[i]))
			if age >= ttl+slack {
				st.Expired++
				continue
			}
			if age >= ttl {
				st.MaybeExpired++
				maybeGone = true
			}
		}
		if uncertain && alt != pl.state {
			st.Uncertain++
			for _, s := range []slotState{pl.state, alt} {
				if s.present {
					b.hi.Add(s.slot, 1)
				}
			}
			continue
		}
		if !maybeGone {
			b.lo.Add(pl.state.slot, 1)
			st.Counted++
		}
		b.hi.Add(pl.state.slot, 1)
	}
	return b, st
}

// shard is the players one worker owns that may still be planned.
type shard struct{ live []int32 }

// newShards splits n players over w workers: player i goes to worker i mod w.
func newShards(n, w int) []*shard {
	out := make([]*shard, w)
	for k := range out {
		out[k] = &shard{live: make([]int32, 0, n/w+1)}
	}
	for i := range n {
		out[i%w].live = append(out[i%w].live, int32(i))
	}
	return out
}

// pick draws a live player: its position in the shard and its index.
func (s *shard) pick(rng *rand.Rand) (int, int) {
	pos := rng.IntN(len(s.live))
	return pos, int(s.live[pos])
}

// remove drops the player at pos from the shard for good.
func (s *shard) remove(pos int) {
	last := len(s.live) - 1
	s.live[pos] = s.live[last]
	s.live = s.live[:last]
}

// appendEventJSON appends the contract's JSON body of one event. id, user and
// region must be JSON-safe ([A-Za-z0-9_-]), which the loadgen guarantees.
func appendEventJSON(b []byte, id, user string, typ domain.EventType, region string, mode int, tsMillis int64) []byte {
	b = append(b, `{"event_id":"`...)
	b = append(b, id...)
	b = append(b, `","user_id":"`...)
	b = append(b, user...)
	b = append(b, `","event_type":"`...)
	b = append(b, typ.String()...)
	b = append(b, `","event_payload":{"game_mode":`...)
	b = strconv.AppendInt(b, int64(mode), 10)
	b = append(b, `,"region":"`...)
	b = append(b, region...)
	b = append(b, `"},"timestamp":`...)
	b = strconv.AppendInt(b, tsMillis, 10)
	return append(b, '}')
}
