// Package workload is the checked workload shared by the load generator
// (cmd/loadgen) and the chaos soak (cmd/chaos): simulated players and the
// reference model of where the service must count them after their
// acknowledged events (the ground truth), the contract's event bodies, and
// the HTTP and NATS-direct senders.
package workload

import (
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/gamemodes/gamemodes/modules/domain"
)

// Sampler draws indexes 0..n-1 with Zipf-like weights 1/(i+1)^s: index 0 is
// the most popular; s = 0 is uniform.
type Sampler struct{ cum []float64 }

// NewSampler returns a Sampler over n indexes with exponent s.
func NewSampler(n int, s float64) *Sampler {
	cum := make([]float64, n)
	total := 0.0
	for i := range cum {
		total += 1 / math.Pow(float64(i+1), s)
		cum[i] = total
	}
	return &Sampler{cum: cum}
}

// Sample draws one index.
func (z *Sampler) Sample(rng *rand.Rand) int {
	u := rng.Float64() * z.cum[len(z.cum)-1]
	return sort.Search(len(z.cum)-1, func(i int) bool { return z.cum[i] > u })
}

// Share returns the probability of index i.
func (z *Sampler) Share(i int) float64 {
	prev := 0.0
	if i > 0 {
		prev = z.cum[i-1]
	}
	return (z.cum[i] - prev) / z.cum[len(z.cum)-1]
}

// State is where the service counts a player: nowhere, or in one slot.
type State struct {
	Present bool
	Slot    domain.Slot
}

