package lobby

import (
	"fmt"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/modules/domain"
)

func startBroadcaster(t *testing.T, v *View, interval time.Duration) *Broadcaster {
	t.Helper()
	b := NewBroadcaster(v, interval)
	b.Start()
	t.Cleanup(b.Stop)
	return b
}

func subscribe(t *testing.T, b *Broadcaster, region string) *Subscription {
	t.Helper()
	s, err := b.Subscribe(region)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// next waits for the subscription's next update.
func next(t *testing.T, s *Subscription) Update {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		if u, ok := s.Next(); ok {
			return u
		}
		select {
		case <-s.Ready():
		case <-s.Done():
			t.Fatal("subscription ended")
		case <-deadline:
			t.Fatal("no update")
		}
	}
}

func usList(counts ...int64) string {
	out := `{"region":"US","game_modes":[`
	for i, n := range counts {
		if i > 0 {
			out += ","
		}
		out += fmt.Sprintf(`{"game_mode":%d,"player_count":%d}`, i+1, n)
	}
	return out + "]}"
}

func TestBroadcasterSendsCurrentListThenEveryChangeInOrder(t *testing.T) {
	c := domain.MustCatalog([]string{"US", "EU"}, []int{1, 2})
	v := NewView(c, nil)
	v.SetShard(0, 0, 0, shard(c, map[string]map[int]int64{"US": {1: 9}}))
	b := startBroadcaster(t, v, time.Millisecond)
	s := subscribe(t, b, "US")
	all := b.SubscribeAll()
	defer all.Close()

	want := []string{usList(9)}
	got := []Update{next(t, s)}
	if u := next(t, all); u.Region != "US" || string(u.List) != want[0] {
		t.Fatalf("SubscribeAll first update %s %s", u.Region, u.List)
	}
	if u := next(t, all); u.Region != "EU" || string(u.List) != `{"region":"EU","game_modes":[]}` {
		t.Fatalf("SubscribeAll second update %s %s", u.Region, u.List)
	}
	for i := int64(1); i <= 5; i++ {
		v.SetShard(1, 0, 0, shard(c, map[string]map[int]int64{"US": {2: i}}))
		want = append(want, usList(9, i))
		got = append(got, next(t, s)) // lockstep: no change is coalesced
		if u := next(t, all); u.Region != "US" || string(u.List) != want[len(want)-1] {
			t.Fatalf("SubscribeAll after change %d: %s %s", i, u.Region, u.List)
		}
	}
	// A change of another region reaches SubscribeAll only.
	v.SetShard(1, 0, 0, shard(c, map[string]map[int]int64{"US": {2: 5}, "EU": {1: 1}}))
	if u := next(t, all); u.Region != "EU" || string(u.List) != `{"region":"EU","game_modes":[{"game_mode":1,"player_count":1}]}` {
		t.Fatalf("SubscribeAll EU change: %s %s", u.Region, u.List)
	}
	if u, ok := s.Next(); ok {
		t.Fatalf("US subscriber got %s after an EU change", u.List)
	}
	for i, u := range got {
		if string(u.List) != want[i] || u.Region != "US" {
			t.Fatalf("update %d: %s %s, want %s", i, u.Region, u.List, want[i])
		}
		if i > 0 && u.Version <= got[i-1].Version {
			t.Fatalf("version %d after %d", u.Version, got[i-1].Version)
		}
	}
}

func TestBroadcasterBurstEndsWithTheLatestListAndNeverGoesBack(t *testing.T) {
	c := domain.MustCatalog([]string{"US"}, []int{1})
	v := NewView(c, nil)
	b := startBroadcaster(t, v, 0) // the default 100 ms: a burst is coalesced
	s := subscribe(t, b, "US")
	const n = 500
	for i := int64(1); i <= n; i++ {
		v.SetShard(0, 0, 0, shard(c, map[string]map[int]int64{"US": {1: i}}))
	}
	final := usList(n)
	var got []Update
	for len(got) == 0 || string(got[len(got)-1].List) != final {
		got = append(got, next(t, s))
	}
	for i := 1; i < len(got); i++ {
		if got[i].Version <= got[i-1].Version {
			t.Fatalf("version %d after %d", got[i].Version, got[i-1].Version)
		}
	}
	if last := got[len(got)-1]; last.Version != n {
		t.Fatalf("final version %d, want %d (one per change)", last.Version, n)
	}
}

// A subscriber that never takes its lists holds only the latest one and
// does not hold up another subscriber.
func TestBroadcasterSlowSubscriberKeepsOnlyTheLatestList(t *testing.T) {
	c := domain.MustCatalog([]string{"US"}, []int{1})
	v := NewView(c, nil)
	b := startBroadcaster(t, v, time.Microsecond)
	slow := subscribe(t, b, "US")
	fast := subscribe(t, b, "US")
	next(t, fast)
	for i := int64(1); i <= 200; i++ {
		v.SetShard(0, 0, 0, shard(c, map[string]map[int]int64{"US": {1: i}}))
		if u := next(t, fast); string(u.List) != usList(i) {
			t.Fatalf("fast subscriber after change %d: %s", i, u.List)
		}
	}
	u, ok := slow.Next()
	if !ok || string(u.List) != usList(200) || u.Version != 200 {
		t.Fatalf("slow subscriber holds %s (version %d), want the latest list", u.List, u.Version)
	}
	if u, ok := slow.Next(); ok {
		t.Fatalf("slow subscriber holds a second list %s", u.List)
	}
}

func TestBroadcasterVersionsFollowObservedRevisions(t *testing.T) {
	c := domain.MustCatalog([]string{"US", "EU"}, []int{1})
	v := NewView(c, nil)
	v.SetShard(0, 40, 0, shard(c, map[string]map[int]int64{"US": {1: 1}}))
	v.SetShard(1, 41, 0, shard(c, map[string]map[int]int64{"EU": {1: 1}}))
	v.SetShard(1, 0, 0, shard(c, map[string]map[int]int64{"EU": {1: 2}})) // no revision: counted on
	if got := v.Versions(nil); fmt.Sprint(got) != "[40 42]" {
		t.Fatalf("versions %v, want [40 42]", got)
	}
	if list, ver := v.Snapshot(0); string(list) != usList(1) || ver != 40 {
		t.Fatalf("US snapshot %s version %d", list, ver)
	}
}

func TestBroadcasterRejectsBadRegionsAndEndsSubscriptionsOnStop(t *testing.T) {
	c := domain.MustCatalog([]string{"US"}, []int{1})
	b := NewBroadcaster(NewView(c, nil), 0)
	for region, code := range map[string]string{"": domain.CodeMissingRegion, "XX": domain.CodeInvalidRegion} {
		if _, err := b.Subscribe(region); err == nil {
			t.Fatalf("region %q accepted", region)
		} else if ve, ok := domain.AsValidationError(err); !ok || ve.Code != code {
			t.Fatalf("region %q: %v, want %s", region, err, code)
		}
	}
	b.Start()
	s, _ := b.Subscribe("US")
	b.Stop()
	select {
	case <-s.Done():
	default:
		t.Fatal("subscription not ended by Stop")
	}
	late, _ := b.Subscribe("US")
	select {
	case <-late.Done():
	default:
		t.Fatal("subscription after Stop not ended")
	}
	b.Stop() // twice is fine
}
