package schema_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/modules/domain"
	schema "github.com/gamemodes/gamemodes/sql"
	"github.com/jackc/pgx/v5"
)

// The analytics queries are checked against a reference built on the
// domain's own state machine (domain.Apply and domain.Expire) over the same
// generated events.

var (
	testRegions = []string{"US", "EU"}
	testModes   = []int{1, 2, 3}
	testCatalog = domain.MustCatalog(testRegions, testModes)
	base        = time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
)

type genEvent struct {
	id     string
	user   string
	seq    uint64
	at     time.Time
	typ    domain.EventType
	region string
	mode   int
}

func (e genEvent) slot() domain.Slot {
	s, ok := testCatalog.SlotOf(e.region, e.mode)
	if !ok {
		panic("bad slot")
	}
	return s
}

type slotKey struct {
	region string
	mode   int
}

func slotName(s domain.Slot) slotKey {
	return slotKey{testCatalog.Region(int(s.Region)), testCatalog.GameMode(int(s.Mode))}
}

// generate makes n events of users users, seconds apart, in stream order.
// Stale LEAVEs, moves, refreshes, heartbeats and gaps longer than the TTL all occur.
func generate(seed uint64, n, users int) []genEvent {
	r := rand.New(rand.NewPCG(seed, 1))
	evs := make([]genEvent, 0, n)
	at := base.Add(time.Duration(r.IntN(600)) * time.Second)
	for i := 0; i < n; i++ {
		at = at.Add(time.Duration(1+r.IntN(60)) * time.Second)
		typ := domain.EventEnter
		switch r.IntN(6) {
		case 0, 1:
			typ = domain.EventLeave
		case 2:
			typ = domain.EventHeartbeat
		}
		evs = append(evs, genEvent{
			id:     "e" + strconv.Itoa(i),
			user:   "u" + strconv.Itoa(r.IntN(users)),
			seq:    uint64(i + 1),
			at:     at,
			typ:    typ,
			region: testRegions[r.IntN(len(testRegions))],
			mode:   testModes[r.IntN(len(testModes))],
		})
	}
	return evs
}

func insertEvents(t *testing.T, conn *pgx.Conn, evs []genEvent) {
	t.Helper()
	n, err := conn.CopyFrom(context.Background(), pgx.Identifier{"event"},
		[]string{"event_id", "user_id", "event_type", "event_payload", "timestamp", "stream_seq", "partition", "region", "game_mode", "received_at"},
		pgx.CopyFromSlice(len(evs), func(i int) ([]any, error) {
			e := evs[i]
			payload := fmt.Sprintf(`{"game_mode":%d,"region":%q}`, e.mode, e.region)
			return []any{e.id, e.user, e.typ.String(), []byte(payload), e.at, int64(e.seq), int32(0), e.region, int32(e.mode), e.at}, nil
		}))
	if err != nil || n != int64(len(evs)) {
		t.Fatalf("copy events: %d, %v", n, err)
	}
}

// The reference model.

type refTransition struct {
	ev        genEvent
	outcome   domain.Outcome
	before    *domain.Slot
	expiredAt *time.Time
}

type refSession struct {
	user    string
	slot    slotKey
	start   time.Time
	end     *time.Time
	reason  string
	started bool
}

