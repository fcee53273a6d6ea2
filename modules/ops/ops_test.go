package ops

import (
	"context"
	"encoding/json"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/modules/ingest"
	"github.com/gamemodes/gamemodes/modules/lobby"
	"github.com/prometheus/client_golang/prometheus"
)

// source is a ClusterSource answering a fixed Cluster; release, when set,
// holds every read until it is closed.
type source struct {
	reads   atomic.Int32
	cluster Cluster
	release chan struct{}
	ctxErr  atomic.Value // error of the read's context when it started
}

func (s *source) ClusterStatus(ctx context.Context) Cluster {
	s.reads.Add(1)
	s.ctxErr.Store(errString(ctx.Err()))
	if s.release != nil {
		<-s.release
	}
	c := s.cluster
	c.Partitions.Items = append([]PartitionStatus(nil), c.Partitions.Items...)
	return c
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// clock is a settable time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	svc     *Service
	src     *source
	clock   *clock
	view    *lobby.View
	metrics *ingest.Metrics
}

func newFixture(t *testing.T, cluster Cluster) *fixture {
	t.Helper()
	catalog := domain.MustCatalog([]string{"US", "EU"}, []int{1, 2, 3})
	f := &fixture{
		src:     &source{cluster: cluster},
		clock:   &clock{t: time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)},
		view:    lobby.NewView(catalog, nil),
		metrics: ingest.NewMetrics(prometheus.NewRegistry()),
	}
	f.svc = NewService(Config{InstanceID: "edge-1", Roles: []string{"edge"}}, Deps{
		Counts: f.view, Cluster: f.src, Accepted: f.metrics.Accepted, Rejected: f.metrics.Rejected,
	})
	f.svc.now = f.clock.now
	return f
}

func TestStatusCarriesCountsTotalsAndIngestCounters(t *testing.T) {
	f := newFixture(t, Cluster{})
	counts := domain.NewCounts(f.view.Catalog())
	us1, _ := f.view.Catalog().SlotOf("US", 1)
	eu3, _ := f.view.Catalog().SlotOf("EU", 3)
	counts.Add(us1, 5)
	counts.Add(eu3, 2)
	f.view.SetShard(0, 0, 0, counts)
	f.view.MarkSynced()
	f.metrics.Accepted.WithLabelValues(ingest.SourceHTTP).Add(7)
	f.metrics.Accepted.WithLabelValues(ingest.SourceNATS).Add(3)
	f.metrics.Rejected.WithLabelValues(ingest.SourceHTTP, "invalid_region").Add(2)
	f.metrics.Rejected.WithLabelValues(ingest.SourceHTTP, "unavailable").Add(1)

	st := f.svc.Status(context.Background())
	want := CountsStatus{
		Regions: []string{"US", "EU"}, GameModes: []int{1, 2, 3},
		PlayerCounts: [][]int64{{5, 0, 0}, {0, 0, 2}}, RegionTotals: []int64{5, 2}, Total: 7,
		Shards: 1, Synced: true, LastChange: st.Counts.LastChange,
	}
	if !reflect.DeepEqual(st.Counts, want) {
		t.Fatalf("counts %+v, want %+v", st.Counts, want)
	}
	if !reflect.DeepEqual(st.Ingest.Accepted, map[string]float64{"http": 7, "nats": 3}) ||
		!reflect.DeepEqual(st.Ingest.Rejected, map[string]float64{"http": 3}) {
		t.Fatalf("ingest accepted %v rejected %v", st.Ingest.Accepted, st.Ingest.Rejected)
	}
	if st.InstanceID != "edge-1" || !reflect.DeepEqual(st.Roles, []string{"edge"}) || st.GeneratedAt != f.clock.now() || st.Build.GoVersion == "" {
		t.Fatalf("identity: %+v", st)
	}
	// Empty parts encode as empty arrays, not null: the page iterates them.
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	cl := raw["cluster"].(map[string]any)
	if _, ok := cl["workers"].(map[string]any)["members"].([]any); !ok {
		t.Fatalf("workers.members is not an array: %s", b)
	}
	if _, ok := cl["partitions"].(map[string]any)["items"].([]any); !ok {
		t.Fatalf("partitions.items is not an array: %s", b)
	}
	if _, ok := raw["ingest"].(map[string]any)["rates"].([]any); !ok {
		t.Fatalf("ingest.rates is not an array: %s", b)
	}
}

func TestClusterIsReadAtMostOncePerRefreshInterval(t *testing.T) {
	f := newFixture(t, Cluster{Stream: StreamStatus{LastSeq: 1}})
	for range 5 {
		f.svc.Status(context.Background())
	}
	if n := f.src.reads.Load(); n != 1 {
		t.Fatalf("%d reads within the refresh interval, want 1", n)
	}
	f.clock.add(DefaultRefreshEvery - time.Millisecond)
	f.svc.Status(context.Background())
	if n := f.src.reads.Load(); n != 1 {
		t.Fatalf("%d reads before the interval passed, want 1", n)
	}
	f.clock.add(time.Millisecond)
	st := f.svc.Status(context.Background())
	if n := f.src.reads.Load(); n != 2 {
		t.Fatalf("%d reads after the interval, want 2", n)
	}
	if st.Cluster.ReadAt != f.clock.now() {
		t.Fatalf("read at %v, want %v", st.Cluster.ReadAt, f.clock.now())
	}
}

