package domain

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestApplyTransitions(t *testing.T) {
	s1 := Slot{Region: 0, Mode: 0}
	s2 := Slot{Region: 0, Mode: 1} // same region, other mode
	s3 := Slot{Region: 1, Mode: 0} // other region, same mode
	absent := PlayerState{}
	at := func(s Slot, seq uint64) PlayerState { return PlayerState{Present: true, Slot: s, LastSeq: seq} }
	gone := func(seq uint64) PlayerState { return PlayerState{LastSeq: seq} }
	tests := []struct {
		name      string
		cur       PlayerState
		typ       EventType
		slot      Slot
		seq       uint64
		want      Transition
		wantDelta map[Slot]int64
	}{
		{"enter new player", absent, EventEnter, s1, 1,
			Transition{Next: at(s1, 1), Outcome: OutcomeEntered, Added: s1, HasAdd: true}, map[Slot]int64{s1: 1}},
		{"enter after leave", gone(4), EventEnter, s2, 9,
			Transition{Next: at(s2, 9), Outcome: OutcomeEntered, Added: s2, HasAdd: true}, map[Slot]int64{s2: 1}},
		{"move to other mode", at(s1, 3), EventEnter, s2, 4,
			Transition{Next: at(s2, 4), Outcome: OutcomeMoved, Removed: s1, HasRemove: true, Added: s2, HasAdd: true}, map[Slot]int64{s1: -1, s2: 1}},
		{"move to other region", at(s1, 3), EventEnter, s3, 10,
			Transition{Next: at(s3, 10), Outcome: OutcomeMoved, Removed: s1, HasRemove: true, Added: s3, HasAdd: true}, map[Slot]int64{s1: -1, s3: 1}},
		{"same mode refresh", at(s1, 3), EventEnter, s1, 4,
			Transition{Next: at(s1, 4), Outcome: OutcomeRefreshed}, nil},
		{"leave matching", at(s2, 3), EventLeave, s2, 5,
			Transition{Next: gone(5), Outcome: OutcomeLeft, Removed: s2, HasRemove: true}, map[Slot]int64{s2: -1}},
		{"stale leave other mode", at(s1, 3), EventLeave, s2, 5,
			Transition{Next: at(s1, 5), Outcome: OutcomeStaleLeave}, nil},
		{"stale leave other region", at(s1, 3), EventLeave, s3, 5,
			Transition{Next: at(s1, 5), Outcome: OutcomeStaleLeave}, nil},
		{"leave when absent", absent, EventLeave, s1, 1,
			Transition{Next: gone(1), Outcome: OutcomeStaleLeave}, nil},
		{"leave after leave", gone(7), EventLeave, s1, 8,
			Transition{Next: gone(8), Outcome: OutcomeStaleLeave}, nil},
		{"duplicate seq enter", at(s1, 5), EventEnter, s2, 5,
			Transition{Next: at(s1, 5), Outcome: OutcomeDuplicate}, nil},
		{"lower seq enter", at(s1, 5), EventEnter, s2, 2,
			Transition{Next: at(s1, 5), Outcome: OutcomeDuplicate}, nil},
		{"duplicate seq leave", at(s1, 5), EventLeave, s1, 5,
			Transition{Next: at(s1, 5), Outcome: OutcomeDuplicate}, nil},
		{"lower seq leave", at(s1, 5), EventLeave, s1, 1,
			Transition{Next: at(s1, 5), Outcome: OutcomeDuplicate}, nil},
		{"duplicate on absent", gone(5), EventEnter, s1, 5,
			Transition{Next: gone(5), Outcome: OutcomeDuplicate}, nil},
		{"seq zero never applies", absent, EventEnter, s1, 0,
			Transition{Next: absent, Outcome: OutcomeDuplicate}, nil},
		{"heartbeat of the player's slot", at(s1, 3), EventHeartbeat, s1, 4,
			Transition{Next: at(s1, 4), Outcome: OutcomeHeartbeat}, nil},
		{"heartbeat of an unknown player", absent, EventHeartbeat, s1, 1,
			Transition{Next: at(s1, 1), Outcome: OutcomeHeartbeatEntered, Added: s1, HasAdd: true}, map[Slot]int64{s1: 1}},
		{"heartbeat after leave", gone(4), EventHeartbeat, s2, 9,
			Transition{Next: at(s2, 9), Outcome: OutcomeHeartbeatEntered, Added: s2, HasAdd: true}, map[Slot]int64{s2: 1}},
		{"heartbeat of another mode moves", at(s1, 3), EventHeartbeat, s2, 4,
			Transition{Next: at(s2, 4), Outcome: OutcomeHeartbeatMoved, Removed: s1, HasRemove: true, Added: s2, HasAdd: true}, map[Slot]int64{s1: -1, s2: 1}},
		{"heartbeat of another region moves", at(s1, 3), EventHeartbeat, s3, 10,
			Transition{Next: at(s3, 10), Outcome: OutcomeHeartbeatMoved, Removed: s1, HasRemove: true, Added: s3, HasAdd: true}, map[Slot]int64{s1: -1, s3: 1}},
		{"duplicate seq heartbeat", at(s1, 5), EventHeartbeat, s2, 5,
			Transition{Next: at(s1, 5), Outcome: OutcomeDuplicate}, nil},
		{"lower seq heartbeat", gone(5), EventHeartbeat, s1, 3,
			Transition{Next: gone(5), Outcome: OutcomeDuplicate}, nil},
		{"max seq", at(s1, math.MaxUint64-1), EventEnter, s2, math.MaxUint64,
			Transition{Next: at(s2, math.MaxUint64), Outcome: OutcomeMoved, Removed: s1, HasRemove: true, Added: s2, HasAdd: true}, map[Slot]int64{s1: -1, s2: 1}},
	}
	c := MustCatalog([]string{"US", "EU"}, []int{1, 2})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Apply(tt.cur, tt.typ, tt.slot, tt.seq)
			if got != tt.want {
				t.Fatalf("Apply(%+v, %v, %v, %d)\n got %+v\nwant %+v", tt.cur, tt.typ, tt.slot, tt.seq, got, tt.want)
			}
			checkDelta(t, c, got, tt.wantDelta)
		})
	}
}

