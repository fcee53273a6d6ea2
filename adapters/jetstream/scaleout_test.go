package jetstream_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	jsadapter "github.com/gamemodes/gamemodes/adapters/jetstream"
	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/modules/ingest"
	"github.com/gamemodes/gamemodes/modules/partition"
	"github.com/gamemodes/gamemodes/nats/natstest"
	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// member is one worker process's worth of gamemodes: its own connection,
// store, coordinator, worker and assigner.
type member struct {
	id       string
	nc       *nats.Conn
	worker   *partition.Worker
	assigner *partition.Assigner
	coord    *jsadapter.Coordinator
	store    *jsadapter.PartitionStore
}

func startMember(t *testing.T, s *stack, url, id string) *member {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(65536), jetstream.WithPublishAsyncTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	store, err := jsadapter.NewPartitionStore(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	coord, err := jsadapter.NewCoordinator(ctx, js, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	metrics := partition.NewMetrics(reg, ingest.NewMetrics(reg))
	w := partition.NewWorker(partition.OwnerConfig{OwnerID: id, Partitions: s.topo.Partitions, PlayerTTL: s.topo.PlayerTTL, Writes: store.PlayerWriteLimits()},
		s.catalog, store, jsadapter.NewSharedPartitionFeed(js, s.topo.Partitions), metrics, testLog(id))
	a := partition.NewAssigner(id, s.topo.Partitions, s.topo.LeaseTTL, coord, w, testLog(id))
	a.Start()
	m := &member{id: id, nc: nc, worker: w, assigner: a, coord: coord, store: store}
	t.Cleanup(func() { m.stop() })
	return m
}

// stop hands the member's partitions over gracefully.
func (m *member) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = m.assigner.Stop(ctx)
	m.coord.Close()
	m.store.Close()
	m.nc.Close()
}

// cut drops the member's connection abruptly, as a crash or a network cut would.
func (m *member) cut() { m.nc.Close() }

// waitOwnership waits until the members together own every partition exactly
// once, each its fair share.
func waitOwnership(t *testing.T, partitions int, within time.Duration, members ...*member) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		seen := make([]int, partitions)
		fair := true
		for _, m := range members {
			owned := m.worker.Owned()
			if len(owned) < partitions/len(members) || len(owned) > (partitions+len(members)-1)/len(members) {
				fair = false
			}
			for _, p := range owned {
				seen[p]++
			}
		}
		if fair && !slices.ContainsFunc(seen, func(n int) bool { return n != 1 }) {
			return time.Since(start)
		}
		if time.Since(start) > within {
			var desc string
			for _, m := range members {
				desc += fmt.Sprintf(" %s=%v", m.id, m.worker.Owned())
			}
			t.Fatalf("partitions not shared fairly within %s:%s", within, desc)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// load publishes events until stopped, retrying each with the same id until
// acknowledged, and keeps the ground truth of acknowledged events.
type load struct {
	mu    sync.Mutex
	truth *model
	sent  int
	stop  chan struct{}
	done  chan struct{}
}

func startLoad(t *testing.T, js jetstream.JetStream, users int) *load {
	l := &load{truth: newModel(), stop: make(chan struct{}), done: make(chan struct{})}
	rng := rand.New(rand.NewPCG(11, 12))
	go func() {
		defer close(l.done)
		for i := 0; ; i++ {
			select {
			case <-l.stop:
				return
			default:
			}
			e := randomEvents(rng, 1, users)[0]
			e.ID = "load-" + strconv.Itoa(i)
			body := fmt.Sprintf(`{"user_id":%q,"event_type":%q,"event_payload":{"game_mode":%d,"region":%q}}`, e.User, e.Type.String(), e.Mode, e.Region)
			// Retry with the same id until acknowledged (even when asked to
			// stop): an event that may be stored must be decided.
			for attempt := 0; ; attempt++ {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_, err := js.Publish(ctx, topology.EventSubject(e.Region, domain.UserToken(e.User)), []byte(body), jetstream.WithMsgID(e.ID))
				cancel()
				if err == nil {
					break
				}
				if attempt == 300 {
					t.Errorf("event %s never acknowledged: %v", e.ID, err)
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
			l.mu.Lock()
			l.truth.apply(e)
			l.sent++
			l.mu.Unlock()
		}
	}()
	return l
}

func (l *load) finish() (map[string]map[int]int64, int) {
	close(l.stop)
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.truth.counts(), l.sent
}

func (l *load) waitSent(n int, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		l.mu.Lock()
		sent := l.sent
		l.mu.Unlock()
		if sent >= n {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// TestWorkersShareFailOverAndRebalance cuts a worker, adds one and stops
// one gracefully under load, on one node (pipelined single writes) and on a
// 3-node cluster with three replicas (atomic batches): the lobby and the
// stored players end equal to the ground truth.
func TestWorkersShareFailOverAndRebalance(t *testing.T) {
	for _, replicated := range []bool{false, true} {
		name := "single node"
		if replicated {
			name = "3-node cluster"
		}
		t.Run(name, func(t *testing.T) {
			var s *stack
			var url string
			if replicated {
				var c *natstest.Cluster
				c, s = replicatedStack(t, 32)
				url = c.URLs()
			} else {
				url = natstest.RunServer(t).ClientURL()
				s = newStack(t, url, time.Hour, 32)
			}
			w1 := startMember(t, s, url, "w1")
			w2 := startMember(t, s, url, "w2")
			w3 := startMember(t, s, url, "w3")
			waitOwnership(t, 32, 20*time.Second, w1, w2, w3)

			l := startLoad(t, s.js, 500)
			if !l.waitSent(500, 20*time.Second) {
				t.Fatal("load did not start")
			}
			w2.cut()
			took := waitOwnership(t, 32, 20*time.Second, w1, w3)
			t.Logf("partitions of the cut worker taken over in %s", took)

			w4 := startMember(t, s, url, "w4")
			took = waitOwnership(t, 32, 20*time.Second, w1, w3, w4)
			t.Logf("rebalanced onto a new worker in %s", took)

			w1.stop() // graceful: hands over at once
			took = waitOwnership(t, 32, 20*time.Second, w3, w4)
			t.Logf("graceful stop handed over in %s", took)

			want, sent := l.finish()
			t.Logf("%d events acknowledged during the test", sent)
			s.waitCounts(want, 30*time.Second)
			s.waitStoredPlayers(l.truth, 30*time.Second)
		})
	}
}

// TestClusterFailoverKeepsCountsExact stops the events stream's leader,
// makes the players stream change leader with batches in flight and cuts a
// worker, under load: the lobby and the stored players end equal to the
// ground truth.
func TestClusterFailoverKeepsCountsExact(t *testing.T) {
	c, s := replicatedStack(t, 16)
	w1 := startMember(t, s, c.Servers[0].ClientURL()+","+c.URLs(), "w1")
	w2 := startMember(t, s, c.Servers[1].ClientURL()+","+c.URLs(), "w2")
	w3 := startMember(t, s, c.Servers[2].ClientURL()+","+c.URLs(), "w3")
	waitOwnership(t, 16, 20*time.Second, w1, w2, w3)

	l := startLoad(t, s.js, 400)
	if !l.waitSent(300, 20*time.Second) {
		t.Fatal("load did not start")
	}
	leader := c.StreamLeader("$G", topology.EventsStream)
	if leader < 0 {
		t.Fatal("no events stream leader")
	}
	c.Stop(leader)
	t.Logf("stopped node %d, the events stream leader", leader+1)
	l.mu.Lock()
	before := l.sent
	l.mu.Unlock()
	if !l.waitSent(before+300, 30*time.Second) {
		t.Fatal("publishing did not resume after the leader stopped")
	}
	// The players stream changes leader while batches are in flight.
	stepDown(t, s.js, topology.PlayersStream)
	l.mu.Lock()
	before = l.sent
	l.mu.Unlock()
	if !l.waitSent(before+300, 30*time.Second) {
		t.Fatal("publishing stalled after the players stream changed leader")
	}
	// Cut a worker whose preferred node is still up.
	victim := w1
	if leader != 1 {
		victim = w2
	}
	victim.cut()
	survivors := []*member{w1, w2, w3}
	survivors = slices.DeleteFunc(survivors, func(m *member) bool { return m == victim })
	took := waitOwnership(t, 16, 20*time.Second, survivors...)
	t.Logf("partitions of the cut worker taken over in %s", took)
	l.mu.Lock()
	before = l.sent
	l.mu.Unlock()
	if !l.waitSent(before+300, 30*time.Second) {
		t.Fatal("publishing stalled after the worker was cut")
	}
	want, sent := l.finish()
	t.Logf("%d events acknowledged during the test", sent)
	s.waitCounts(want, 30*time.Second)
	s.waitStoredPlayers(l.truth, 30*time.Second)
	c.Restart(leader)
}

func testLog(id string) *slog.Logger {
	if os.Getenv("GAMEMODES_TEST_LOG") == "" {
		return quietLog()
	}
	return slog.New(slog.NewTextHandler(os.Stderr, nil)).With("member", id)
}
