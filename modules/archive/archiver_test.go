package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
)

// fakeSource delivers queued messages and records acknowledgements.
type fakeSource struct {
	ch  chan Message
	lag atomic.Uint64

	mu    sync.Mutex
	acks  [][]uint64 // sequences of every Ack call
	floor uint64     // highest sequence acknowledged
}

func newFakeSource() *fakeSource { return &fakeSource{ch: make(chan Message, 100000)} }

func (s *fakeSource) Next(ctx context.Context) (Message, error) {
	select {
	case m := <-s.ch:
		return m, nil
	case <-ctx.Done():
		return Message{}, ctx.Err()
	}
}

func (s *fakeSource) Ack(_ context.Context, msgs []Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var seqs []uint64
	for _, m := range msgs {
		seqs = append(seqs, m.Seq)
		s.floor = max(s.floor, m.Seq)
	}
	s.acks = append(s.acks, seqs)
	return nil
}

func (s *fakeSource) Lag(context.Context) (uint64, error) { return s.lag.Load(), nil }

func (s *fakeSource) ackFloor() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.floor
}

func (s *fakeSource) ackList() [][]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.acks)
}

// push queues n valid events with sequences from, from+1, ...
func (s *fakeSource) push(from uint64, n int) {
	for i := 0; i < n; i++ {
		seq := from + uint64(i)
		user := fmt.Sprint("u", seq%50)
		s.ch <- msgFor(seq, "US", user, fmt.Sprintf(`{"event_id":"e%d","user_id":%q,"event_type":"ENTER_GAME_MODE","event_payload":{"game_mode":1,"region":"US"}}`, seq, user))
	}
}

// fakeStore records committed batches; it fails while failing is set.
type fakeStore struct {
	src     *fakeSource
	failing atomic.Bool

	mu         sync.Mutex
	attempts   [][]uint64 // sequences of every write attempt
	committed  [][]uint64
	ackedEarly bool // a batch was acknowledged before it committed
}

func (s *fakeStore) WriteBatch(_ context.Context, events []ArchivedEvent, rejected []RejectedEvent) error {
	seqs := make([]uint64, 0, len(events)+len(rejected))
	for _, e := range events {
		seqs = append(seqs, e.StreamSeq)
	}
	for _, r := range rejected {
		seqs = append(seqs, r.StreamSeq)
	}
	slices.Sort(seqs)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.attempts = append(s.attempts, seqs)
	if len(seqs) > 0 && s.src.ackFloor() >= seqs[0] {
		s.ackedEarly = true
	}
	if s.failing.Load() {
		return errors.New("connection refused")
	}
	s.committed = append(s.committed, seqs)
	return nil
}

func (s *fakeStore) batches() [][]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.committed)
}

func (s *fakeStore) attemptCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.attempts)
}

// logBuffer collects log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) count(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.buf.String(), "msg=\""+msg+"\"")
}

type harness struct {
	a       *Archiver
	src     *fakeSource
	store   *fakeStore
	metrics *Metrics
	logs    *logBuffer
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	src := newFakeSource()
	store := &fakeStore{src: src}
	metrics := NewMetrics(prometheus.NewRegistry())
	logs := &logBuffer{}
	cfg.Partitions = testPartitions
	a, err := New(cfg, testCatalog, src, store, metrics, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Stop(context.Background()) })
	return &harness{a: a, src: src, store: store, metrics: metrics, logs: logs}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

func TestBatchesBySize(t *testing.T) {
	h := newHarness(t, Config{BatchSize: 10, BatchWait: time.Hour})
	h.src.push(1, 30)
	h.a.Start()
	waitFor(t, 5*time.Second, "3 batches", func() bool { return len(h.store.batches()) == 3 })
	want := [][]uint64{seqRange(1, 10), seqRange(11, 20), seqRange(21, 30)}
	if got := h.store.batches(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("batches %v, want %v", got, want)
	}
	waitFor(t, 5*time.Second, "acks", func() bool { return len(h.src.ackList()) == 3 })
	if got := h.src.ackList(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("acks %v", got)
	}
	if got := testutil.ToFloat64(h.metrics.Rows); got != 30 {
		t.Fatalf("rows metric %v", got)
	}
	if got := testutil.ToFloat64(h.metrics.Batches); got != 3 {
		t.Fatalf("batches metric %v", got)
	}
}