// checkDelta applies a transition to zero counts and compares the result.
func checkDelta(t *testing.T, c *Catalog, tr Transition, want map[Slot]int64) {
	t.Helper()
	counts := NewCounts(c)
	counts.Apply(tr)
	for r := 0; r < c.NumRegions(); r++ {
		for m := 0; m < c.NumModes(); m++ {
			s := Slot{Region: uint16(r), Mode: uint16(m)}
			if got := counts.Get(s); got != want[s] {
				t.Errorf("count delta of %v = %d, want %d", s, got, want[s])
			}
		}
	}
}

func TestExpireTransitions(t *testing.T) {
	c := MustCatalog([]string{"US", "EU"}, []int{1, 2})
	s := Slot{Region: 1, Mode: 1}
	got := Expire(PlayerState{Present: true, Slot: s, LastSeq: 7})
	want := Transition{Next: PlayerState{LastSeq: 7}, Outcome: OutcomeExpired, Removed: s, HasRemove: true}
	if got != want {
		t.Errorf("Expire(present) = %+v, want %+v", got, want)
	}
	checkDelta(t, c, got, map[Slot]int64{s: -1})
	for _, cur := range []PlayerState{{}, {LastSeq: 9}} {
		got = Expire(cur)
		want = Transition{Next: cur, Outcome: OutcomeNothing}
		if got != want {
			t.Errorf("Expire(%+v) = %+v, want %+v", cur, got, want)
		}
		checkDelta(t, c, got, nil)
	}
	// Expiring twice removes once.
	once := Expire(PlayerState{Present: true, Slot: s, LastSeq: 7})
	if twice := Expire(once.Next); twice.Outcome != OutcomeNothing || twice.HasRemove {
		t.Errorf("second expiry = %+v", twice)
	}
	// An event redelivered after expiry is still a duplicate.
	if tr := Apply(once.Next, EventEnter, s, 7); tr.Outcome != OutcomeDuplicate || tr.HasAdd {
		t.Errorf("redelivery after expiry = %+v", tr)
	}
}