func TestConcurrentPollsShareOneRead(t *testing.T) {
	f := newFixture(t, Cluster{Stream: StreamStatus{LastSeq: 9}})
	f.src.release = make(chan struct{})
	var wg sync.WaitGroup
	results := make(chan Status, 8)
	for range 8 {
		wg.Go(func() { results <- f.svc.Status(context.Background()) })
	}
	// Let the first read start, then release it.
	for f.src.reads.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	close(f.src.release)
	wg.Wait()
	close(results)
	for st := range results {
		if st.Cluster.Stream.LastSeq != 9 {
			t.Fatalf("poll got %+v", st.Cluster.Stream)
		}
	}
	if n := f.src.reads.Load(); n != 1 {
		t.Fatalf("%d reads for 8 concurrent polls, want 1", n)
	}
}

func TestAReadOutlivesThePollThatStartedIt(t *testing.T) {
	f := newFixture(t, Cluster{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f.svc.Status(ctx)
	if got := f.src.ctxErr.Load(); got != "" {
		t.Fatalf("the read's context was already done: %v", got)
	}
}

func TestPartitionLagIsStreamLastSeqMinusApplied(t *testing.T) {
	items := []PartitionStatus{
		{Partition: 0, Owner: "a", AppliedSeq: 60},
		{Partition: 1, Owner: "b", AppliedSeq: 100},
		{Partition: 2, AppliedSeq: 0},
	}
	f := newFixture(t, Cluster{Stream: StreamStatus{LastSeq: 100}, Partitions: PartitionsStatus{Count: 3, Items: items}})
	var lags []uint64
	for _, it := range f.svc.Status(context.Background()).Cluster.Partitions.Items {
		lags = append(lags, it.Lag)
	}
	if !reflect.DeepEqual(lags, []uint64{40, 0, 100}) {
		t.Fatalf("lags %v, want [40 0 100]", lags)
	}

	// Without the stream's last sequence, or the shards, there is no lag to tell.
	for _, c := range []Cluster{
		{Stream: StreamStatus{LastSeq: 100, Error: "stream down"}, Partitions: PartitionsStatus{Items: items}},
		{Stream: StreamStatus{LastSeq: 100}, Partitions: PartitionsStatus{Items: items, ShardsError: "shards down"}},
	} {
		f := newFixture(t, c)
		for _, it := range f.svc.Status(context.Background()).Cluster.Partitions.Items {
			if it.Lag != 0 {
				t.Fatalf("%+v: lag %d, want 0", c, it.Lag)
			}
		}
	}
}

func TestRatesOverTheWindow(t *testing.T) {
	f := newFixture(t, Cluster{})
	acc, rej := f.metrics.Accepted.WithLabelValues("http"), f.metrics.Rejected.WithLabelValues("http", "invalid_json")
	f.svc.Sample()
	for i := range 70 {
		f.clock.add(time.Second)
		acc.Add(float64(i))
		if i%2 == 0 {
			rej.Add(4)
		}
		f.svc.Sample()
	}
	st := f.svc.Status(context.Background())
	// 71 samples, of which the last 61 are kept: 60 rates, the last minute.
	if len(st.Ingest.Rates) != 60 || st.Ingest.WindowSeconds != 60 {
		t.Fatalf("%d rates over %vs, want 60 over 60s", len(st.Ingest.Rates), st.Ingest.WindowSeconds)
	}
	first, last := st.Ingest.Rates[0], st.Ingest.Rates[59]
	if first.Accepted != 10 || first.Rejected != 4 || last.Accepted != 69 || last.Rejected != 0 || !last.At.Equal(f.clock.now()) {
		t.Fatalf("first %+v last %+v", first, last)
	}

	// Start samples at once and every SampleEvery; Stop ends it.
	f.svc.Start()
	f.svc.Stop()
	f.svc.Stop()
}

// An archiver that does not archive (no database) makes the status say so,
// with the lag read from the consumer as it is: the events waiting.
func TestArchiveOffIsSaid(t *testing.T) {
	f := newFixture(t, Cluster{Archive: ArchiveStatus{Consumer: "archiver", NumPending: 42, Lag: 42}})
	if a := f.svc.Status(context.Background()).Cluster.Archive; a.Off != "" {
		t.Fatalf("archive off %q without Config.ArchiveOff", a.Off)
	}
	f.svc.cfg.ArchiveOff = "no --postgres-url"
	f.clock.add(time.Hour) // past the refresh interval: read again
	if a := f.svc.Status(context.Background()).Cluster.Archive; a.Off != "no --postgres-url" || a.Lag != 42 {
		t.Fatalf("archive %+v, want off (no --postgres-url) with lag 42", a)
	}
}
