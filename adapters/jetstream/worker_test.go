package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	jsadapter "github.com/gamemodes/gamemodes/adapters/jetstream"
	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/modules/ingest"
	"github.com/gamemodes/gamemodes/modules/lobby"
	"github.com/gamemodes/gamemodes/modules/partition"
	"github.com/gamemodes/gamemodes/nats/natstest"
	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

var testRegions = []string{"US", "EU", "BR"}

// stack is one gamemodes worker plus a lobby view on a real embedded server.
type stack struct {
	t       testing.TB
	url     string
	js      jetstream.JetStream
	catalog *domain.Catalog
	topo    topology.Topology
	view    *lobby.View
	events  *ingest.Metrics
	metrics *partition.Metrics
	reg     *prometheus.Registry
	store   *jsadapter.PartitionStore
}

func newStack(t testing.TB, url string, ttl time.Duration, partitions int) *stack {
	t.Helper()
	_, js := natstest.Connect(t, url)
	js, err := jetstream.New(js.Conn(), jetstream.WithPublishAsyncMaxPending(65536))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	topo, err := topology.Ensure(ctx, js, topology.Config{Partitions: partitions, PlayerTTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{t: t, url: url, js: js, topo: topo, catalog: domain.MustCatalog(testRegions, []int{1, 2, 3, 4})}
	reg := prometheus.NewRegistry()
	s.reg = reg
	s.events = ingest.NewMetrics(reg)
	s.metrics = partition.NewMetrics(reg, s.events)
	s.view = lobby.NewView(s.catalog, nil)
	s.view.SetPartitions(topo.Partitions)
	w := jsadapter.NewShardWatcher(js, s.catalog, s.view, quietLog())
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	if s.store, err = jsadapter.NewPartitionStore(ctx, js); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.store.Close)
	return s
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func (s *stack) ownerConfig(id string) partition.OwnerConfig {
	return partition.OwnerConfig{OwnerID: id, Partitions: s.topo.Partitions, PlayerTTL: s.topo.PlayerTTL, Writes: s.store.PlayerWriteLimits()}
}

// startWorker runs owners of every partition until the test ends or stop is called.
func (s *stack) startWorker(id string) (stop func()) {
	s.t.Helper()
	w := partition.NewWorker(s.ownerConfig(id), s.catalog, s.store, jsadapter.NewSharedPartitionFeed(s.js, s.topo.Partitions), s.metrics, quietLog())
	all := make([]int, s.topo.Partitions)
	for i := range all {
		all[i] = i
	}
	w.SetPartitions(all)
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := w.Stop(ctx); err != nil {
			s.t.Errorf("stop worker: %v", err)
		}
	}
	s.t.Cleanup(stop)
	return stop
}

type event struct {
	ID     string
	User   string
	Type   domain.EventType
	Region string
	Mode   int
}

// publish stores an event as a game server would, and returns whether the
// stream deduplicated it.
func (s *stack) publish(e event) bool {
	s.t.Helper()
	return s.publishAck(e).Duplicate
}

// publishAck stores an event as a game server would, and returns the
// stream's acknowledgement.
func (s *stack) publishAck(e event) *jetstream.PubAck {
	s.t.Helper()
	body := fmt.Sprintf(`{"user_id":%q,"event_type":%q,"event_payload":{"game_mode":%d,"region":%q}}`, e.User, e.Type.String(), e.Mode, e.Region)
	var opts []jetstream.PublishOpt
	if e.ID != "" {
		opts = append(opts, jetstream.WithMsgID(e.ID))
	}
	ack, err := s.js.Publish(context.Background(), topology.EventSubject(e.Region, domain.UserToken(e.User)), []byte(body), opts...)
	if err != nil {
		s.t.Fatalf("publish: %v", err)
	}
	return ack
}

// model is the ground truth: where each user is counted.
type model struct {
	at map[string][2]any
}

func newModel() *model { return &model{at: map[string][2]any{}} }

func (m *model) apply(e event) {
	cur, present := m.at[e.User]
	switch e.Type {
	case domain.EventEnter, domain.EventHeartbeat:
		m.at[e.User] = [2]any{e.Region, e.Mode}
	case domain.EventLeave:
		if present && cur == [2]any{e.Region, e.Mode} {
			delete(m.at, e.User)
		}
	}
}

func (m *model) counts() map[string]map[int]int64 {
	out := map[string]map[int]int64{}
	for _, r := range testRegions {
		out[r] = map[int]int64{}
	}
	for _, at := range m.at {
		out[at[0].(string)][at[1].(int)]++
	}
	return out
}

// waitCounts waits until the lobby view shows want for every region and mode.
func (s *stack) waitCounts(want map[string]map[int]int64, within time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(within)
	for {
		changed := s.view.Changed()
		diff := s.diff(want)
		if diff == "" {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("lobby counts differ from ground truth: %s\nstored shards: %s", diff, s.describeShards())
		}
		select {
		case <-changed:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// describeShards reads every stored shard, for failure messages.
func (s *stack) describeShards() string {
	out := ""
	for p := 0; p < s.topo.Partitions; p++ {
		sh := shardOf(s.t, s.js, p)
		out += fmt.Sprintf("\n  p%d owner=%s applied=%d", p, sh.Owner, sh.AppliedSeq)
	}
	return out
}

func (s *stack) diff(want map[string]map[int]int64) string {
	for _, r := range testRegions {
		for _, m := range []int{1, 2, 3, 4} {
			if got := s.view.Count(r, m); got != want[r][m] {
				return fmt.Sprintf("%s/%d: got %d want %d", r, m, got, want[r][m])
			}
		}
	}
	return ""
}

func randomEvents(rng *rand.Rand, n, users int) []event {
	out := make([]event, 0, n)
	for i := 0; i < n; i++ {
		e := event{
			ID:     "ev-" + strconv.Itoa(i),
			User:   userName(rng.IntN(users)),
			Region: testRegions[rng.IntN(len(testRegions))],
			Mode:   1 + rng.IntN(4),
			Type:   domain.EventEnter,
		}
		switch rng.IntN(6) {
		case 0, 1:
			e.Type = domain.EventLeave
		case 2:
			e.Type = domain.EventHeartbeat
		}
		out = append(out, e)
	}
	return out
}

// userName mixes plain ids and ids that need the "=" base64 token.
func userName(i int) string {
	if i%5 == 0 {
		return "player " + strconv.Itoa(i) + "/é"
	}
	return strconv.Itoa(i)
}

func TestWorkerCountsEqualGroundTruth(t *testing.T) {
	ns := natstest.RunServer(t)
	s := newStack(t, ns.ClientURL(), time.Hour, 8)
	s.startWorker("w1")
	rng := rand.New(rand.NewPCG(1, 2))
	truth := newModel()
	for i, e := range randomEvents(rng, 3000, 300) {
		if dup := s.publish(e); dup {
			t.Fatalf("event %d reported duplicate", i)
		}
		truth.apply(e)
		if i%7 == 0 { // a retry of the same event: deduplicated by the stream
			if dup := s.publish(e); !dup {
				t.Fatalf("retry of event %d not deduplicated", i)
			}
		}
	}
	s.waitCounts(truth.counts(), 20*time.Second)
}

func TestStreamPartitionMatchesDomainHash(t *testing.T) {
	ns := natstest.RunServer(t)
	s := newStack(t, ns.ClientURL(), time.Hour, 32)
	str, err := s.js.Stream(context.Background(), topology.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		user := userName(i)
		s.publish(event{User: user, Type: domain.EventEnter, Region: "EU", Mode: 1})
		msg, err := str.GetMsg(context.Background(), uint64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		p, region, ok := topology.ParseStoredEventSubject(msg.Subject)
		if !ok || region != "EU" {
			t.Fatalf("stored subject %q not partitioned", msg.Subject)
		}
		if want := domain.PartitionOf(domain.UserToken(user), 32); p != want {
			t.Fatalf("user %q: server partition %d, domain partition %d", user, p, want)
		}
	}
}

func TestInvalidNATSMessagesAreTerminatedAndDoNotBlock(t *testing.T) {
	ns := natstest.RunServer(t)
	s := newStack(t, ns.ClientURL(), time.Hour, 4)
	s.startWorker("w1")
	ctx := context.Background()
	token := domain.UserToken("42")
	bad := []struct{ subject, body string }{
		{topology.EventSubject("US", token), `not json`},
		{topology.EventSubject("US", token), `{"user_id":42,"event_type":"ENTER_GAME_MODE","event_payload":{"game_mode":99,"region":"US"}}`},
		{topology.EventSubject("EU", token), `{"user_id":42,"event_type":"ENTER_GAME_MODE","event_payload":{"game_mode":1,"region":"US"}}`},   // region mismatch
		{topology.EventSubject("US", "other"), `{"user_id":42,"event_type":"ENTER_GAME_MODE","event_payload":{"game_mode":1,"region":"US"}}`}, // token of another partition (probably)
		{topology.EventSubject("XX", token), `{"user_id":42,"event_type":"ENTER_GAME_MODE","event_payload":{"game_mode":1,"region":"XX"}}`},
	}
	if domain.PartitionOf("other", 4) == domain.PartitionOf(token, 4) {
		bad = bad[:3]
	}
	for _, b := range bad {
		if _, err := s.js.Publish(ctx, b.subject, []byte(b.body)); err != nil {
			t.Fatal(err)
		}
	}
	truth := newModel()
	for i := 0; i < 20; i++ {
		e := event{User: "42", Type: domain.EventEnter, Region: "US", Mode: 1 + i%4}
		s.publish(e)
		truth.apply(e)
	}
	s.waitCounts(truth.counts(), 10*time.Second)
	waitFor(t, 5*time.Second, func() bool {
		return testutil.ToFloat64(s.events.Rejected.WithLabelValues("nats", "malformed_json")) == 1 &&
			sumRejected(s.events) == float64(len(bad))
	}, "rejected metrics")
	// The invalid messages stay in the stream for inspection.
	info, err := s.js.Stream(ctx, topology.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.CachedInfo().State.Msgs; got != uint64(len(bad)+20) {
		t.Fatalf("stream holds %d messages, want %d", got, len(bad)+20)
	}
}

func sumRejected(m *ingest.Metrics) float64 {
	ch := make(chan prometheus.Metric, 64)
	m.Rejected.Collect(ch)
	close(ch)
	total := 0.0
	for metric := range ch {
		var d dto.Metric
		if err := metric.Write(&d); err == nil {
			total += d.GetCounter().GetValue()
		}
	}
	return total
}

// every calls f every d in the background until stop is called; stop
// returns once f no longer runs.
func every(d time.Duration, f func()) (stop func()) {
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(d)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
				f()
			}
		}
	}()
	return func() { close(quit); <-done }
}

// waitFor is natstest.WaitFor with this package's order of arguments.
func waitFor(t testing.TB, within time.Duration, cond func() bool, what string) {
	t.Helper()
	natstest.WaitFor(t, within, what, cond)
}

func TestExpiredPlayersLeaveTheirModeAndActiveOnesStay(t *testing.T) {
	ns := natstest.RunServer(t)
	ttl := 2 * time.Second
	s := newStack(t, ns.ClientURL(), ttl, 4)
	s.startWorker("w1")
	for i := 0; i < 10; i++ {
		s.publish(event{User: userName(i), Type: domain.EventEnter, Region: "BR", Mode: 2})
	}
	s.waitCounts(map[string]map[int]int64{"BR": {2: 10}}, 5*time.Second)
	// Player 0 keeps playing; the others drop without LEAVE.
	stop := every(300*time.Millisecond, func() {
		s.publish(event{User: userName(0), Type: domain.EventEnter, Region: "BR", Mode: 2})
	})
	s.waitCounts(map[string]map[int]int64{"BR": {2: 1}}, ttl+5*time.Second)
	// Stays at 1 for more than a TTL while refreshed: every change is seen.
	s.holdCounts(map[string]map[int]int64{"BR": {2: 1}}, ttl+time.Second)
	stop()
	s.waitCounts(map[string]map[int]int64{}, ttl+5*time.Second)
	if got := testutil.ToFloat64(s.metrics.ExpiriesCounter()); got != 10 {
		t.Fatalf("expiries metric %v, want 10", got)
	}
	// An expired player who comes back is counted again.
	s.publish(event{User: userName(3), Type: domain.EventEnter, Region: "US", Mode: 4})
	s.waitCounts(map[string]map[int]int64{"US": {4: 1}}, 5*time.Second)
}

func TestRestartAndReplayKeepCountsExact(t *testing.T) {
	dir := t.TempDir()
	port := natstest.FreePort(t)
	ns := natstest.RunServerInDir(t, dir, port)
	s := newStack(t, ns.ClientURL(), time.Hour, 4)
	stop := s.startWorker("w1")
	rng := rand.New(rand.NewPCG(3, 4))
	truth := newModel()
	for _, e := range randomEvents(rng, 800, 100) {
		s.publish(e)
		truth.apply(e)
	}
	s.waitCounts(truth.counts(), 10*time.Second)
	stop()

	// Lose every shard (and with it the applied sequence): a new owner
	// replays the whole stream; each player's last sequence keeps it exact.
	kv, err := s.js.KeyValue(context.Background(), topology.CountsBucket)
	if err != nil {
		t.Fatal(err)
	}
	for p := 0; p < 4; p++ {
		if err := kv.Purge(context.Background(), topology.ShardKey(p)); err != nil {
			t.Fatal(err)
		}
	}
	s.waitCounts(map[string]map[int]int64{}, 5*time.Second)
	stop = s.startWorker("w2")
	s.waitCounts(truth.counts(), 10*time.Second)
	for _, e := range randomEvents(rng, 300, 100) {
		e.ID = ""
		s.publish(e)
		truth.apply(e)
	}
	s.waitCounts(truth.counts(), 10*time.Second)
	stop()

	// Restart the server itself on the same store.
	ns.Shutdown()
	ns.WaitForShutdown()
	ns = natstest.RunServerInDir(t, dir, port)
	s2 := newStack(t, ns.ClientURL(), time.Hour, 4)
	s2.waitCounts(truth.counts(), 10*time.Second)
	s2.startWorker("w3")
	e := event{User: "late", Type: domain.EventEnter, Region: "EU", Mode: 3}
	s2.publish(e)
	truth.apply(e)
	s2.waitCounts(truth.counts(), 10*time.Second)
}

// recordingStore records the revisions of the writes that landed for one owner.
type recordingStore struct {
	partition.Store
	mu        sync.Mutex
	maxPlayer uint64 // highest players-stream revision of a landed player write
	maxShard  uint64 // highest counts-stream revision of a landed shard write
}

func (r *recordingStore) record(into *uint64, done func(uint64, error)) func(uint64, error) {
	return func(rev uint64, err error) {
		if err == nil {
			r.mu.Lock()
			*into = max(*into, rev)
			r.mu.Unlock()
		}
		done(rev, err)
	}
}

func (r *recordingStore) WritePlayers(p int, batch []partition.PlayerWrite, fence uint64, done func(uint64, error)) {
	r.Store.WritePlayers(p, batch, fence, r.record(&r.maxPlayer, done))
}

func (r *recordingStore) WriteShard(p int, value []byte, rev uint64, done func(uint64, error)) {
	r.Store.WriteShard(p, value, rev, r.record(&r.maxShard, done))
}

func (r *recordingStore) landed() (player, shard uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.maxPlayer, r.maxShard
}

func TestStalledOwnerIsFencedAndWritesNothing(t *testing.T) {
	ns := natstest.RunServer(t)
	s := newStack(t, ns.ClientURL(), time.Hour, 1)
	feed := jsadapter.NewSharedPartitionFeed(s.js, s.topo.Partitions)
	truth := newModel()
	for i := 0; i < 50; i++ {
		e := event{User: userName(i), Type: domain.EventEnter, Region: "US", Mode: 1}
		s.publish(e)
		truth.apply(e)
	}
	ctxA, cancelA := context.WithCancel(context.Background())
	defer cancelA()
	storeA := &recordingStore{Store: s.store}
	a := partition.NewOwner(0, s.ownerConfig("A"), s.catalog, storeA, feed, s.metrics, quietLog())
	errA := make(chan error, 1)
	go func() { errA <- a.Run(ctxA) }()
	s.waitCounts(truth.counts(), 10*time.Second)
	// A is idle once its shard records every event as applied.
	waitFor(t, 5*time.Second, func() bool { return shardOf(t, s.js, 0).AppliedSeq == 50 }, "A's last flush")

	// B takes the partition over while A is still running (A stalled past
	// its lease): B's claim moves the partition's fence.
	ctxB, cancelB := context.WithCancel(context.Background())
	b := partition.NewOwner(0, s.ownerConfig("B"), s.catalog, s.store, feed, s.metrics, quietLog())
	errB := make(chan error, 1)
	go func() { errB <- b.Run(ctxB) }()
	waitFor(t, 5*time.Second, func() bool {
		select {
		case err := <-errB:
			t.Fatalf("owner B ended: %v", err)
		default:
		}
		return shardOwner(t, s.js, 0) == "B"
	}, "B's claim")
	pstream, err := s.js.Stream(context.Background(), topology.PlayersStream)
	if err != nil {
		t.Fatal(err)
	}
	fenceMsg, err := pstream.GetLastMsgForSubject(context.Background(), topology.FenceSubject(0))
	if err != nil || string(fenceMsg.Data) != "B" {
		t.Fatalf("fence after B's claim: %v %v", fenceMsg, err)
	}
	countsStream, err := s.js.Stream(context.Background(), "KV_"+topology.CountsBucket)
	if err != nil {
		t.Fatal(err)
	}
	claimMsg, err := countsStream.GetLastMsgForSubject(context.Background(), "$KV."+topology.CountsBucket+"."+topology.ShardKey(0))
	if err != nil {
		t.Fatal(err)
	}

	// A wakes up and applies new events: every write it tries is rejected.
	for i := 50; i < 80; i++ {
		e := event{User: userName(i - 50), Type: domain.EventLeave, Region: "US", Mode: 1}
		if i%2 == 0 {
			e = event{User: userName(i - 50), Type: domain.EventEnter, Region: "EU", Mode: 2}
		}
		s.publish(e)
		truth.apply(e)
	}
	select {
	case err := <-errA:
		if !errors.Is(err, partition.ErrFenced) {
			t.Fatalf("stalled owner ended with %v, want ErrFenced", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("stalled owner was not fenced")
	}
	s.waitCounts(truth.counts(), 10*time.Second)
	if player, shard := storeA.landed(); player > fenceMsg.Sequence || shard >= claimMsg.Sequence {
		t.Fatalf("a write of the fenced owner landed: player revision %d after fence %d, or shard revision %d at or after B's claim %d",
			player, fenceMsg.Sequence, shard, claimMsg.Sequence)
	}
	if got := shardOwner(t, s.js, 0); got != "B" {
		t.Fatalf("shard written by %q after fencing", got)
	}
	cancelB()
	if err := <-errB; err != nil {
		t.Fatalf("owner B: %v", err)
	}
}

func shardOwner(t testing.TB, js jetstream.JetStream, p int) string {
	t.Helper()
	return shardOf(t, js, p).Owner
}

func shardOf(t testing.TB, js jetstream.JetStream, p int) domain.ShardHeader {
	t.Helper()
	kv, err := js.KeyValue(context.Background(), topology.CountsBucket)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(context.Background(), topology.ShardKey(p))
	if err != nil {
		return domain.ShardHeader{}
	}
	// Any catalog reads the header.
	h, _, _, err := domain.DefaultCatalog().DecodeShard(e.Value())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

var _ = nats.Connect