// A heartbeat changes state and counts exactly as an ENTER of the same slot
// would; only the outcome differs.
func TestHeartbeatIsEnterWithItsOwnOutcomes(t *testing.T) {
	slots := []Slot{{0, 0}, {0, 1}, {1, 0}}
	heartbeatOf := map[Outcome]Outcome{
		OutcomeEntered: OutcomeHeartbeatEntered, OutcomeRefreshed: OutcomeHeartbeat,
		OutcomeMoved: OutcomeHeartbeatMoved, OutcomeDuplicate: OutcomeDuplicate,
	}
	var states []PlayerState
	for _, seq := range []uint64{0, 5} {
		states = append(states, PlayerState{LastSeq: seq})
		for _, s := range slots {
			states = append(states, PlayerState{Present: true, Slot: s, LastSeq: seq})
		}
	}
	for _, cur := range states {
		for _, s := range slots {
			for _, seq := range []uint64{0, 5, 6} {
				enter, beat := Apply(cur, EventEnter, s, seq), Apply(cur, EventHeartbeat, s, seq)
				want := enter
				want.Outcome = heartbeatOf[enter.Outcome]
				if beat != want {
					t.Errorf("heartbeat %v seq %d on %+v = %+v, want %+v", s, seq, cur, beat, want)
				}
			}
		}
	}
}

func TestApplyUnknownEventTypeChangesNoCounts(t *testing.T) {
	cur := PlayerState{Present: true, Slot: Slot{1, 1}, LastSeq: 3}
	for _, typ := range []EventType{0, 4, 255} {
		tr := Apply(cur, typ, Slot{0, 0}, 10)
		if tr.HasAdd || tr.HasRemove || tr.Next.Present != cur.Present || tr.Next.Slot != cur.Slot {
			t.Errorf("Apply with event type %d = %+v", typ, tr)
		}
	}
}

func TestOutcomeString(t *testing.T) {
	want := map[Outcome]string{
		OutcomeDuplicate: "duplicate", OutcomeEntered: "entered", OutcomeMoved: "moved",
		OutcomeRefreshed: "refreshed", OutcomeLeft: "left", OutcomeStaleLeave: "stale_leave",
		OutcomeExpired: "expired", OutcomeNothing: "nothing", OutcomeHeartbeat: "heartbeat",
		OutcomeHeartbeatEntered: "heartbeat_entered", OutcomeHeartbeatMoved: "heartbeat_moved",
		Outcome(NumOutcomes): "unknown", Outcome(200): "unknown",
	}
	for o, s := range want {
		if o.String() != s {
			t.Errorf("Outcome(%d).String() = %q, want %q", o, o.String(), s)
		}
	}
}

func TestCounts(t *testing.T) {
	c := MustCatalog([]string{"US", "EU", "JP"}, []int{1, 2})
	a := NewCounts(c)
	a.Add(Slot{2, 1}, 5)
	a.Add(Slot{0, 0}, 2)
	a.Add(Slot{2, 1}, -1)
	if a.Get(Slot{2, 1}) != 4 || a.Get(Slot{0, 0}) != 2 || a.Get(Slot{1, 0}) != 0 {
		t.Fatalf("Get after Add: %v", a.v)
	}
	if r := a.Region(2); len(r) != 2 || r[0] != 0 || r[1] != 4 {
		t.Fatalf("Region(2) = %v", r)
	}
	a.Region(1)[1] = 9 // Region aliases the counts
	if a.Get(Slot{1, 1}) != 9 {
		t.Fatal("Region does not alias the counts")
	}
	b := a.Clone()
	if !a.Equal(b) || !b.Equal(a) {
		t.Fatal("clone differs")
	}
	b.Add(Slot{0, 1}, 1)
	if a.Equal(b) || a.Get(Slot{0, 1}) != 0 {
		t.Fatal("clone aliases the original")
	}
	other := NewCounts(MustCatalog([]string{"US"}, []int{1, 2}))
	if other.Equal(NewCounts(c)) {
		t.Fatal("counts of different sizes equal")
	}
}