func TestBatchesByTime(t *testing.T) {
	h := newHarness(t, Config{BatchSize: 1000, BatchWait: 20 * time.Millisecond})
	h.a.Start()
	h.src.push(1, 3)
	waitFor(t, 5*time.Second, "first batch", func() bool { return len(h.store.batches()) == 1 })
	h.src.push(4, 2)
	waitFor(t, 5*time.Second, "second batch", func() bool { return len(h.store.batches()) == 2 })
	if got := fmt.Sprint(h.store.batches()); got != "[[1 2 3] [4 5]]" {
		t.Fatalf("batches %s", got)
	}
	waitFor(t, 5*time.Second, "ack 5", func() bool { return h.src.ackFloor() == 5 })
}

func TestRejectedAreBatchedAndCounted(t *testing.T) {
	h := newHarness(t, Config{BatchSize: 4, BatchWait: time.Hour})
	h.src.push(1, 2)
	h.src.ch <- msgFor(3, "US", "7", `{`)
	h.src.ch <- msgFor(4, "EU", "7", `{"user_id":7,"event_type":"ENTER_GAME_MODE","event_payload":{"game_mode":1,"region":"US"}}`)
	h.a.Start()
	waitFor(t, 5*time.Second, "batch", func() bool { return h.src.ackFloor() == 4 })
	if got := fmt.Sprint(h.store.batches()); got != "[[1 2 3 4]]" {
		t.Fatalf("batches %s", got)
	}
	if testutil.ToFloat64(h.metrics.Rows) != 2 ||
		testutil.ToFloat64(h.metrics.Rejected.WithLabelValues("malformed_json")) != 1 ||
		testutil.ToFloat64(h.metrics.Rejected.WithLabelValues(ReasonRegionMismatch)) != 1 {
		t.Fatalf("metrics: rows %v", testutil.ToFloat64(h.metrics.Rows))
	}
}

func TestRetriesSameBatchUntilStoreRecovers(t *testing.T) {
	h := newHarness(t, Config{BatchSize: 5, BatchWait: time.Hour, RetryMin: time.Millisecond, RetryMax: 4 * time.Millisecond})
	h.store.failing.Store(true)
	h.src.push(1, 5)
	h.a.Start()
	waitFor(t, 5*time.Second, "several failed attempts", func() bool { return h.store.attemptCount() >= 6 })
	if err := h.a.Ready(); err == nil || !strings.Contains(err.Error(), "archive down") {
		t.Fatalf("Ready while failing: %v", err)
	}
	if st := h.a.Status(); !st.StoreDown || st.LastError == "" {
		t.Fatalf("status while failing: %+v", st)
	}
	if testutil.ToFloat64(h.metrics.StoreUp) != 0 {
		t.Fatal("store_up not 0")
	}
	if len(h.src.ackList()) != 0 {
		t.Fatal("acknowledged a batch that did not commit")
	}
	h.src.push(6, 5) // waits in the stream meanwhile
	h.store.failing.Store(false)
	waitFor(t, 5*time.Second, "recovery", func() bool { return h.src.ackFloor() == 10 })

	h.store.mu.Lock()
	attempts := slices.Clone(h.store.attempts)
	ackedEarly := h.store.ackedEarly
	h.store.mu.Unlock()
	for i, a := range attempts[:len(attempts)-1] {
		if fmt.Sprint(a) != fmt.Sprint(seqRange(1, 5)) {
			t.Fatalf("attempt %d wrote %v: every retry must be the same batch", i, a)
		}
	}
	if got := fmt.Sprint(h.store.batches()); got != "[[1 2 3 4 5] [6 7 8 9 10]]" {
		t.Fatalf("committed %s", got)
	}
	if ackedEarly {
		t.Fatal("a batch was acknowledged before it committed")
	}
	if n := h.logs.count("archive down"); n != 1 {
		t.Fatalf(`"archive down" logged %d times, want once`, n)
	}
	if n := h.logs.count("archive recovered"); n != 1 {
		t.Fatalf(`"archive recovered" logged %d times, want once`, n)
	}
	if got, want := testutil.ToFloat64(h.metrics.Errors.WithLabelValues(opWrite)), float64(len(attempts)-2); got != want {
		t.Fatalf("write errors %v, want %v", got, want)
	}
	if err := h.a.Ready(); err != nil {
		t.Fatalf("Ready after recovery: %v", err)
	}
}