// replay applies the events received in [from, to) per user in stream
// order from an empty state, expiring players after ttl without events.
func replay(evs []genEvent, from, to time.Time, ttl time.Duration) ([]refTransition, []refSession) {
	type player struct {
		st      domain.PlayerState
		last    time.Time
		session int // index in sessions of the open session, -1 if none
	}
	players := map[string]*player{}
	var trs []refTransition
	var sessions []refSession
	closeSession := func(p *player, at time.Time, reason string) {
		if p.session >= 0 {
			at := at
			sessions[p.session].end, sessions[p.session].reason = &at, reason
			p.session = -1
		}
	}
	for _, e := range evs {
		if e.at.Before(from) || !e.at.Before(to) {
			continue
		}
		p := players[e.user]
		if p == nil {
			p = &player{session: -1}
			players[e.user] = p
		}
		tr := refTransition{ev: e}
		if !p.last.IsZero() && e.at.Sub(p.last) > ttl {
			x := domain.Expire(p.st)
			if x.Outcome == domain.OutcomeExpired {
				exp := p.last.Add(ttl)
				tr.expiredAt = &exp
				closeSession(p, exp, "expired")
			}
			p.st = x.Next
		}
		if p.st.Present {
			s := p.st.Slot
			tr.before = &s
		}
		x := domain.Apply(p.st, e.typ, e.slot(), e.seq)
		tr.outcome = sqlOutcome(x.Outcome)
		switch tr.outcome {
		case domain.OutcomeLeft:
			closeSession(p, e.at, "left")
		case domain.OutcomeMoved:
			closeSession(p, e.at, "moved")
		}
		if tr.outcome == domain.OutcomeEntered || tr.outcome == domain.OutcomeMoved {
			sessions = append(sessions, refSession{user: e.user, slot: slotKey{e.region, e.mode}, start: e.at})
			p.session = len(sessions) - 1
		}
		p.st, p.last = x.Next, e.at
		trs = append(trs, tr)
	}
	for _, p := range players {
		if p.session >= 0 && p.last.Add(ttl).Before(to) {
			closeSession(p, p.last.Add(ttl), "expired")
		}
	}
	return trs, sessions
}

// sqlOutcome is the outcome event_transitions reports: a heartbeat's is
// that of an ENTER of the same slot.
func sqlOutcome(o domain.Outcome) domain.Outcome {
	switch o {
	case domain.OutcomeHeartbeat:
		return domain.OutcomeRefreshed
	case domain.OutcomeHeartbeatEntered:
		return domain.OutcomeEntered
	case domain.OutcomeHeartbeatMoved:
		return domain.OutcomeMoved
	}
	return o
}

func hourOf(t time.Time) time.Time { return t.UTC().Truncate(time.Hour) }

// Windows checked: the whole data set, and a window in the middle where
// the lookback of one TTL matters.
var windows = []struct {
	name     string
	from, to time.Time
}{
	{"all", base.Add(-time.Hour), base.Add(48 * time.Hour)},
	{"middle", base.Add(2*time.Hour + 17*time.Minute), base.Add(5*time.Hour + 3*time.Minute)},
}

const testTTL = 10 * time.Minute

func TestAnalyticsGenerated(t *testing.T) {
	conn := migrated(t)
	evs := generate(42, 1500, 12)
	insertEvents(t, conn, evs)
	for _, w := range windows {
		t.Run(w.name, func(t *testing.T) {
			checkSwitches(t, conn, evs, w.from, w.to, testTTL)
			checkSessions(t, conn, evs, w.from, w.to, testTTL)
			checkPlayers(t, conn, evs, w.from, w.to, testTTL)
		})
	}
}

type switchKey struct {
	hour     time.Time
	from, to slotKey
}