// refModel is the reference: where each user is, and the last sequence
// applied to them. Counts are recomputed from scratch from it.
type refModel struct {
	where   map[int]Slot // present users only
	lastSeq map[int]uint64
}

func (m *refModel) counts(c *Catalog) map[Slot]int64 {
	out := map[Slot]int64{}
	for _, s := range m.where {
		out[s]++
	}
	return out
}

// apply returns the outcome the reference expects.
func (m *refModel) apply(user int, typ EventType, s Slot, seq uint64) Outcome {
	if seq <= m.lastSeq[user] {
		return OutcomeDuplicate
	}
	m.lastSeq[user] = seq
	cur, present := m.where[user]
	switch typ {
	case EventEnter:
		m.where[user] = s
		switch {
		case !present:
			return OutcomeEntered
		case cur == s:
			return OutcomeRefreshed
		default:
			return OutcomeMoved
		}
	case EventHeartbeat: // the player is in s now, whatever was known
		m.where[user] = s
		switch {
		case !present:
			return OutcomeHeartbeatEntered
		case cur == s:
			return OutcomeHeartbeat
		default:
			return OutcomeHeartbeatMoved
		}
	}
	if present && cur == s {
		delete(m.where, user)
		return OutcomeLeft
	}
	return OutcomeStaleLeave
}

func (m *refModel) expire(user int) Outcome {
	if _, present := m.where[user]; present {
		delete(m.where, user)
		return OutcomeExpired
	}
	return OutcomeNothing
}

type appliedEvent struct {
	user int
	typ  EventType
	slot Slot
	seq  uint64
}

func TestPlayerStateMachineProperty(t *testing.T) {
	c := MustCatalog([]string{"US", "EU", "JP"}, []int{1, 2, 7})
	for run := uint64(0); run < 40; run++ {
		t.Run(fmt.Sprint("seed", run), func(t *testing.T) {
			runStateMachineProperty(t, c, rand.New(rand.NewPCG(run, 0x5eed)), 2+int(run%7), 1500)
		})
	}
}

func runStateMachineProperty(t *testing.T, c *Catalog, r *rand.Rand, users, steps int) {
	states := make([]PlayerState, users)
	counts := NewCounts(c)
	ref := &refModel{where: map[int]Slot{}, lastSeq: map[int]uint64{}}
	var log []appliedEvent // every event delivered, in delivery order
	var seq uint64         // the stream's sequence
	randSlot := func() Slot {
		return Slot{Region: uint16(r.IntN(c.NumRegions())), Mode: uint16(r.IntN(c.NumModes()))}
	}
	for step := 0; step < steps; step++ {
		u := r.IntN(users)
		var desc string
		var tr Transition
		var want Outcome
		k := r.IntN(100)
		switch {
		case k < 10 && len(log) > 0: // redelivery of an earlier event (same seq)
			e := log[r.IntN(len(log))]
			u = e.user
			desc = fmt.Sprintf("redeliver %+v", e)
			tr = Apply(states[u], e.typ, e.slot, e.seq)
			want = ref.apply(u, e.typ, e.slot, e.seq)
			if want != OutcomeDuplicate || tr.Outcome != OutcomeDuplicate {
				t.Fatalf("step %d: redelivery %+v not a duplicate: %v / ref %v", step, e, tr.Outcome, want)
			}
		case k < 15: // an event with a sequence at or below the player's last one
			typ, s := EventType(1+r.IntN(3)), randSlot()
			old := uint64(0)
			if states[u].LastSeq > 0 {
				old = r.Uint64N(states[u].LastSeq + 1)
			}
			desc = fmt.Sprintf("old seq %d %v %v user %d", old, typ, s, u)
			tr = Apply(states[u], typ, s, old)
			want = ref.apply(u, typ, s, old)
		case k < 25: // expiry
			desc = fmt.Sprintf("expire user %d", u)
			tr = Expire(states[u])
			want = ref.expire(u)
		default:
			seq += 1 + r.Uint64N(3) // other partitions' events take sequences too
			typ := EventEnter
			s := randSlot()
			switch j := r.IntN(14); {
			case j < 5: // enter somewhere, possibly where they are
				if j == 0 && states[u].Present {
					s = states[u].Slot
				}
			case j < 9: // heartbeat, mostly where they are (when present)
				typ = EventHeartbeat
				if j < 8 && states[u].Present {
					s = states[u].Slot
				}
			case j < 12: // leave where they are (when present)
				typ = EventLeave
				if states[u].Present {
					s = states[u].Slot
				}
			default: // leave of a random slot: stale when not theirs
				typ = EventLeave
			}
			desc = fmt.Sprintf("seq %d %v %v user %d", seq, typ, s, u)
			tr = Apply(states[u], typ, s, seq)
			want = ref.apply(u, typ, s, seq)
			log = append(log, appliedEvent{u, typ, s, seq})
		}
		if tr.Outcome != want {
			t.Fatalf("step %d (%s): outcome %v, reference %v (state %+v)", step, desc, tr.Outcome, want, states[u])
		}
		checkTransitionShape(t, states[u], tr)
		states[u] = tr.Next
		counts.Apply(tr)
		compareWithReference(t, c, step, desc, states, counts, ref)
	}

	// Redelivering any prefix of the delivered events changes nothing.
	for trial := 0; trial < 20 && len(log) > 0; trial++ {
		n := r.IntN(len(log) + 1)
		before := counts.Clone()
		snap := append([]PlayerState(nil), states...)
		for _, e := range log[:n] {
			tr := Apply(states[e.user], e.typ, e.slot, e.seq)
			if tr.Outcome != OutcomeDuplicate || tr.HasAdd || tr.HasRemove || tr.Next != states[e.user] {
				t.Fatalf("redelivered %+v: %+v", e, tr)
			}
			states[e.user] = tr.Next
			counts.Apply(tr)
		}
		if !counts.Equal(before) {
			t.Fatalf("redelivering %d events changed counts", n)
		}
		for i := range states {
			if states[i] != snap[i] {
				t.Fatalf("redelivering %d events changed user %d: %+v -> %+v", n, i, snap[i], states[i])
			}
		}
	}
}