func TestStopCommitsAndAcksBatchInHand(t *testing.T) {
	h := newHarness(t, Config{BatchSize: 1000, BatchWait: time.Hour})
	h.a.Start()
	h.src.push(1, 7)
	waitFor(t, 5*time.Second, "messages taken", func() bool { return len(h.src.ch) == 0 })
	if len(h.store.batches()) != 0 {
		t.Fatal("batch written before its time")
	}
	if err := h.a.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(h.store.batches()); got != "[[1 2 3 4 5 6 7]]" {
		t.Fatalf("batches %s", got)
	}
	if h.src.ackFloor() != 7 {
		t.Fatalf("ack floor %d after stop", h.src.ackFloor())
	}
	if h.a.Ready() == nil {
		t.Fatal("ready after stop")
	}
}

func TestStopGivesUpWhenStoreStaysDown(t *testing.T) {
	h := newHarness(t, Config{BatchSize: 3, BatchWait: time.Hour, RetryMin: time.Millisecond, RetryMax: 2 * time.Millisecond})
	h.store.failing.Store(true)
	h.src.push(1, 3)
	h.a.Start()
	waitFor(t, 5*time.Second, "a failed attempt", func() bool { return h.store.attemptCount() >= 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := h.a.Stop(ctx); err == nil {
		t.Fatal("stop reported success with the batch uncommitted")
	}
	if len(h.src.ackList()) != 0 {
		t.Fatal("acknowledged an uncommitted batch")
	}
}

func TestLag(t *testing.T) {
	h := newHarness(t, Config{LagInterval: 5 * time.Millisecond})
	h.src.lag.Store(42)
	h.a.Start()
	waitFor(t, 5*time.Second, "lag 42", func() bool { return h.a.Lag() == 42 })
	if testutil.ToFloat64(h.metrics.Lag) != 42 {
		t.Fatal("lag gauge")
	}
	h.src.lag.Store(0)
	waitFor(t, 5*time.Second, "lag 0", func() bool { return h.a.Lag() == 0 })
}

func TestConfigValidate(t *testing.T) {
	if _, err := New(Config{}, testCatalog, newFakeSource(), &fakeStore{}, NewMetrics(prometheus.NewRegistry()), nil); err == nil {
		t.Fatal("no partitions accepted")
	}
}

func TestModuleLifecycle(t *testing.T) {
	src := newFakeSource()
	store := &fakeStore{src: src}
	var a *Archiver
	app := fxtest.New(t,
		fx.Supply(Config{Partitions: testPartitions, BatchSize: 1000, BatchWait: time.Hour}, testCatalog),
		fx.Provide(
			func() Source { return src },
			func() Store { return store },
			func() prometheus.Registerer { return prometheus.NewRegistry() },
		),
		Module,
		fx.Populate(&a),
	)
	app.RequireStart()
	src.push(1, 4)
	waitFor(t, 5*time.Second, "messages taken", func() bool { return len(src.ch) == 0 })
	if err := a.Ready(); err != nil {
		t.Fatalf("ready: %v", err)
	}
	app.RequireStop() // commits and acknowledges the batch in hand
	if got := fmt.Sprint(store.batches()); got != "[[1 2 3 4]]" || src.ackFloor() != 4 {
		t.Fatalf("after stop: batches %s, ack floor %d", got, src.ackFloor())
	}
}

func TestPrepareRetriedBeforeFirstBatch(t *testing.T) {
	var calls atomic.Int32
	h := newHarness(t, Config{BatchSize: 2, BatchWait: time.Hour, RetryMin: time.Millisecond, RetryMax: 2 * time.Millisecond,
		Prepare: func(context.Context) error {
			if calls.Add(1) < 4 {
				return errors.New("postgres not up yet")
			}
			return nil
		}})
	h.src.push(1, 2)
	h.a.Start()
	waitFor(t, 5*time.Second, "the batch", func() bool { return h.src.ackFloor() == 2 })
	if calls.Load() != 4 || h.store.attemptCount() != 1 {
		t.Fatalf("prepare calls %d, write attempts %d", calls.Load(), h.store.attemptCount())
	}
	if h.logs.count("archive down") != 1 || h.logs.count("archive recovered") != 1 {
		t.Fatal("prepare failures must log once per state change")
	}
}