func checkSwitches(t *testing.T, conn *pgx.Conn, evs []genEvent, from, to time.Time, ttl time.Duration) {
	t.Helper()
	trs, _ := replay(evs, from.Add(-ttl), to, ttl)
	want := map[switchKey]int64{}
	for _, tr := range trs {
		if tr.outcome == domain.OutcomeMoved && !tr.ev.at.Before(from) {
			want[switchKey{hourOf(tr.ev.at), slotName(*tr.before), slotKey{tr.ev.region, tr.ev.mode}}]++
		}
	}
	rows, err := conn.Query(context.Background(), schema.QueryModeSwitchesPerHour, from, to, ttl)
	if err != nil {
		t.Fatal(err)
	}
	got := map[switchKey]int64{}
	var total int64
	for rows.Next() {
		var k switchKey
		var fromMode, toMode int32
		var n int64
		if err := rows.Scan(&k.hour, &k.from.region, &fromMode, &k.to.region, &toMode, &n); err != nil {
			t.Fatal(err)
		}
		k.hour, k.from.mode, k.to.mode = k.hour.UTC(), int(fromMode), int(toMode)
		got[k] = n
		total += n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	assertMapsEqual(t, "switches", got, want)
	if total == 0 {
		t.Fatal("generated data has no switches: the test checks nothing")
	}
	t.Logf("switches: %d in %d (hour, from, to) groups", total, len(got))
}

type sessionStats struct {
	sessions, open, left, moved, expired int64
	avg, p50, p90, max                   *float64
}

func (s sessionStats) String() string {
	f := func(p *float64) string {
		if p == nil {
			return "NULL"
		}
		return strconv.FormatFloat(*p, 'f', 6, 64)
	}
	return fmt.Sprintf("{sessions %d open %d left %d moved %d expired %d avg %s p50 %s p90 %s max %s}",
		s.sessions, s.open, s.left, s.moved, s.expired, f(s.avg), f(s.p50), f(s.p90), f(s.max))
}

func percentileCont(sorted []float64, p float64) float64 {
	pos := p * float64(len(sorted)-1)
	lo, hi := math.Floor(pos), math.Ceil(pos)
	return sorted[int(lo)] + (pos-lo)*(sorted[int(hi)]-sorted[int(lo)])
}

func checkSessions(t *testing.T, conn *pgx.Conn, evs []genEvent, from, to time.Time, ttl time.Duration) {
	t.Helper()
	_, sessions := replay(evs, from.Add(-ttl), to, ttl)
	lengths := map[slotKey][]float64{}
	want := map[slotKey]*sessionStats{}
	for _, s := range sessions {
		if s.start.Before(from) {
			continue
		}
		st := want[s.slot]
		if st == nil {
			st = &sessionStats{}
			want[s.slot] = st
		}
		st.sessions++
		switch s.reason {
		case "":
			st.open++
			continue
		case "left":
			st.left++
		case "moved":
			st.moved++
		case "expired":
			st.expired++
		}
		lengths[s.slot] = append(lengths[s.slot], s.end.Sub(s.start).Seconds())
	}
	for k, st := range want {
		ls := lengths[k]
		if len(ls) == 0 {
			continue
		}
		sort.Float64s(ls)
		sum := 0.0
		for _, l := range ls {
			sum += l
		}
		avg, p50, p90, mx := sum/float64(len(ls)), percentileCont(ls, 0.5), percentileCont(ls, 0.9), ls[len(ls)-1]
		st.avg, st.p50, st.p90, st.max = &avg, &p50, &p90, &mx
	}

	rows, err := conn.Query(context.Background(), schema.QuerySessionLengths, from, to, ttl)
	if err != nil {
		t.Fatal(err)
	}
	got := map[slotKey]*sessionStats{}
	var ended int64
	for rows.Next() {
		var k slotKey
		var mode int32
		st := &sessionStats{}
		if err := rows.Scan(&k.region, &mode, &st.sessions, &st.open, &st.left, &st.moved, &st.expired, &st.avg, &st.p50, &st.p90, &st.max); err != nil {
			t.Fatal(err)
		}
		k.mode = int(mode)
		got[k] = st
		ended += st.left + st.moved + st.expired
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("sessions: %d slots, want %d", len(got), len(want))
	}
	for k, w := range want {
		g := got[k]
		if g == nil || g.sessions != w.sessions || g.open != w.open || g.left != w.left || g.moved != w.moved || g.expired != w.expired ||
			!floatEq(g.avg, w.avg) || !floatEq(g.p50, w.p50) || !floatEq(g.p90, w.p90) || !floatEq(g.max, w.max) {
			t.Errorf("sessions %v: got %v, want %v", k, g, w)
		}
	}
	if ended == 0 {
		t.Fatal("generated data has no ended sessions: the test checks nothing")
	}
	t.Logf("sessions: %d slots, %d ended", len(got), ended)
}

func floatEq(a, b *float64) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return math.Abs(*a-*b) <= 1e-6*math.Max(1, math.Abs(*b))
}

type hourSlot struct {
	hour time.Time
	slot slotKey
}

