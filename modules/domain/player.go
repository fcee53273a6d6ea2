package domain

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Slot is a (region, game mode) pair by dense catalog indexes.
type Slot struct {
	Region uint16
	Mode   uint16
}

// PlayerState is what a partition owner knows of one player: where the
// player is counted, if anywhere, and the stream sequence of the last event
// applied to them (the idempotence guard).
type PlayerState struct {
	Present bool
	Slot    Slot
	LastSeq uint64
}

// Outcome names what an event or an expiry did to a player.
type Outcome uint8

// Outcomes of Apply and Expire.
const (
	OutcomeDuplicate        Outcome = iota // the event was applied before (sequence at or below LastSeq): nothing changes
	OutcomeEntered                         // counted into a slot
	OutcomeMoved                           // moved from one slot to another
	OutcomeRefreshed                       // entered the slot they are in: TTL refreshed only
	OutcomeLeft                            // left their slot
	OutcomeStaleLeave                      // left a slot they are not in: nothing changes but the TTL
	OutcomeExpired                         // expired out of their slot
	OutcomeNothing                         // expiry of a player who was not counted
	OutcomeHeartbeat                       // a heartbeat of the slot the player is in: TTL refreshed only
	OutcomeHeartbeatEntered                // a heartbeat of a player not counted (never seen, left or expired): counted in
	OutcomeHeartbeatMoved                  // a heartbeat of another slot than the player's: moved there

	// NumOutcomes is the number of outcomes: they are Outcome(0) to NumOutcomes-1.
	NumOutcomes = iota
)

var outcomeNames = [NumOutcomes]string{"duplicate", "entered", "moved", "refreshed", "left", "stale_leave", "expired", "nothing",
	"heartbeat", "heartbeat_entered", "heartbeat_moved"}

// String returns a metric-friendly name.
func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "unknown"
}

// Transition is the pure result of applying an event to a player: the new
// state and the count changes (at most one -1 and one +1).
type Transition struct {
	Next      PlayerState
	Outcome   Outcome
	Removed   Slot
	HasRemove bool
	Added     Slot
	HasAdd    bool
}

// Apply computes the effect of event typ for slot at stream sequence seq on a
// player. It never mutates anything: callers apply the count changes.
func Apply(cur PlayerState, typ EventType, slot Slot, seq uint64) Transition {
	if seq <= cur.LastSeq {
		return Transition{Next: cur, Outcome: OutcomeDuplicate}
	}
	next := PlayerState{LastSeq: seq}
	switch typ {
	case EventEnter, EventHeartbeat:
		// A heartbeat states where the player is, like an ENTER: only its
		// outcomes are its own, so that metrics tell them apart.
		next.Present, next.Slot = true, slot
		entered, refreshed, moved := OutcomeEntered, OutcomeRefreshed, OutcomeMoved
		if typ == EventHeartbeat {
			entered, refreshed, moved = OutcomeHeartbeatEntered, OutcomeHeartbeat, OutcomeHeartbeatMoved
		}
		switch {
		case !cur.Present:
			return Transition{Next: next, Outcome: entered, Added: slot, HasAdd: true}
		case cur.Slot == slot:
			return Transition{Next: next, Outcome: refreshed}
		default:
			return Transition{Next: next, Outcome: moved, Removed: cur.Slot, HasRemove: true, Added: slot, HasAdd: true}
		}
	case EventLeave:
		if cur.Present && cur.Slot == slot {
			return Transition{Next: next, Outcome: OutcomeLeft, Removed: slot, HasRemove: true}
		}
		next.Present, next.Slot = cur.Present, cur.Slot
		return Transition{Next: next, Outcome: OutcomeStaleLeave}
	}
	return Transition{Next: cur, Outcome: OutcomeDuplicate}
}

// Expire computes the effect of the player's state timing out.
func Expire(cur PlayerState) Transition {
	next := PlayerState{LastSeq: cur.LastSeq}
	if !cur.Present {
		return Transition{Next: next, Outcome: OutcomeNothing}
	}
	return Transition{Next: next, Outcome: OutcomeExpired, Removed: cur.Slot, HasRemove: true}
}

// Counts holds player counts per slot.
type Counts struct {
	modes int
	v     []int64
}

// NewCounts returns zero counts for a catalog's slots.
func NewCounts(c *Catalog) Counts {
	return Counts{modes: c.NumModes(), v: make([]int64, c.NumRegions()*c.NumModes())}
}

