package jetstream_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	jsadapter "github.com/gamemodes/gamemodes/adapters/jetstream"
	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/modules/livelist"
	"github.com/gamemodes/gamemodes/modules/lobby"
	"github.com/gamemodes/gamemodes/nats/natstest"
	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// popularEdge is the push side of one edge process: its own connection,
// lobby view following the counts bucket, broadcaster and NATS publisher.
type popularEdge struct {
	id   string
	nc   *nats.Conn
	view *lobby.View
	pub  *livelist.Publisher
	reg  *prometheus.Registry
}

func startPopularEdge(t *testing.T, url, id string, catalog *domain.Catalog, leaseTTL time.Duration) *popularEdge {
	t.Helper()
	return startPopularEdgeWith(t, url, catalog, livelist.Config{Member: id, LeaseTTL: leaseTTL})
}

func startPopularEdgeWith(t *testing.T, url string, catalog *domain.Catalog, cfg livelist.Config) *popularEdge {
	t.Helper()
	id := cfg.Member
	nc, js := natstest.Connect(t, url)
	e := &popularEdge{id: id, nc: nc, view: lobby.NewView(catalog, nil), reg: prometheus.NewRegistry()}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w := jsadapter.NewShardWatcher(js, catalog, e.view, quietLog())
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	b := lobby.NewBroadcaster(e.view, lobby.DefaultBroadcastInterval)
	b.Start()
	t.Cleanup(b.Stop)
	l, err := jsadapter.OpenLease(ctx, js, topology.PopularPublisherKey)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = topology.DefaultLeaseTTL
	}
	e.pub = livelist.New(l, b, jsadapter.NewPopularSender(nc, id), cfg, testLog(id), e.reg)
	e.pub.Start()
	t.Cleanup(func() { e.stop(t) })
	return e
}

// stop stops publishing gracefully (the lease is released).
func (e *popularEdge) stop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.pub.Stop(ctx); err != nil {
		t.Errorf("stop %s: %v", e.id, err)
	}
}

func (e *popularEdge) publishedCount(t *testing.T) int {
	t.Helper()
	n, err := testutil.GatherAndCount(e.reg, "gamemodes_popular_published_total")
	if err != nil || n != 1 {
		t.Fatalf("published metric: %d series, %v", n, err)
	}
	mfs, _ := e.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "gamemodes_popular_published_total" {
			return int(mf.GetMetric()[0].GetCounter().GetValue())
		}
	}
	return 0
}

// popularMsg is one list received on gamemodes.popular.<REGION>.
type popularMsg struct {
	list      string
	version   uint64
	publisher string
}

// popularSub collects the lists of one region published on NATS.
type popularSub struct {
	t    *testing.T
	msgs chan popularMsg
	got  []popularMsg
}

