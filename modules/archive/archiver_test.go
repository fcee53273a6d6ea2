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

	"github.com/gamemodes/gamemodes/nats/natstest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
)

// fakeSource is a stream: messages appended with push, delivered in order
// from where Open put the cursor; it records acknowledgements.
type fakeSource struct {
	lag atomic.Uint64

	mu       sync.Mutex
	msgs     []Message
	wake     chan struct{} // closed and replaced at every push
	cursor   int           // index of the next message to deliver
	open     bool
	opens    []uint64 // the after argument of every Open
	acks     []uint64 // the last sequence of every Ack
	floor    uint64   // the consumer's ack floor
	identity string
}

func newFakeSource() *fakeSource { return &fakeSource{wake: make(chan struct{}), identity: "stream-1"} }

func (s *fakeSource) Identity(context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.identity, nil
}

func (s *fakeSource) AckFloor(context.Context) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.floor, nil
}

func (s *fakeSource) Open(_ context.Context, after uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opens = append(s.opens, after)
	s.cursor = len(s.msgs)
	for i, m := range s.msgs {
		if m.Seq > after {
			s.cursor = i
			break
		}
	}
	s.floor, s.open = after, true
	return nil
}

func (s *fakeSource) Next(ctx context.Context) (Message, error) {
	for {
		s.mu.Lock()
		if !s.open {
			s.mu.Unlock()
			return Message{}, errors.New("not open")
		}
		if s.cursor < len(s.msgs) {
			m := s.msgs[s.cursor]
			s.cursor++
			s.mu.Unlock()
			return m, nil
		}
		wake := s.wake
		s.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return Message{}, ctx.Err()
		}
	}
}

func (s *fakeSource) Ack(_ context.Context, last Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.acks = append(s.acks, last.Seq)
	s.floor = max(s.floor, last.Seq)
	return nil
}

func (s *fakeSource) Release() {
	s.mu.Lock()
	s.open = false
	s.mu.Unlock()
}

func (s *fakeSource) Lag(context.Context) (uint64, error) { return s.lag.Load(), nil }

func (s *fakeSource) ackFloor() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.floor
}

func (s *fakeSource) ackList() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.acks)
}

func (s *fakeSource) pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.msgs) - s.cursor
}

func (s *fakeSource) add(m Message) {
	s.mu.Lock()
	s.msgs = append(s.msgs, m)
	close(s.wake)
	s.wake = make(chan struct{})
	s.mu.Unlock()
}

// push appends n valid events with sequences from, from+1, ...
func (s *fakeSource) push(from uint64, n int) {
	for i := 0; i < n; i++ {
		seq := from + uint64(i)
		user := fmt.Sprint("u", seq%50)
		s.add(msgFor(seq, "US", user, fmt.Sprintf(`{"event_id":"e%d","user_id":%q,"event_type":"ENTER_GAME_MODE","event_payload":{"game_mode":1,"region":"US"}}`, seq, user)))
	}
}

// fakeDB is an archive database: the lock, the checkpoint and the rows,
// shared by the stores of several archivers.
type fakeDB struct {
	lock    chan struct{} // holds a token while claimed
	failing atomic.Bool

	mu         sync.Mutex
	cp         Checkpoint
	hasCP      bool
	attempts   [][]uint64 // sequences of every write attempt
	committed  [][]uint64
	rows       map[uint64]int // sequence -> times committed
	ackedEarly bool           // a batch was acknowledged before it committed
	src        *fakeSource
}

func newFakeDB(src *fakeSource) *fakeDB {
	return &fakeDB{lock: make(chan struct{}, 1), rows: map[uint64]int{}, src: src}
}

// fakeStore is one archiver's connection to a fakeDB.
type fakeStore struct{ db *fakeDB }