// Next is the contract's semantics of one acknowledged event, written
// independently of the service's code: ENTER and HEARTBEAT count the player
// in the slot (moving them, or only refreshing when they are already there);
// LEAVE removes them only from the slot they are in, a stale LEAVE changes
// nothing.
func Next(cur State, typ domain.EventType, slot domain.Slot) State {
	switch typ {
	case domain.EventEnter, domain.EventHeartbeat:
		return State{Present: true, Slot: slot}
	case domain.EventLeave:
		if cur.Present && cur.Slot == slot {
			return State{}
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
	state State
	flags uint8
}

// Planned is the next event of one player.
type Planned struct {
	Player int
	Type   domain.EventType
	Slot   domain.Slot
}

// Mix is the probabilities of a counted player's next step; the rest moves
// to another mode of the same region.
type Mix struct {
	Leave, Drop, StaleLeave, Travel, Heartbeat float64
}

// Population is the simulated players and the loadgen's ground truth: the
// state of each player after their acknowledged events. Player i is only
// touched by the worker that owns it (i modulo the workers), so the state
// needs no lock; uncertain players' alternative states sit in a locked map.
type Population struct {
	cat      *domain.Catalog
	regions  *Sampler
	modes    *Sampler
	mix      Mix
	probe    domain.Slot
	hasProbe bool
	prefix   string
	players  []player
	// lastAck is each player's last acknowledged event in unix nanoseconds;
	// nil unless expiry is modelled (--player-ttl).
	lastAck []int64
	// With expiry-aware planning (SetExpiryAware): the service's TTL, how
	// early before it a player may already be gone, and how late after it
	// a player is surely gone.
	expTTL, expGuard, expSlack time.Duration

	mu   sync.Mutex
	alts map[int]State
}

// SetExpiryAware makes Plan account for the service's expiry of silent
// players (ttl, the service's --player-ttl; needs trackAcks): a player
// silent for ttl+slack is surely gone and planned as absent; one silent for
// more than ttl-guard may be gone or not, and is given no stale LEAVE (the
// only event whose outcome differs between the two: every other event
// leaves the player in the same state either way).
func (p *Population) SetExpiryAware(ttl, guard, slack time.Duration) {
	p.expTTL, p.expGuard, p.expSlack = ttl, guard, slack
}

// NewPopulation creates n absent players with skewed home regions. With
// reserveProbe (and at least two slots) the least popular slot is kept free
// of the workload for the freshness probe.
func NewPopulation(cat *domain.Catalog, n int, regionSkew, modeSkew float64, m Mix, seed uint64, prefix string, trackAcks, reserveProbe bool) *Population {
	p := &Population{
		cat:     cat,
		regions: NewSampler(cat.NumRegions(), regionSkew),
		modes:   NewSampler(cat.NumModes(), modeSkew),
		mix:     m,
		prefix:  prefix,
		players: make([]player, n),
		alts:    map[int]State{},
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
		p.players[i].home = uint16(p.regions.Sample(rng))
	}
	return p
}

// UserID returns the user id of player i.
func (p *Population) UserID(i int) string { return p.prefix + strconv.Itoa(i) }

// allowed reports whether the workload may use a slot (not the probe's).
func (p *Population) allowed(s domain.Slot) bool { return !p.hasProbe || s != p.probe }

// Plan returns player i's next event. It returns false when the player
// drops instead: they are marked dropped and must not be planned again.
func (p *Population) Plan(rng *rand.Rand, i int) (Planned, bool) {
	pl := &p.players[i]
	u := rng.Float64()
	maybeExpired := false
	if p.expTTL > 0 && p.lastAck != nil && pl.state.Present {
		switch age := time.Since(time.Unix(0, p.lastAck[i])); {
		case age >= p.expTTL+p.expSlack:
			pl.state = State{} // surely expired
		case age >= p.expTTL-p.expGuard:
			maybeExpired = true
		}
	}
	if !pl.state.Present {
		if u < p.mix.StaleLeave {
			if s, ok := p.pickSlot(rng, int(pl.home), domain.Slot{}, false); ok {
				return Planned{Player: i, Type: domain.EventLeave, Slot: s}, true
			}
		}
		return Planned{Player: i, Type: domain.EventEnter, Slot: p.enterSlot(rng, int(pl.home))}, true
	}
	cur := pl.state.Slot
	leave := func(s domain.Slot) (Planned, bool) {
		return Planned{Player: i, Type: domain.EventLeave, Slot: s}, true
	}
	enter := func(s domain.Slot) (Planned, bool) {
		return Planned{Player: i, Type: domain.EventEnter, Slot: s}, true
	}
	m := p.mix
	switch {
	case u < m.Drop:
		pl.flags |= flagDropped
		return Planned{}, false
	case u < m.Drop+m.Leave:
		return leave(cur)
	case u < m.Drop+m.Leave+m.StaleLeave:
		if maybeExpired {
			return Planned{Player: i, Type: domain.EventHeartbeat, Slot: cur}, true
		}
		if s, ok := p.pickSlot(rng, int(cur.Region), cur, true); ok {
			return leave(s)
		}
		return leave(cur)
	case u < m.Drop+m.Leave+m.StaleLeave+m.Travel:
		if s, ok := p.pickSlot(rng, p.otherRegion(rng, int(cur.Region)), cur, true); ok {
			return enter(s)
		}
	case u < m.Drop+m.Leave+m.StaleLeave+m.Travel+m.Heartbeat:
		return Planned{Player: i, Type: domain.EventHeartbeat, Slot: cur}, true
	}
	if s, ok := p.pickSlot(rng, int(cur.Region), cur, true); ok {
		return enter(s)
	}
	return enter(cur) // no other mode: a refresh
}

// enterSlot picks a slot for an absent player, preferring their home region.
func (p *Population) enterSlot(rng *rand.Rand, home int) domain.Slot {
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
func (p *Population) pickSlot(rng *rand.Rand, region int, avoid domain.Slot, hasAvoid bool) (domain.Slot, bool) {
	ok := func(s domain.Slot) bool { return p.allowed(s) && !(hasAvoid && s == avoid) }
	for range 16 {
		if s := (domain.Slot{Region: uint16(region), Mode: uint16(p.modes.Sample(rng))}); ok(s) {
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
func (p *Population) otherRegion(rng *rand.Rand, cur int) int {
	n := p.cat.NumRegions()
	if n == 1 {
		return cur
	}
	for range 16 {
		if r := p.regions.Sample(rng); r != cur {
			return r
		}
	}
	return (cur + 1) % n
}

// Ack applies an acknowledged event to the ground truth.
func (p *Population) Ack(e Planned, at time.Time) {
	pl := &p.players[e.Player]
	pl.state = Next(pl.state, e.Type, e.Slot)
	if p.lastAck != nil {
		p.lastAck[e.Player] = at.UnixNano()
	}
}

// Unresolved records an event that was never acknowledged: the service may
// or may not hold it, so the player counts either way and is not used again.
func (p *Population) Unresolved(e Planned, at time.Time) {
	pl := &p.players[e.Player]
	pl.flags |= flagUncertain
	p.mu.Lock()
	p.alts[e.Player] = Next(pl.state, e.Type, e.Slot)
	p.mu.Unlock()
	if p.lastAck != nil {
		p.lastAck[e.Player] = at.UnixNano()
	}
}

// Usable reports whether player i may still be planned.
func (p *Population) Usable(i int) bool { return p.players[i].flags&(flagDropped|flagUncertain) == 0 }

// Bounds are the counts the lobby may show for the loadgen's players: lo <=
// count <= hi in every slot, equal where the truth is exact.
type Bounds struct{ Lo, Hi domain.Counts }

// TruthStats describes how exact a truth is.
type TruthStats struct {
	Counted      int64 `json:"players_counted"`                 // players surely counted somewhere
	Dropped      int   `json:"players_dropped"`                 // dropped players (silent, not left) still in a slot
	Uncertain    int   `json:"players_uncertain"`               // players with an event never acknowledged
	MaybeExpired int   `json:"players_maybe_expired,omitempty"` // silent for the TTL but not the slack yet
	Expired      int   `json:"players_expired,omitempty"`       // silent for the TTL and the slack: gone
}

// NewBounds returns zero Bounds.
func NewBounds(cat *domain.Catalog) Bounds {
	return Bounds{Lo: domain.NewCounts(cat), Hi: domain.NewCounts(cat)}
}

// Exact reports whether lo equals hi everywhere.
func (b Bounds) Exact() bool { return b.Lo.Equal(b.Hi) }

// Truth computes the Bounds at time now. Without expiry modelling (ttl 0)
// every player counts where their last acknowledged event put them, dropped
// players included. With ttl, a player silent for ttl may be gone, and one
// silent for ttl+slack is gone.
func (p *Population) Truth(now time.Time, ttl, slack time.Duration) (Bounds, TruthStats) {
	b := NewBounds(p.cat)
	var st TruthStats
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range p.players {
		pl := &p.players[i]
		if pl.flags&flagDropped != 0 && pl.state.Present {
			st.Dropped++
		}
		alt, uncertain := pl.state, pl.flags&flagUncertain != 0
		if uncertain {
			alt = p.alts[i]
		}
		if !pl.state.Present && !alt.Present {
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
			for _, s := range []State{pl.state, alt} {
				if s.Present {
					b.Hi.Add(s.Slot, 1)
				}
			}
			continue
		}
		if !maybeGone {
			b.Lo.Add(pl.state.Slot, 1)
			st.Counted++
		}
		b.Hi.Add(pl.state.Slot, 1)
	}
	return b, st
}

// Shard is the players one worker owns that may still be planned.
type Shard struct{ Live []int32 }

// NewShards splits n players over w workers: player i goes to worker i mod w.
func NewShards(n, w int) []*Shard {
	out := make([]*Shard, w)
	for k := range out {
		out[k] = &Shard{Live: make([]int32, 0, n/w+1)}
	}
	for i := range n {
		out[i%w].Live = append(out[i%w].Live, int32(i))
	}
	return out
}

// Pick draws a live player: its position in the shard and its index.
func (s *Shard) Pick(rng *rand.Rand) (int, int) {
	pos := rng.IntN(len(s.Live))
	return pos, int(s.Live[pos])
}

// Remove drops the player at pos from the shard for good.
func (s *Shard) Remove(pos int) {
	last := len(s.Live) - 1
	s.Live[pos] = s.Live[last]
	s.Live = s.Live[:last]
}

// AppendEventJSON appends the contract's JSON body of one event. id, user and
// region must be JSON-safe ([A-Za-z0-9_-]), which the loadgen guarantees.
func AppendEventJSON(b []byte, id, user string, typ domain.EventType, region string, mode int, tsMillis int64) []byte {
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

// Probe returns the slot reserved for the freshness probe, false when none is.
func (p *Population) Probe() (domain.Slot, bool) { return p.probe, p.hasProbe }

// Len is the number of players.
func (p *Population) Len() int { return len(p.players) }

// Keep returns the event that keeps player i counted where the ground truth
// has them, and makes an uncertain player certain: a HEARTBEAT of their
// slot (for an uncertain one, of the slot the unacknowledged event would
// have put them in, or else of their last one, or an ENTER at home when
// they counted nowhere either way), whose outcome is the same whatever the
// service holds. False for a dropped player and one counted nowhere. Send it
// and pass it to Resolve once acknowledged.
func (p *Population) Keep(rng *rand.Rand, i int) (Planned, bool) {
	pl := &p.players[i]
	if pl.flags&flagDropped != 0 {
		return Planned{}, false
	}
	if pl.flags&flagUncertain != 0 {
		p.mu.Lock()
		alt := p.alts[i]
		p.mu.Unlock()
		switch {
		case alt.Present:
			return Planned{Player: i, Type: domain.EventHeartbeat, Slot: alt.Slot}, true
		case pl.state.Present:
			return Planned{Player: i, Type: domain.EventHeartbeat, Slot: pl.state.Slot}, true
		}
		return Planned{Player: i, Type: domain.EventEnter, Slot: p.enterSlot(rng, int(pl.home))}, true
	}
	if !pl.state.Present {
		return Planned{}, false
	}
	return Planned{Player: i, Type: domain.EventHeartbeat, Slot: pl.state.Slot}, true
}

// Resolve applies an acknowledged event from Keep: the player is certain
// (and usable) again.
func (p *Population) Resolve(e Planned, at time.Time) {
	p.Ack(e, at)
	pl := &p.players[e.Player]
	if pl.flags&flagUncertain != 0 {
		pl.flags &^= flagUncertain
		p.mu.Lock()
		delete(p.alts, e.Player)
		p.mu.Unlock()
	}
}

// LastAck is when player i's last event was acknowledged (zero when none
// was, or acknowledgements are not tracked).
func (p *Population) LastAck(i int) time.Time {
	if p.lastAck == nil || p.lastAck[i] == 0 {
		return time.Time{}
	}
	return time.Unix(0, p.lastAck[i])
}

// Expect is where the ground truth counts player i at now, given the
// service's ttl and slack (see Truth): certain is false while the player
// may be in either of two states (near their expiry, or uncertain).
func (p *Population) Expect(i int, now time.Time, ttl, slack time.Duration) (st State, certain bool) {
	pl := &p.players[i]
	if pl.flags&flagUncertain != 0 {
		return pl.state, false
	}
	if !pl.state.Present || ttl <= 0 {
		return pl.state, true
	}
	switch age := now.Sub(p.LastAck(i)); {
	case age >= ttl+slack:
		return State{}, true
	case age >= ttl:
		return pl.state, false
	}
	return pl.state, true
}

// UnionKeys returns the sorted keys of both maps (the game modes of a
// lobby list and of the truth).
func UnionKeys(a, b map[int]int64) []int {
	keys := slices.Collect(maps.Keys(a))
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}