type playerStats struct{ players, started int64 }

func checkPlayers(t *testing.T, conn *pgx.Conn, evs []genEvent, from, to time.Time, ttl time.Duration) {
	t.Helper()
	_, sessions := replay(evs, from.Add(-ttl), to, ttl)
	users := map[hourSlot]map[string]bool{}
	want := map[hourSlot]playerStats{}
	for _, s := range sessions {
		end := to
		if s.end != nil && s.end.Before(to) {
			end = *s.end
		}
		if !end.After(from) {
			continue
		}
		first := s.start
		if first.Before(from) {
			first = from
		}
		last := end.Add(-time.Microsecond)
		if last.Before(s.start) {
			last = s.start
		}
		for h := hourOf(first); !h.After(hourOf(last)); h = h.Add(time.Hour) {
			k := hourSlot{h, s.slot}
			if users[k] == nil {
				users[k] = map[string]bool{}
			}
			users[k][s.user] = true
			st := want[k]
			if !s.start.Before(h) && s.start.Before(h.Add(time.Hour)) {
				st.started++
			}
			want[k] = st
		}
	}
	for k, u := range users {
		st := want[k]
		st.players = int64(len(u))
		want[k] = st
	}

	rows, err := conn.Query(context.Background(), schema.QueryPlayersPerModeRegionHour, from, to, ttl)
	if err != nil {
		t.Fatal(err)
	}
	got := map[hourSlot]playerStats{}
	for rows.Next() {
		var k hourSlot
		var mode int32
		var st playerStats
		if err := rows.Scan(&k.hour, &k.slot.region, &mode, &st.players, &st.started); err != nil {
			t.Fatal(err)
		}
		k.hour, k.slot.mode = k.hour.UTC(), int(mode)
		got[k] = st
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	assertMapsEqual(t, "players per hour", got, want)
	t.Logf("players per hour: %d (hour, slot) rows", len(got))
}

func assertMapsEqual[K comparable, V comparable](t *testing.T, what string, got, want map[K]V) {
	t.Helper()
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			t.Errorf("%s %v: got %v (present %v), want %v", what, k, g, ok, w)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s %v: got %v, want no row", what, k, g)
		}
	}
	if len(want) == 0 {
		t.Fatalf("%s: no expected rows: the test checks nothing", what)
	}
}

