package jetstream_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	jsadapter "github.com/gamemodes/gamemodes/adapters/jetstream"
	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/modules/partition"
	"github.com/gamemodes/gamemodes/nats/natstest"
	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// replicatedStack is a stack on a fresh 3-node cluster with the stream and
// buckets at three replicas, so player writes are fenced atomic batches.
func replicatedStack(t *testing.T, partitions int) (*natstest.Cluster, *stack) {
	t.Helper()
	if testing.Short() {
		t.Skip("3-node cluster test")
	}
	c := natstest.RunCluster(t, 3)
	_, js := natstest.Connect(t, c.URLs())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := topology.Ensure(ctx, js, topology.Config{Partitions: partitions, Replicas: 3, PlayerTTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	s := newStack(t, c.URLs(), time.Hour, partitions)
	if !s.store.AtomicBatches() || s.store.PlayerWriteLimits().MaxInflight != 1 {
		t.Fatalf("replicated players bucket: atomic batches %v, limits %+v; want atomic batches one at a time",
			s.store.AtomicBatches(), s.store.PlayerWriteLimits())
	}
	return c, s
}

// storedPlayers reads every partition's stored players through a store of
// its own: where each counted user token is.
func (s *stack) storedPlayers() map[string]domain.Slot {
	s.t.Helper()
	store, err := jsadapter.NewPartitionStore(context.Background(), s.js)
	if err != nil {
		s.t.Fatal(err)
	}
	defer store.Close()
	out := map[string]domain.Slot{}
	for p := 0; p < s.topo.Partitions; p++ {
		if _, err := store.LoadPartition(context.Background(), p, func(batch []partition.StoredPlayer) {
			for _, sp := range batch {
				st, err := s.catalog.DecodePlayer(sp.Value)
				if err != nil {
					s.t.Errorf("stored player %s unreadable: %v", sp.Token, err)
				}
				if st.Present {
					out[sp.Token] = st.Slot
				}
			}
		}); err != nil {
			s.t.Fatalf("load partition %d: %v", p, err)
		}
	}
	return out
}

// playersOf is where the model counts each user, by user token.
func (s *stack) playersOf(m *model) map[string]domain.Slot {
	out := map[string]domain.Slot{}
	for user, at := range m.at {
		slot, ok := s.catalog.SlotOf(at[0].(string), at[1].(int))
		if !ok {
			s.t.Fatalf("model slot %v unknown", at)
		}
		out[domain.UserToken(user)] = slot
	}
	return out
}

// waitStoredPlayers waits until the stored players equal the model's:
// counts run ahead of the persisted players, so the last writes may land
// after the lobby is exact.
func (s *stack) waitStoredPlayers(truth *model, within time.Duration) {
	s.t.Helper()
	want := s.playersOf(truth)
	deadline := time.Now().Add(within)
	for {
		got := s.storedPlayers()
		diff := diffPlayers(got, want)
		if diff == "" {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("stored players differ from the ground truth: %s", diff)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func diffPlayers(got, want map[string]domain.Slot) string {
	for token, slot := range want {
		if g, ok := got[token]; !ok || g != slot {
			return fmt.Sprintf("%d stored, %d in the model; %s: stored %v (present %v), want %v", len(got), len(want), token, g, ok, slot)
		}
	}
	for token, slot := range got {
		if _, ok := want[token]; !ok {
			return fmt.Sprintf("%d stored, %d in the model; %s stored at %v but not counted in the model", len(got), len(want), token, slot)
		}
	}
	return ""
}

// gatedStore holds an owner's player batches while gated, and then sends
// them with two sentinel players added: one after the first write and one
// at the end, players nobody else ever writes.
type gatedStore struct {
	partition.Store
	sentinel []byte // the stored value of a sentinel player

	mu    sync.Mutex
	gated bool
	held  []func(extra bool)
	sent  []error // outcome of each released batch
}

func (g *gatedStore) WritePlayers(p int, batch []partition.PlayerWrite, fence uint64, done func(uint64, error)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.gated {
		g.Store.WritePlayers(p, batch, fence, done)
		return
	}
	g.held = append(g.held, func(extra bool) {
		writes := batch
		if extra {
			n := len(g.held)
			writes = append([]partition.PlayerWrite{batch[0], {Token: fmt.Sprintf("sentinel-%d-a", n), Value: g.sentinel}}, batch[1:]...)
			writes = append(writes, partition.PlayerWrite{Token: fmt.Sprintf("sentinel-%d-z", n), Value: g.sentinel})
		}
		g.Store.WritePlayers(p, writes, fence, func(rev uint64, err error) {
			g.mu.Lock()
			g.sent = append(g.sent, err)
			g.mu.Unlock()
			done(rev, err)
		})
	})
}

func (g *gatedStore) gate() { g.mu.Lock(); g.gated = true; g.mu.Unlock() }

func (g *gatedStore) heldBatches() int { g.mu.Lock(); defer g.mu.Unlock(); return len(g.held) }

// release sends the held batches with sentinels and stops holding.
func (g *gatedStore) release() {
	g.mu.Lock()
	held := g.held
	g.held, g.gated = nil, false
	g.mu.Unlock()
	for _, send := range held {
		send(true)
	}
}

func (g *gatedStore) outcomes() []error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]error(nil), g.sent...)
}

func TestStalledOwnersBatchLandsNothingAfterTakeover(t *testing.T) {
	_, s := replicatedStack(t, 1)
	feed := jsadapter.NewSharedPartitionFeed(s.js, s.topo.Partitions)
	truth := newModel()
	for i := 0; i < 40; i++ {
		e := event{User: userName(i), Type: domain.EventEnter, Region: "US", Mode: 1}
		s.publish(e)
		truth.apply(e)
	}
	storeA := &gatedStore{Store: s.store, sentinel: s.catalog.EncodePlayer(domain.PlayerState{LastSeq: 1})}
	ctxA, cancelA := context.WithCancel(context.Background())
	defer cancelA()
	a := partition.NewOwner(0, s.ownerConfig("A"), s.catalog, storeA, feed, s.metrics, quietLog())
	errA := make(chan error, 1)
	go func() { errA <- a.Run(ctxA) }()
	s.waitCounts(truth.counts(), 20*time.Second)
	s.waitStoredPlayers(truth, 20*time.Second)

	// A stalls with a batch of 30 players in hand.
	storeA.gate()
	for i := 0; i < 30; i++ {
		e := event{User: userName(i), Type: domain.EventEnter, Region: "EU", Mode: 2}
		s.publish(e)
		truth.apply(e)
	}
	waitFor(t, 20*time.Second, func() bool { return storeA.heldBatches() > 0 }, "A's batch")

	// B takes the partition over: its claim moves the fence, it loads what
	// A persisted and applies the events after it.
	ctxB, cancelB := context.WithCancel(context.Background())
	b := partition.NewOwner(0, s.ownerConfig("B"), s.catalog, s.store, feed, s.metrics, quietLog())
	errB := make(chan error, 1)
	go func() { errB <- b.Run(ctxB) }()
	waitFor(t, 20*time.Second, func() bool { return shardOwner(t, s.js, 0) == "B" }, "B's claim")
	s.waitCounts(truth.counts(), 20*time.Second)
	s.waitStoredPlayers(truth, 20*time.Second)

	// A wakes up: its held batches go out with the fence of its claim, plus
	// two sentinel players each. Not one write of them may land.
	storeA.release()
	select {
	case err := <-errA:
		if !errors.Is(err, partition.ErrFenced) {
			t.Fatalf("stalled owner ended with %v, want ErrFenced", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("stalled owner was not fenced")
	}
	outcomes := storeA.outcomes()
	if len(outcomes) == 0 {
		t.Fatal("no held batch was sent")
	}
	for i, err := range outcomes {
		if !errors.Is(err, partition.ErrConflict) {
			t.Fatalf("held batch %d: %v, want a fence conflict", i, err)
		}
	}
	kv, err := s.js.KeyValue(context.Background(), topology.PlayersBucket)
	if err != nil {
		t.Fatal(err)
	}
	for n := 1; n <= len(outcomes); n++ {
		for _, end := range []string{"a", "z"} {
			key := topology.PlayerKey(0, fmt.Sprintf("sentinel-%d-%s", n, end))
			if _, err := kv.Get(context.Background(), key); !errors.Is(err, jetstream.ErrKeyNotFound) {
				t.Fatalf("sentinel %s of the fenced batch: %v, want not found (part of the batch landed)", key, err)
			}
		}
	}
	s.waitCounts(truth.counts(), 10*time.Second)
	s.waitStoredPlayers(truth, 10*time.Second)
	cancelB()
	if err := <-errB; err != nil {
		t.Fatalf("owner B: %v", err)
	}
}

// faultyStore loses the acknowledgement of some batches after they were
// stored, and cuts others before they reach the server, as a connection
// cut or a leader change does, each reported as a timeout.
type faultyStore struct {
	partition.Store
	mu    sync.Mutex
	calls int
	lost  int // batches stored whose acknowledgement was lost
	cut   int // batches never sent
}

func (f *faultyStore) WritePlayers(p int, batch []partition.PlayerWrite, fence uint64, done func(uint64, error)) {
	f.mu.Lock()
	f.calls++
	n := f.calls
	f.mu.Unlock()
	switch n % 3 {
	case 1: // stored, acknowledgement lost
		f.Store.WritePlayers(p, batch, fence, func(rev uint64, err error) {
			if err == nil {
				f.mu.Lock()
				f.lost++
				f.mu.Unlock()
				err = fmt.Errorf("lost acknowledgement: %w", nats.ErrTimeout)
			}
			done(rev, err)
		})
	case 2: // cut before it reached the server
		f.mu.Lock()
		f.cut++
		f.mu.Unlock()
		go done(0, fmt.Errorf("cut: %w", nats.ErrConnectionClosed))
	default:
		f.Store.WritePlayers(p, batch, fence, done)
	}
}

func TestPlayerBatchCutOrUnacknowledgedIsSentAgainAndAppliedOnce(t *testing.T) {
	c, s := replicatedStack(t, 2)
	feed := jsadapter.NewSharedPartitionFeed(s.js, s.topo.Partitions)
	store := &faultyStore{Store: s.store}
	w := partition.NewWorker(s.ownerConfig("w"), s.catalog, store, feed, s.metrics, quietLog())
	w.SetPartitions([]int{0, 1})
	t.Cleanup(func() { _ = w.Stop(context.Background()) })

	truth := newModel()
	events := randomEvents(rand.New(rand.NewPCG(5, 6)), 600, 150)
	for i, e := range events {
		s.publish(e)
		truth.apply(e)
		if i == 300 {
			// And a real leader change of the players stream with batches in flight.
			stepDown(t, s.js, topology.PlayersStream)
		}
	}
	s.waitCounts(truth.counts(), 30*time.Second)
	s.waitStoredPlayers(truth, 30*time.Second)
	store.mu.Lock()
	lost, cut := store.lost, store.cut
	store.mu.Unlock()
	if lost == 0 || cut == 0 {
		t.Fatalf("the faults did not happen: %d acknowledgements lost, %d batches cut", lost, cut)
	}
	// Sent again in place: no owner restarted (a restart reloads and applies
	// events again), and every event was applied exactly once.
	if r := s.metricSum("gamemodes_partition_restarts_total"); r != 0 {
		t.Fatalf("%v owner restarts, want 0", r)
	}
	if got := s.metricSum("gamemodes_events_applied_total"); got != float64(len(events)) {
		t.Fatalf("%v events applied, want %d (each once)", got, len(events))
	}
	t.Logf("%d acknowledgements lost and %d batches cut, each sent again; cluster nodes %d", lost, cut, len(c.Servers))
}

// stepDown asks the leader of a stream to step down.
func stepDown(t *testing.T, js jetstream.JetStream, stream string) {
	t.Helper()
	resp, err := js.Conn().Request("$JS.API.STREAM.LEADER.STEPDOWN."+stream, nil, 10*time.Second)
	if err != nil {
		t.Fatalf("step down %s: %v", stream, err)
	}
	var answer struct {
		Success bool                `json:"success"`
		Error   *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(resp.Data, &answer); err != nil || !answer.Success {
		t.Fatalf("step down %s: %s", stream, resp.Data)
	}
}

// metricSum is the sum of every series of a metric in the stack's registry.
func (s *stack) metricSum(name string) float64 {
	s.t.Helper()
	families, err := s.reg.Gather()
	if err != nil {
		s.t.Fatal(err)
	}
	sum := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// A server that takes smaller batches than the owners send, or a players
// stream without atomic batches, stops the start with what to change.
func TestPartitionStoreChecksTheServersBatchLimitsAtStart(t *testing.T) {
	opts := &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true}
	opts.JetStreamLimits.MaxBatchSize = 100
	ns := natstest.RunServerWith(t, opts)
	s := newStack(t, ns.ClientURL(), time.Hour, 4)
	ctx := context.Background()

	_, err := jsadapter.NewPartitionStore(ctx, s.js, jsadapter.WithAtomicBatches(true))
	if err == nil || !strings.Contains(err.Error(), "max_msgs: 500") {
		t.Fatalf("batches of 500 on a server taking 100: %v, want an error naming max_msgs", err)
	}
	store, err := jsadapter.NewPartitionStore(ctx, s.js, jsadapter.WithAtomicBatches(true), jsadapter.WithMaxBatch(100))
	if err != nil {
		t.Fatalf("batches of 100 on a server taking 100: %v", err)
	}
	store.Close()

	ps, err := s.js.Stream(ctx, topology.PlayersStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := ps.CachedInfo().Config
	cfg.AllowAtomicPublish = false
	if _, err := s.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	_, err = jsadapter.NewPartitionStore(ctx, s.js, jsadapter.WithAtomicBatches(true), jsadapter.WithMaxBatch(100))
	if err == nil || !strings.Contains(err.Error(), "does not allow atomic batches") {
		t.Fatalf("a players stream without atomic batches: %v, want an error saying so", err)
	}
}

// The durable-lag gauges show the events whose player writes wait, and
// return to 0 once they are persisted.
func TestDurableLagShowsUnpersistedEvents(t *testing.T) {
	ns := natstest.RunServer(t)
	s := newStack(t, ns.ClientURL(), time.Hour, 1)
	store := &gatedStore{Store: s.store, sentinel: s.catalog.EncodePlayer(domain.PlayerState{LastSeq: 1})}
	w := partition.NewWorker(s.ownerConfig("w"), s.catalog, store, jsadapter.NewSharedPartitionFeed(s.js, 1), s.metrics, quietLog())
	w.SetPartitions([]int{0})
	t.Cleanup(func() { _ = w.Stop(context.Background()) })
	truth := newModel()
	e := event{User: "first", Type: domain.EventEnter, Region: "US", Mode: 1}
	s.publish(e)
	truth.apply(e)
	s.waitStoredPlayers(truth, 10*time.Second)
	waitFor(t, 10*time.Second, func() bool { return s.metricSum("gamemodes_partition_durable_lag_events") == 0 }, "no lag at first")

	store.gate()
	for i := 0; i < 20; i++ {
		e := event{User: userName(i), Type: domain.EventEnter, Region: "EU", Mode: 2}
		s.publish(e)
		truth.apply(e)
	}
	// Counted at once, persisted later: the lobby is exact while the lag shows 20 events.
	s.waitCounts(truth.counts(), 10*time.Second)
	waitFor(t, 10*time.Second, func() bool { return s.metricSum("gamemodes_partition_durable_lag_events") == 20 }, "20 events waiting")
	if secs := s.metricSum("gamemodes_partition_durable_lag_seconds"); secs <= 0 {
		t.Fatalf("durable lag %v s with 20 events waiting, want > 0", secs)
	}
	store.release()
	waitFor(t, 10*time.Second, func() bool {
		return s.metricSum("gamemodes_partition_durable_lag_events") == 0 && s.metricSum("gamemodes_partition_durable_lag_seconds") == 0
	}, "lag back to 0")
	s.waitStoredPlayers(truth, 10*time.Second)
}