// Apply adds a transition's count changes.
func (c Counts) Apply(t Transition) {
	if t.HasRemove {
		c.v[int(t.Removed.Region)*c.modes+int(t.Removed.Mode)]--
	}
	if t.HasAdd {
		c.v[int(t.Added.Region)*c.modes+int(t.Added.Mode)]++
	}
}

// Add adds n players to a slot.
func (c Counts) Add(s Slot, n int64) { c.v[int(s.Region)*c.modes+int(s.Mode)] += n }

// Get returns the count of a slot.
func (c Counts) Get(s Slot) int64 { return c.v[int(s.Region)*c.modes+int(s.Mode)] }

// Region returns the counts of one region indexed by mode index. The slice
// aliases the counts.
func (c Counts) Region(r int) []int64 { return c.v[r*c.modes : (r+1)*c.modes] }

// Equal reports whether two counts hold the same values.
func (c Counts) Equal(o Counts) bool {
	if len(c.v) != len(o.v) {
		return false
	}
	for i := range c.v {
		if c.v[i] != o.v[i] {
			return false
		}
	}
	return true
}

// Clone returns an independent copy.
func (c Counts) Clone() Counts {
	return Counts{modes: c.modes, v: append([]int64(nil), c.v...)}
}

// SlotOf returns the slot of a configured region and mode.
func (c *Catalog) SlotOf(region string, mode int) (Slot, bool) {
	r, ok1 := c.regionIndex[region]
	m, ok2 := c.modeIndex[mode]
	return Slot{Region: uint16(r), Mode: uint16(m)}, ok1 && ok2
}

// ErrUnknownSlot marks a stored player whose region or mode is no longer configured.
var ErrUnknownSlot = errors.New("region or game mode not configured")

// EncodePlayer returns the stored form of a player state: "P <region> <mode>
// <seq>" for a counted player, "L <seq>" for one who is not (after a leave).
func (c *Catalog) EncodePlayer(st PlayerState) []byte {
	b := make([]byte, 0, 32)
	if st.Present {
		b = append(b, "P "...)
		b = append(b, c.regions[st.Slot.Region]...)
		b = append(b, ' ')
		b = strconv.AppendInt(b, int64(c.modes[st.Slot.Mode]), 10)
		b = append(b, ' ')
	} else {
		b = append(b, "L "...)
	}
	return strconv.AppendUint(b, st.LastSeq, 10)
}

// DecodePlayer parses a stored player state. A state whose region or mode is
// not configured is returned as not present with its LastSeq, together with
// ErrUnknownSlot.
func (c *Catalog) DecodePlayer(v []byte) (PlayerState, error) {
	f := strings.Fields(string(v))
	switch {
	case len(f) == 2 && f[0] == "L":
		seq, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return PlayerState{}, fmt.Errorf("player value %q: %w", v, err)
		}
		return PlayerState{LastSeq: seq}, nil
	case len(f) == 4 && f[0] == "P":
		seq, err := strconv.ParseUint(f[3], 10, 64)
		if err != nil {
			return PlayerState{}, fmt.Errorf("player value %q: %w", v, err)
		}
		mode, err := strconv.Atoi(f[2])
		if err != nil {
			return PlayerState{}, fmt.Errorf("player value %q: %w", v, err)
		}
		slot, ok := c.SlotOf(f[1], mode)
		if !ok {
			return PlayerState{LastSeq: seq}, fmt.Errorf("player value %q: %w", v, ErrUnknownSlot)
		}
		return PlayerState{Present: true, Slot: slot, LastSeq: seq}, nil
	}
	return PlayerState{}, fmt.Errorf("player value %q: not a player state", v)
}

// PastEvent is an archived event of one player, as a rebuild reads it.
type PastEvent struct {
	Type EventType
	Slot Slot
	// Time is when the service received the event (its stream time): the
	// player's TTL runs from there.
	Time time.Time
}

// StateAt replays one player's events, oldest first, with expiry: a gap
// longer than ttl between two events expires the player before the later
// one, and the player is expired at `at` if their last event is older than
// ttl. It returns where the player is counted at `at` and their last event
// time; present is false for a player who left or expired. Events after
// `at` are ignored.
func StateAt(events []PastEvent, at time.Time, ttl time.Duration) (slot Slot, last time.Time, present bool) {
	var st PlayerState
	for i, e := range events {
		if e.Time.After(at) {
			break
		}
		if i > 0 && e.Time.Sub(last) > ttl {
			st = Expire(st).Next
		}
		st = Apply(st, e.Type, e.Slot, uint64(i)+1).Next
		last = e.Time
	}
	if last.IsZero() || at.Sub(last) > ttl {
		return Slot{}, last, false
	}
	return st.Slot, last, st.Present
}