// TestAnalyticsByHand spells out one player's story and the exact answers.
func TestAnalyticsByHand(t *testing.T) {
	conn := migrated(t)
	at := func(hm string) time.Time {
		d, err := time.ParseDuration(hm)
		if err != nil {
			t.Fatal(err)
		}
		return base.Add(10*time.Hour + d)
	}
	enter, leave := domain.EventEnter, domain.EventLeave
	evs := []genEvent{
		{user: "a", at: at("0m"), typ: enter, region: "US", mode: 1},  // a enters US/1
		{user: "a", at: at("8m"), typ: enter, region: "US", mode: 2},  // moves to US/2: session US/1 8 min
		{user: "a", at: at("12m"), typ: leave, region: "US", mode: 1}, // stale leave, a stays in US/2
		{user: "a", at: at("15m"), typ: enter, region: "EU", mode: 1}, // moves to EU/1: session US/2 7 min
		{user: "a", at: at("20m"), typ: enter, region: "EU", mode: 1}, // refresh
		// no event for 10 min after 20m: a expires at 30m, session EU/1 15 min
		{user: "a", at: at("35m"), typ: leave, region: "EU", mode: 1}, // stale: a is not counted
		{user: "a", at: at("40m"), typ: enter, region: "EU", mode: 2}, // enters EU/2 (no switch)
		{user: "a", at: at("48m"), typ: enter, region: "EU", mode: 2}, // refresh
		{user: "a", at: at("56m"), typ: enter, region: "EU", mode: 2}, // refresh
		{user: "a", at: at("62m"), typ: leave, region: "EU", mode: 2}, // leaves: session EU/2 22 min
		{user: "b", at: at("58m"), typ: enter, region: "US", mode: 1}, // b still playing at the end (11:05)
	}
	for i := range evs {
		evs[i].id, evs[i].seq = "h"+strconv.Itoa(i), uint64(i+1)
	}
	sort.Slice(evs, func(i, j int) bool { return evs[i].at.Before(evs[j].at) })
	for i := range evs {
		evs[i].seq = uint64(i + 1)
	}
	insertEvents(t, conn, evs)
	ctx := context.Background()
	from, to := at("0m"), at("65m")

	// Switches: US/1 -> US/2 and US/2 -> EU/1, both in hour 10.
	rows, _ := conn.Query(ctx, schema.QueryModeSwitchesPerHour, from, to, testTTL)
	type sw struct {
		FromRegion string
		FromMode   int32
		ToRegion   string
		ToMode     int32
		N          int64
	}
	var switches []sw
	for rows.Next() {
		var h time.Time
		var s sw
		if err := rows.Scan(&h, &s.FromRegion, &s.FromMode, &s.ToRegion, &s.ToMode, &s.N); err != nil {
			t.Fatal(err)
		}
		if !h.Equal(base.Add(10 * time.Hour)) {
			t.Errorf("switch hour %v", h)
		}
		switches = append(switches, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	wantSw := []sw{{"US", 1, "US", 2, 1}, {"US", 2, "EU", 1, 1}}
	if fmt.Sprint(switches) != fmt.Sprint(wantSw) {
		t.Errorf("switches %v, want %v", switches, wantSw)
	}

	// Sessions: EU/1 15 min expired, EU/2 22 min left, US/1 8 min moved +
	// b open, US/2 7 min moved.
	rows, _ = conn.Query(ctx, schema.QuerySessionLengths, from, to, testTTL)
	var sessions []string
	for rows.Next() {
		var region string
		var mode int32
		var st sessionStats
		if err := rows.Scan(&region, &mode, &st.sessions, &st.open, &st.left, &st.moved, &st.expired, &st.avg, &st.p50, &st.p90, &st.max); err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, fmt.Sprintf("%s/%d %d open=%d left=%d moved=%d expired=%d avg=%.0f max=%.0f",
			region, mode, st.sessions, st.open, st.left, st.moved, st.expired, *st.avg, *st.max))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	wantSessions := []string{
		"EU/1 1 open=0 left=0 moved=0 expired=1 avg=900 max=900",
		"EU/2 1 open=0 left=1 moved=0 expired=0 avg=1320 max=1320",
		"US/1 2 open=1 left=0 moved=1 expired=0 avg=480 max=480",
		"US/2 1 open=0 left=0 moved=1 expired=0 avg=420 max=420",
	}
	if fmt.Sprint(sessions) != fmt.Sprint(wantSessions) {
		t.Errorf("sessions\n got %v\nwant %v", sessions, wantSessions)
	}

	// Players per hour: hour 10 has a in US/1, US/2, EU/1, EU/2 and b in
	// US/1; hour 11 has a in EU/2 (until 11:02) and b in US/1 (open).
	rows, _ = conn.Query(ctx, schema.QueryPlayersPerModeRegionHour, from, to, testTTL)
	var players []string
	for rows.Next() {
		var h time.Time
		var region string
		var mode int32
		var n, started int64
		if err := rows.Scan(&h, &region, &mode, &n, &started); err != nil {
			t.Fatal(err)
		}
		players = append(players, fmt.Sprintf("%02d %s/%d players=%d started=%d", h.UTC().Hour(), region, mode, n, started))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	wantPlayers := []string{
		"10 EU/1 players=1 started=1",
		"10 EU/2 players=1 started=1",
		"10 US/1 players=2 started=2",
		"10 US/2 players=1 started=1",
		"11 EU/2 players=1 started=0",
		"11 US/1 players=1 started=0",
	}
	if fmt.Sprint(players) != fmt.Sprint(wantPlayers) {
		t.Errorf("players\n got %v\nwant %v", players, wantPlayers)
	}
}