func (s *fakeStore) Claim(ctx context.Context) (Claim, error) {
	if s.db.failing.Load() {
		return nil, errors.New("connection refused")
	}
	select {
	case s.db.lock <- struct{}{}:
		return &fakeClaim{db: s.db}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type fakeClaim struct {
	db       *fakeDB
	released atomic.Bool
}

func (c *fakeClaim) Checkpoint(context.Context) (Checkpoint, bool, error) {
	if c.db.failing.Load() {
		return Checkpoint{}, false, errors.New("connection refused")
	}
	c.db.mu.Lock()
	defer c.db.mu.Unlock()
	return c.db.cp, c.db.hasCP, nil
}

func (c *fakeClaim) WriteBatch(_ context.Context, events []ArchivedEvent, rejected []RejectedEvent, from, to Checkpoint) error {
	seqs := make([]uint64, 0, len(events)+len(rejected))
	for _, e := range events {
		seqs = append(seqs, e.StreamSeq)
	}
	for _, r := range rejected {
		seqs = append(seqs, r.StreamSeq)
	}
	slices.Sort(seqs)
	db := c.db
	db.mu.Lock()
	defer db.mu.Unlock()
	db.attempts = append(db.attempts, seqs)
	if db.src != nil && len(seqs) > 0 && len(db.src.ackList()) > 0 && db.src.ackList()[len(db.src.ackList())-1] >= seqs[0] {
		db.ackedEarly = true
	}
	if db.failing.Load() || c.released.Load() {
		return errors.New("connection refused")
	}
	if (from == Checkpoint{}) != !db.hasCP || (db.hasCP && db.cp != from) {
		return fmt.Errorf("from %+v: %w", from, ErrCheckpointMoved)
	}
	db.cp, db.hasCP = to, true
	db.committed = append(db.committed, seqs)
	for _, s := range seqs {
		db.rows[s]++
	}
	return nil
}

func (c *fakeClaim) Release() {
	if c.released.CompareAndSwap(false, true) {
		<-c.db.lock
	}
}

func (db *fakeDB) batches() [][]uint64 {
	db.mu.Lock()
	defer db.mu.Unlock()
	return slices.Clone(db.committed)
}

func (db *fakeDB) attemptCount() int {
	db.mu.Lock()
	defer db.mu.Unlock()
	return len(db.attempts)
}

func (db *fakeDB) checkpoint() Checkpoint {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.cp
}

// exactlyOnce fails unless sequences from..to were each committed once and
// nothing else was.
func (db *fakeDB) exactlyOnce(t *testing.T, from, to uint64) {
	t.Helper()
	db.mu.Lock()
	defer db.mu.Unlock()
	for s := from; s <= to; s++ {
		if db.rows[s] != 1 {
			t.Fatalf("sequence %d committed %d times; batches %v", s, db.rows[s], db.committed)
		}
	}
	if len(db.rows) != int(to-from+1) {
		t.Fatalf("%d sequences committed, want %d; batches %v", len(db.rows), to-from+1, db.committed)
	}
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
	db      *fakeDB
	metrics *Metrics
	logs    *logBuffer
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	src := newFakeSource()
	return newHarnessOn(t, cfg, src, newFakeDB(src))
}

// newHarnessOn is an archiver on an existing stream and database.
func newHarnessOn(t *testing.T, cfg Config, src *fakeSource, db *fakeDB) *harness {
	t.Helper()
	metrics := NewMetrics(prometheus.NewRegistry())
	logs := &logBuffer{}
	cfg.Partitions = testPartitions
	a, err := New(cfg, testCatalog, src, &fakeStore{db: db}, metrics, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Stop(context.Background()) })
	return &harness{a: a, src: src, db: db, metrics: metrics, logs: logs}
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
	natstest.WaitFor(t, 5*time.Second, "3 batches", func() bool { return len(h.db.batches()) == 3 })
	want := [][]uint64{seqRange(1, 10), seqRange(11, 20), seqRange(21, 30)}
	if got := h.db.batches(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("batches %v, want %v", got, want)
	}
	// One acknowledgement per batch, of its last message, after its commit.
	natstest.WaitFor(t, 5*time.Second, "acks", func() bool { return len(h.src.ackList()) == 3 })
	if got := fmt.Sprint(h.src.ackList()); got != "[10 20 30]" {
		t.Fatalf("acks %v", got)
	}
	if cp := h.db.checkpoint(); cp != (Checkpoint{Stream: "stream-1", Seq: 30}) {
		t.Fatalf("checkpoint %+v", cp)
	}
	if got := testutil.ToFloat64(h.metrics.Rows); got != 30 {
		t.Fatalf("rows metric %v", got)
	}
	if got := testutil.ToFloat64(h.metrics.Batches); got != 3 {
		t.Fatalf("batches metric %v", got)
	}
	if testutil.ToFloat64(h.metrics.Active) != 1 || h.a.Status().Checkpoint != 30 || h.a.Status().Standby {
		t.Fatalf("active %v, status %+v", testutil.ToFloat64(h.metrics.Active), h.a.Status())
	}
}

func TestBatchesByTime(t *testing.T) {
	h := newHarness(t, Config{BatchSize: 1000, BatchWait: 20 * time.Millisecond})
	h.a.Start()
	h.src.push(1, 3)
	natstest.WaitFor(t, 5*time.Second, "first batch", func() bool { return len(h.db.batches()) == 1 })
	h.src.push(4, 2)
	natstest.WaitFor(t, 5*time.Second, "second batch", func() bool { return len(h.db.batches()) == 2 })
	if got := fmt.Sprint(h.db.batches()); got != "[[1 2 3] [4 5]]" {
		t.Fatalf("batches %s", got)
	}
	natstest.WaitFor(t, 5*time.Second, "ack 5", func() bool { return h.src.ackFloor() == 5 })
}

func TestRejectedAreBatchedAndCounted(t *testing.T) {
	h := newHarness(t, Config{BatchSize: 4, BatchWait: time.Hour})
	h.src.push(1, 2)
	h.src.add(msgFor(3, "US", "7", `{`))
	h.src.add(msgFor(4, "EU", "7", `{"user_id":7,"event_type":"ENTER_GAME_MODE","event_payload":{"game_mode":1,"region":"US"}}`))
	h.a.Start()
	natstest.WaitFor(t, 5*time.Second, "batch", func() bool { return h.src.ackFloor() == 4 })
	if got := fmt.Sprint(h.db.batches()); got != "[[1 2 3 4]]" {
		t.Fatalf("batches %s", got)
	}
	if testutil.ToFloat64(h.metrics.Rows) != 2 ||
		testutil.ToFloat64(h.metrics.Rejected.WithLabelValues("malformed_json")) != 1 ||
		testutil.ToFloat64(h.metrics.Rejected.WithLabelValues(ReasonRegionMismatch)) != 1 {
		t.Fatalf("metrics: rows %v", testutil.ToFloat64(h.metrics.Rows))
	}
}

// TestResumesAfterCheckpointWhenStoreRecovers: while the store fails
// nothing is acknowledged; once it is back, the archiver resumes after the
// checkpoint and every message is committed once, in order.
func TestResumesAfterCheckpointWhenStoreRecovers(t *testing.T) {
	h := newHarness(t, Config{BatchSize: 5, BatchWait: time.Hour, RetryMin: time.Millisecond, RetryMax: 4 * time.Millisecond})
	h.src.push(1, 5)
	h.a.Start()
	natstest.WaitFor(t, 5*time.Second, "the first batch", func() bool { return h.src.ackFloor() == 5 })
	h.db.failing.Store(true)
	h.src.push(6, 5)
	natstest.WaitFor(t, 5*time.Second, "a failed write", func() bool { return h.db.attemptCount() >= 2 })
	natstest.WaitFor(t, 5*time.Second, "several claims refused", func() bool { return testutil.ToFloat64(h.metrics.Errors.WithLabelValues(opWrite)) >= 4 })
	if err := h.a.Ready(); err == nil || !strings.Contains(err.Error(), "archive down") {
		t.Fatalf("Ready while failing: %v", err)
	}
	if st := h.a.Status(); !st.StoreDown || st.LastError == "" {
		t.Fatalf("status while failing: %+v", st)
	}
	if testutil.ToFloat64(h.metrics.StoreUp) != 0 || testutil.ToFloat64(h.metrics.Active) != 0 {
		t.Fatal("store_up or active not 0 while the store fails")
	}
	if fmt.Sprint(h.src.ackList()) != "[5]" {
		t.Fatalf("acknowledged %v while the store failed", h.src.ackList())
	}
	h.src.push(11, 5) // waits in the stream meanwhile
	h.db.failing.Store(false)
	natstest.WaitFor(t, 5*time.Second, "recovery", func() bool { return h.src.ackFloor() == 15 })

	if got := fmt.Sprint(h.db.batches()); got != "[[1 2 3 4 5] [6 7 8 9 10] [11 12 13 14 15]]" {
		t.Fatalf("committed %s", got)
	}
	h.db.exactlyOnce(t, 1, 15)
	h.src.mu.Lock()
	opens := slices.Clone(h.src.opens)
	h.src.mu.Unlock()
	if opens[0] != 0 || opens[len(opens)-1] != 5 {
		t.Fatalf("opened after %v: want 0 first, 5 (the checkpoint) on recovery", opens)
	}
	if h.db.ackedEarly {
		t.Fatal("a batch was acknowledged before it committed")
	}
	if n := h.logs.count("archive down"); n != 1 {
		t.Fatalf(`"archive down" logged %d times, want once`, n)
	}
	if n := h.logs.count("archive recovered"); n != 1 {
		t.Fatalf(`"archive recovered" logged %d times, want once`, n)
	}
	if err := h.a.Ready(); err != nil {
		t.Fatalf("Ready after recovery: %v", err)
	}
}

func TestResumesAfterStoredCheckpoint(t *testing.T) {
	src := newFakeSource()
	db := newFakeDB(src)
	db.cp, db.hasCP = Checkpoint{Stream: "stream-1", Seq: 6}, true
	src.floor = 3 // the consumer's floor is behind: the checkpoint decides
	h := newHarnessOn(t, Config{BatchSize: 100, BatchWait: 5 * time.Millisecond}, src, db)
	src.push(1, 10)
	h.a.Start()
	natstest.WaitFor(t, 5*time.Second, "the rest", func() bool { return db.checkpoint().Seq == 10 })
	h.db.exactlyOnce(t, 7, 10)
}

func TestNoCheckpointStartsAfterAckFloor(t *testing.T) {
	src := newFakeSource()
	src.floor = 4 // archived and acknowledged message by message by an older version
	h := newHarnessOn(t, Config{BatchSize: 100, BatchWait: 5 * time.Millisecond}, src, newFakeDB(src))
	src.push(1, 9)
	h.a.Start()
	natstest.WaitFor(t, 5*time.Second, "the rest", func() bool { return h.db.checkpoint().Seq == 9 })
	h.db.exactlyOnce(t, 5, 9)
	if n := h.logs.count("archive has no checkpoint yet: resuming after the durable consumer's acknowledgements"); n != 1 {
		t.Fatalf("upgrade logged %d times", n)
	}
}

func TestStreamCreatedAgainStartsOver(t *testing.T) {
	src := newFakeSource()
	db := newFakeDB(src)
	db.cp, db.hasCP = Checkpoint{Stream: "stream-0", Seq: 500}, true
	h := newHarnessOn(t, Config{BatchSize: 100, BatchWait: 5 * time.Millisecond}, src, db)
	src.push(1, 8)
	h.a.Start()
	natstest.WaitFor(t, 5*time.Second, "the new stream", func() bool { return db.checkpoint() == Checkpoint{Stream: "stream-1", Seq: 8} })
	h.db.exactlyOnce(t, 1, 8)
}

// TestStandbyTakesOver: two archivers on one database; one holds the
// archive, the other waits; when the first stops, the second resumes after
// its checkpoint; every message is committed once.
func TestStandbyTakesOver(t *testing.T) {
	src := newFakeSource()
	db := newFakeDB(src)
	cfg := Config{BatchSize: 3, BatchWait: time.Millisecond, RetryMin: time.Millisecond, RetryMax: 2 * time.Millisecond}
	first := newHarnessOn(t, cfg, src, db)
	first.a.Start()
	src.push(1, 7)
	natstest.WaitFor(t, 5*time.Second, "the first archiver", func() bool { return db.checkpoint().Seq == 7 })
	second := newHarnessOn(t, cfg, src, db)
	second.a.Start()
	natstest.WaitFor(t, 5*time.Second, "the standby", func() bool { return second.a.Status().Standby })
	if err := second.a.Ready(); err != nil {
		t.Fatalf("a standby is ready: %v", err)
	}
	if testutil.ToFloat64(second.metrics.Active) != 0 || testutil.ToFloat64(first.metrics.Active) != 1 {
		t.Fatal("active gauges")
	}
	if err := first.a.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	src.push(8, 5)
	natstest.WaitFor(t, 5*time.Second, "the second archiver", func() bool { return db.checkpoint().Seq == 12 })
	db.exactlyOnce(t, 1, 12)
	if testutil.ToFloat64(second.metrics.Active) != 1 || testutil.ToFloat64(second.metrics.Rows) != 5 {
		t.Fatalf("second: active %v rows %v", testutil.ToFloat64(second.metrics.Active), testutil.ToFloat64(second.metrics.Rows))
	}
}

// TestCheckpointMovedEndsSession: a checkpoint moved behind the archiver's
// back refuses its batch; it resumes from the stored checkpoint.
func TestCheckpointMovedEndsSession(t *testing.T) {
	h := newHarness(t, Config{BatchSize: 2, BatchWait: time.Hour, RetryMin: time.Millisecond, RetryMax: 2 * time.Millisecond})
	h.src.push(1, 2)
	h.a.Start()
	natstest.WaitFor(t, 5*time.Second, "the first batch", func() bool { return h.db.checkpoint().Seq == 2 })
	h.db.mu.Lock()
	h.db.cp.Seq = 3 // as if another archiver had written 3
	h.db.rows[3] = 1
	h.db.mu.Unlock()
	h.src.push(3, 3)
	natstest.WaitFor(t, 5*time.Second, "the rest", func() bool { return h.db.checkpoint().Seq == 5 })
	h.db.exactlyOnce(t, 1, 5)
	if testutil.ToFloat64(h.metrics.Errors.WithLabelValues(opWrite)) != 1 {
		t.Fatalf("write errors %v, want the one refused batch", testutil.ToFloat64(h.metrics.Errors.WithLabelValues(opWrite)))
	}
}

func TestStopCommitsAndAcksBatchInHand(t *testing.T) {
	h := newHarness(t, Config{BatchSize: 1000, BatchWait: time.Hour})
	h.a.Start()
	h.src.push(1, 7)
	natstest.WaitFor(t, 5*time.Second, "messages taken", func() bool { return h.src.pending() == 0 })
	if len(h.db.batches()) != 0 {
		t.Fatal("batch written before its time")
	}
	if err := h.a.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(h.db.batches()); got != "[[1 2 3 4 5 6 7]]" {
		t.Fatalf("batches %s", got)
	}
	if h.src.ackFloor() != 7 || h.db.checkpoint().Seq != 7 {
		t.Fatalf("ack floor %d, checkpoint %d after stop", h.src.ackFloor(), h.db.checkpoint().Seq)
	}
	if h.a.Ready() == nil {
		t.Fatal("ready after stop")
	}
	if len(h.db.lock) != 0 {
		t.Fatal("the archive is still claimed after stop")
	}
}

func TestStopGivesUpWhenStoreStaysDown(t *testing.T) {
	h := newHarness(t, Config{BatchSize: 3, BatchWait: time.Hour, RetryMin: time.Millisecond, RetryMax: 2 * time.Millisecond})
	h.db.failing.Store(true)
	h.src.push(1, 3)
	h.a.Start()
	natstest.WaitFor(t, 5*time.Second, "a failed claim", func() bool { return testutil.ToFloat64(h.metrics.Errors.WithLabelValues(opWrite)) >= 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_ = h.a.Stop(ctx)
	if len(h.src.ackList()) != 0 || len(h.db.batches()) != 0 {
		t.Fatal("acknowledged or committed with the store down")
	}
}

func TestLag(t *testing.T) {
	h := newHarness(t, Config{LagInterval: 5 * time.Millisecond})
	h.src.lag.Store(42)
	h.a.Start()
	natstest.WaitFor(t, 5*time.Second, "lag 42", func() bool { return h.a.Lag() == 42 })
	if testutil.ToFloat64(h.metrics.Lag) != 42 {
		t.Fatal("lag gauge")
	}
	h.src.lag.Store(0)
	natstest.WaitFor(t, 5*time.Second, "lag 0", func() bool { return h.a.Lag() == 0 })
}

func TestConfigValidate(t *testing.T) {
	if _, err := New(Config{}, testCatalog, newFakeSource(), &fakeStore{}, NewMetrics(prometheus.NewRegistry()), nil); err == nil {
		t.Fatal("no partitions accepted")
	}
}

func TestModuleLifecycle(t *testing.T) {
	src := newFakeSource()
	db := newFakeDB(src)
	var a *Archiver
	app := fxtest.New(t,
		fx.Supply(Config{Partitions: testPartitions, BatchSize: 1000, BatchWait: time.Hour}, testCatalog),
		fx.Provide(
			func() Source { return src },
			func() Store { return &fakeStore{db: db} },
			func() prometheus.Registerer { return prometheus.NewRegistry() },
		),
		Module,
		fx.Populate(&a),
	)
	app.RequireStart()
	src.push(1, 4)
	natstest.WaitFor(t, 5*time.Second, "messages taken", func() bool { return src.pending() == 0 })
	if err := a.Ready(); err != nil {
		t.Fatalf("ready: %v", err)
	}
	app.RequireStop() // commits and acknowledges the batch in hand
	if got := fmt.Sprint(db.batches()); got != "[[1 2 3 4]]" || src.ackFloor() != 4 {
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
	natstest.WaitFor(t, 5*time.Second, "the batch", func() bool { return h.src.ackFloor() == 2 })
	if calls.Load() != 4 || h.db.attemptCount() != 1 {
		t.Fatalf("prepare calls %d, write attempts %d", calls.Load(), h.db.attemptCount())
	}
	if h.logs.count("archive down") != 1 || h.logs.count("archive recovered") != 1 {
		t.Fatal("prepare failures must log once per state change")
	}
}

// TestStandbyReadyAfterAStreamFailure: an archiver whose session failed on
// the stream and that now waits as a standby (another archiver took the
// archive meanwhile) is ready; back in a session, the failure counts again
// until the stream works.
func TestStandbyReadyAfterAStreamFailure(t *testing.T) {
	h := newHarness(t, Config{BatchSize: 2, BatchWait: time.Hour, RetryMin: time.Millisecond, RetryMax: 2 * time.Millisecond})
	setRunning := func(v bool) { h.a.mu.Lock(); h.a.running = v; h.a.mu.Unlock() }
	setRunning(true) // the state of a started archiver, without its sessions
	defer setRunning(false)
	h.a.streamFailed(errors.New("no responders"))
	if err := h.a.Ready(); err == nil {
		t.Fatal("an active archiver without its stream is ready")
	}
	h.a.setStandby(true)
	if err := h.a.Ready(); err != nil {
		t.Fatalf("a standby after a stream failure: %v", err)
	}
	h.a.setStandby(false)
	if err := h.a.Ready(); err == nil {
		t.Fatal("back in a session, the stream failure no longer counts")
	}
	h.a.streamOK()
	if err := h.a.Ready(); err != nil {
		t.Fatalf("after the stream works again: %v", err)
	}
}