// checkTransitionShape checks a transition's internal consistency.
func checkTransitionShape(t *testing.T, cur PlayerState, tr Transition) {
	t.Helper()
	adds := tr.Outcome == OutcomeEntered || tr.Outcome == OutcomeMoved || tr.Outcome == OutcomeHeartbeatEntered || tr.Outcome == OutcomeHeartbeatMoved
	removes := tr.Outcome == OutcomeMoved || tr.Outcome == OutcomeLeft || tr.Outcome == OutcomeExpired || tr.Outcome == OutcomeHeartbeatMoved
	if tr.HasAdd != adds || tr.HasRemove != removes {
		t.Fatalf("transition %+v: HasAdd/HasRemove do not fit outcome %v", tr, tr.Outcome)
	}
	if tr.HasAdd && (!tr.Next.Present || tr.Next.Slot != tr.Added) {
		t.Fatalf("transition %+v adds a slot the player is not in", tr)
	}
	if tr.HasRemove && (!cur.Present || cur.Slot != tr.Removed) {
		t.Fatalf("transition %+v removes from %v, player was %+v", tr, tr.Removed, cur)
	}
	if tr.Next.LastSeq < cur.LastSeq {
		t.Fatalf("LastSeq went backwards: %+v -> %+v", cur, tr.Next)
	}
	if !tr.Next.Present && tr.Next.Slot != (Slot{}) {
		t.Fatalf("absent player keeps a slot: %+v", tr.Next)
	}
}

func compareWithReference(t *testing.T, c *Catalog, step int, desc string, states []PlayerState, counts Counts, ref *refModel) {
	t.Helper()
	want := ref.counts(c)
	for r := 0; r < c.NumRegions(); r++ {
		for m := 0; m < c.NumModes(); m++ {
			s := Slot{Region: uint16(r), Mode: uint16(m)}
			got := counts.Get(s)
			if got < 0 {
				t.Fatalf("step %d (%s): count of %v is negative: %d", step, desc, s, got)
			}
			if got != want[s] {
				t.Fatalf("step %d (%s): count of %v = %d, reference %d", step, desc, s, got, want[s])
			}
		}
	}
	for u, st := range states {
		rs, present := ref.where[u]
		if st.Present != present || (present && st.Slot != rs) || st.LastSeq != ref.lastSeq[u] {
			t.Fatalf("step %d (%s): user %d state %+v, reference present=%v slot=%v lastSeq=%d",
				step, desc, u, st, present, rs, ref.lastSeq[u])
		}
	}
}