func subscribePopular(t *testing.T, url, region string) *popularSub {
	t.Helper()
	nc, _ := natstest.Connect(t, url)
	s := &popularSub{t: t, msgs: make(chan popularMsg, 10000)}
	if _, err := nc.Subscribe(topology.PopularSubject(region), func(m *nats.Msg) {
		v, err := strconv.ParseUint(m.Header.Get(jsadapter.HeaderPopularVersion), 10, 64)
		if err != nil {
			t.Errorf("version header %q", m.Header.Get(jsadapter.HeaderPopularVersion))
		}
		s.msgs <- popularMsg{list: string(m.Data), version: v, publisher: m.Header.Get(jsadapter.HeaderPopularPublisher)}
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *popularSub) next() popularMsg {
	s.t.Helper()
	select {
	case m := <-s.msgs:
		s.got = append(s.got, m)
		return m
	case <-time.After(20 * time.Second):
		s.t.Fatal("no lobby list published")
		return popularMsg{}
	}
}

// shardWriter writes partition 0's count shard, as its owner would.
type shardWriter struct {
	t       *testing.T
	kv      jetstream.KeyValue
	catalog *domain.Catalog
}

func newShardWriter(t *testing.T, js jetstream.JetStream, catalog *domain.Catalog) *shardWriter {
	t.Helper()
	kv, err := js.KeyValue(context.Background(), topology.CountsBucket)
	if err != nil {
		t.Fatal(err)
	}
	return &shardWriter{t: t, kv: kv, catalog: catalog}
}

// put sets US's counts (mode -> players) and returns the bucket revision.
func (w *shardWriter) put(us map[int]int64) uint64 {
	w.t.Helper()
	counts := domain.NewCounts(w.catalog)
	for m, n := range us {
		slot, _ := w.catalog.SlotOf("US", m)
		counts.Add(slot, n)
	}
	rev, err := w.kv.Put(context.Background(), topology.ShardKey(0), w.catalog.EncodeShard(domain.ShardHeader{Partition: 0, Owner: "test"}, counts))
	if err != nil {
		w.t.Fatal(err)
	}
	return rev
}

func popularSetup(t *testing.T) (url string, js jetstream.JetStream, catalog *domain.Catalog, ttl time.Duration) {
	t.Helper()
	ns := natstest.RunServer(t)
	_, js = natstest.Connect(t, ns.ClientURL())
	topo, err := topology.Ensure(context.Background(), js, topology.Config{Partitions: 4, LeaseTTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return ns.ClientURL(), js, domain.MustCatalog(testRegions, []int{1, 2, 3, 4}), topo.LeaseTTL
}

// TestPopularPublisherSendsEveryChangeInOrder: a NATS subscriber sees the
// current list when publishing starts, then every change (spaced beyond the
// broadcast interval) in order, each with its counts-bucket revision as
// version; a burst ends with the final list, versions increasing.
func TestPopularPublisherSendsEveryChangeInOrder(t *testing.T) {
	url, js, catalog, ttl := popularSetup(t)
	w := newShardWriter(t, js, catalog)
	rev0 := w.put(map[int]int64{1: 3})
	sub := subscribePopular(t, url, "US")
	startPopularEdge(t, url, "edge-a", catalog, ttl)

	want := []popularMsg{{list: `{"region":"US","game_modes":[{"game_mode":1,"player_count":3}]}`, version: rev0, publisher: "edge-a"}}
	sub.next()
	lists := []string{
		`{"region":"US","game_modes":[{"game_mode":2,"player_count":4},{"game_mode":1,"player_count":3}]}`,
		`{"region":"US","game_modes":[{"game_mode":2,"player_count":4}]}`,
		`{"region":"US","game_modes":[{"game_mode":2,"player_count":4},{"game_mode":4,"player_count":1}]}`,
		`{"region":"US","game_modes":[]}`,
	}
	for i, us := range []map[int]int64{{1: 3, 2: 4}, {2: 4}, {4: 1, 2: 4}, {}} {
		rev := w.put(us)
		want = append(want, popularMsg{list: lists[i], version: rev, publisher: "edge-a"})
		sub.next() // lockstep: no two changes within one interval
	}
	for i, m := range sub.got {
		if m != want[i] {
			t.Fatalf("message %d: %+v, want %+v", i, m, want[i])
		}
	}

	const burst = 200
	var last uint64
	for i := int64(1); i <= burst; i++ {
		last = w.put(map[int]int64{3: i})
	}
	final := `{"region":"US","game_modes":[{"game_mode":3,"player_count":200}]}`
	prev := sub.got[len(sub.got)-1]
	for m := sub.next(); ; m = sub.next() {
		if m.version <= prev.version {
			t.Fatalf("version %d after %d", m.version, prev.version)
		}
		prev = m
		if m.list == final {
			break
		}
	}
	if prev.version != last {
		t.Fatalf("final list at version %d, want the last revision %d", prev.version, last)
	}
}

// TestOnlyTheLeaseHolderPublishesAndAStandbyTakesOver: of two edges only
// the lease holder publishes; when it stops gracefully the other takes
// over, and when that one's connection is cut a third takes over once the
// lease expires. Versions never go back across the takeovers.
func TestOnlyTheLeaseHolderPublishesAndAStandbyTakesOver(t *testing.T) {
	url, js, catalog, ttl := popularSetup(t)
	w := newShardWriter(t, js, catalog)
	w.put(map[int]int64{1: 1})
	sub := subscribePopular(t, url, "US")
	a := startPopularEdge(t, url, "edge-a", catalog, ttl)
	waitFor(t, 10*time.Second, a.pub.Leader, "edge-a publishing")
	b := startPopularEdge(t, url, "edge-b", catalog, ttl)
	if m := sub.next(); m.publisher != "edge-a" {
		t.Fatalf("first list from %q", m.publisher)
	}
	for i := int64(2); i <= 6; i++ {
		w.put(map[int]int64{1: i})
		waitFor(t, 10*time.Second, func() bool { return b.view.Count("US", 1) == i }, "edge-b's view following")
		if m := sub.next(); m.publisher != "edge-a" || m.list != `{"region":"US","game_modes":[{"game_mode":1,"player_count":`+strconv.FormatInt(i, 10)+`}]}` {
			t.Fatalf("change %d: %+v", i, m)
		}
	}
	if b.pub.Leader() || b.publishedCount(t) != 0 {
		t.Fatalf("edge-b leader %v, published %d while edge-a holds the lease", b.pub.Leader(), b.publishedCount(t))
	}

	// Graceful stop: the lease is released and edge-b takes over,
	// publishing every list at once (the same version: nothing changed).
	before := sub.got[len(sub.got)-1]
	a.stop(t)
	if a.pub.Leader() {
		t.Fatal("edge-a still publishing after Stop")
	}
	m := sub.next()
	if m.publisher != "edge-b" || m.list != before.list || m.version != before.version {
		t.Fatalf("takeover list %+v, want edge-b's %+v", m, before)
	}
	rev := w.put(map[int]int64{1: 7})
	if m := sub.next(); m.publisher != "edge-b" || m.version != rev {
		t.Fatalf("after takeover: %+v, want edge-b at version %d", m, rev)
	}

	// A crash (connection cut, no release): edge-c takes over once the
	// lease expires; edge-b stops publishing when it cannot renew.
	c := startPopularEdge(t, url, "edge-c", catalog, ttl)
	waitFor(t, 10*time.Second, func() bool { return c.view.Count("US", 1) == 7 }, "edge-c's view following")
	b.nc.Close()
	waitFor(t, 20*time.Second, c.pub.Leader, "edge-c publishing")
	waitFor(t, 20*time.Second, func() bool { return !b.pub.Leader() }, "edge-b to stop publishing")
	if m := sub.next(); m.publisher != "edge-c" || m.version != rev {
		t.Fatalf("after the crash: %+v, want edge-c at version %d", m, rev)
	}
	rev = w.put(map[int]int64{1: 8})
	if m := sub.next(); m.publisher != "edge-c" || m.version != rev {
		t.Fatalf("after the crash: %+v, want edge-c at version %d", m, rev)
	}
	for i := 1; i < len(sub.got); i++ {
		if sub.got[i].version < sub.got[i-1].version {
			t.Fatalf("version went back: %+v after %+v", sub.got[i], sub.got[i-1])
		}
	}
	// Every region's list when each took over, plus one per change while it held the lease.
	regions := len(testRegions)
	if pa, pb, pc := a.publishedCount(t), b.publishedCount(t), c.publishedCount(t); pa != regions+5 || pb != regions+1 || pc != regions+1 {
		t.Fatalf("published a=%d b=%d c=%d, want %d %d %d", pa, pb, pc, regions+5, regions+1, regions+1)
	}
}

// TestPopularPublisherRepublishesForLateSubscribers: with Refresh set, a
// subscriber that joins after the lists were published, while nothing
// changes, still receives the current list, with the version it had.
func TestPopularPublisherRepublishesForLateSubscribers(t *testing.T) {
	url, js, catalog, ttl := popularSetup(t)
	w := newShardWriter(t, js, catalog)
	rev := w.put(map[int]int64{2: 5})
	e := startPopularEdgeWith(t, url, catalog, livelist.Config{Member: "edge-r", LeaseTTL: ttl, Refresh: 100 * time.Millisecond})
	waitFor(t, 10*time.Second, func() bool { return e.pub.Leader() && e.publishedCount(t) >= len(testRegions) }, "the first lists published")

	late := subscribePopular(t, url, "US")
	want := popularMsg{list: `{"region":"US","game_modes":[{"game_mode":2,"player_count":5}]}`, version: rev, publisher: "edge-r"}
	for i := 0; i < 2; i++ {
		if m := late.next(); m != want {
			t.Fatalf("late subscriber got %+v, want %+v", m, want)
		}
	}
}