func TestEncodeDecodePlayerRoundTrip(t *testing.T) {
	c := DefaultCatalog()
	seqs := []uint64{0, 1, 42, math.MaxUint32, math.MaxUint64}
	for r := 0; r < c.NumRegions(); r++ {
		for m := 0; m < c.NumModes(); m++ {
			for _, seq := range seqs {
				st := PlayerState{Present: true, Slot: Slot{uint16(r), uint16(m)}, LastSeq: seq}
				v := c.EncodePlayer(st)
				got, err := c.DecodePlayer(v)
				if err != nil || got != st {
					t.Fatalf("DecodePlayer(%q) = %+v, %v; want %+v", v, got, err, st)
				}
			}
		}
	}
	for _, seq := range seqs {
		st := PlayerState{LastSeq: seq}
		v := c.EncodePlayer(st)
		if want := "L " + fmt.Sprint(seq); string(v) != want {
			t.Errorf("EncodePlayer(%+v) = %q, want %q", st, v, want)
		}
		if got, err := c.DecodePlayer(v); err != nil || got != st {
			t.Fatalf("DecodePlayer(%q) = %+v, %v", v, got, err)
		}
	}
	if got := string(c.EncodePlayer(PlayerState{Present: true, Slot: Slot{8, 9}, LastSeq: 77})); got != "P SEA 10 77" {
		t.Errorf("EncodePlayer = %q, want %q", got, "P SEA 10 77")
	}
}

func TestDecodePlayerUnknownSlot(t *testing.T) {
	old := MustCatalog([]string{"US", "XX"}, []int{1, 2, 99})
	cur := MustCatalog([]string{"US"}, []int{1, 2})
	for _, st := range []PlayerState{
		{Present: true, Slot: Slot{Region: 1, Mode: 0}, LastSeq: 12}, // region gone
		{Present: true, Slot: Slot{Region: 0, Mode: 2}, LastSeq: 13}, // mode gone
		{Present: true, Slot: Slot{Region: 1, Mode: 2}, LastSeq: 14}, // both gone
	} {
		v := old.EncodePlayer(st)
		got, err := cur.DecodePlayer(v)
		if !errors.Is(err, ErrUnknownSlot) {
			t.Errorf("DecodePlayer(%q) error %v, want ErrUnknownSlot", v, err)
		}
		if got != (PlayerState{LastSeq: st.LastSeq}) {
			t.Errorf("DecodePlayer(%q) = %+v, want not present with LastSeq %d", v, got, st.LastSeq)
		}
	}
}

func TestDecodePlayerGarbage(t *testing.T) {
	c := DefaultCatalog()
	for _, v := range []string{
		"", " ", "L", "P", "X 1", "L x", "L -1", "L 1.5", "L 1 2", "L 18446744073709551616",
		"P US 1", "P US 1 2 3", "P US x 5", "P US 1 x", "P US 1 -5", "P US 1.0 5", "l 1", "p US 1 1",
		"P US 99999999999999999999 1", "{}", "\xff",
	} {
		got, err := c.DecodePlayer([]byte(v))
		if err == nil {
			t.Errorf("DecodePlayer(%q) = %+v, want error", v, got)
			continue
		}
		if errors.Is(err, ErrUnknownSlot) {
			t.Errorf("DecodePlayer(%q): garbage reported as ErrUnknownSlot", v)
		}
		if got != (PlayerState{}) {
			t.Errorf("DecodePlayer(%q) = %+v with error, want zero state", v, got)
		}
		if !strings.Contains(err.Error(), "player value") {
			t.Errorf("DecodePlayer(%q) error %q does not say what failed", v, err)
		}
	}
}
