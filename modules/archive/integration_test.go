package archive_test

// The archiver against a real embedded NATS server and a real Postgres:
// every accepted event lands in table event exactly once, invalid messages
// in rejected_event, through duplicates, a Postgres outage and a restart.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jsadapter "github.com/gamemodes/gamemodes/adapters/jetstream"
	"github.com/gamemodes/gamemodes/adapters/postgres"
	"github.com/gamemodes/gamemodes/adapters/postgres/pgtest"
	"github.com/gamemodes/gamemodes/modules/archive"
	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/nats/natstest"
	"github.com/gamemodes/gamemodes/nats/topology"
	schema "github.com/gamemodes/gamemodes/sql"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

const partitions = 8

var (
	regions = []string{"US", "EU", "BR"}
	catalog = domain.MustCatalog(regions, []int{1, 2, 3})
)

// env is one embedded NATS server with the topology and one migrated
// Postgres schema.
type env struct {
	t       *testing.T
	natsURL string
	js      jetstream.JetStream
	stream  jetstream.Stream
	pgURL   string
	pool    *pgxpool.Pool // for the test's own queries
}

func newEnv(t *testing.T) *env {
	t.Helper()
	pgURL := pgtest.Schema(t) // skips without Postgres, before NATS starts
	ctx := context.Background()
	if _, err := schema.MigrateURL(ctx, pgURL, nil); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	pool, err := postgres.Open(ctx, pgURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	ns := natstest.RunServer(t)
	_, js := natstest.Connect(t, ns.ClientURL())
	if _, err := topology.Ensure(ctx, js, topology.Config{Partitions: partitions}); err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, topology.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, natsURL: ns.ClientURL(), js: js, stream: stream, pgURL: pgURL, pool: pool}
}

// runner is one archiver process: its own NATS connection, feed, pool.
type runner struct {
	nc      *nats.Conn
	feed    *jsadapter.ArchiveFeed
	a       *archive.Archiver
	metrics *archive.Metrics
}

// start runs an archiver on the Postgres at pgURL; wrap, if set, wraps its
// store; ackWait is the consumer's redelivery delay.
func (e *env) start(pgURL string, ackWait time.Duration, wrap func(archive.Store) archive.Store, logs io.Writer) *runner {
	e.t.Helper()
	ctx := context.Background()
	nc, js := natstest.Connect(e.t, e.natsURL)
	feed, err := jsadapter.NewArchiveFeed(ctx, js, jsadapter.ArchiveFeedConfig{AckWait: ackWait, Prefetch: 500})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(feed.Close)
	pool, err := postgres.Open(ctx, pgURL)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(pool.Close)
	var store archive.Store = postgres.NewArchive(pool)
	if wrap != nil {
		store = wrap(store)
	}
	if logs == nil {
		logs = io.Discard
	}
	metrics := archive.NewMetrics(prometheus.NewRegistry())
	a, err := archive.New(archive.Config{
		Partitions: feed.Partitions(), BatchSize: 250, BatchWait: 10 * time.Millisecond,
		RetryMin: 10 * time.Millisecond, RetryMax: 200 * time.Millisecond, WriteTimeout: 5 * time.Second,
		LagInterval: 20 * time.Millisecond,
	}, catalog, feed, store, metrics, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		e.t.Fatal(err)
	}
	a.Start()
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = a.Stop(ctx)
	})
	return &runner{nc: nc, feed: feed, a: a, metrics: metrics}
}

// The ground truth of a workload.

type wantEvent struct {
	seq       uint64
	user      string
	typ       string
	region    string
	mode      int
	timestamp time.Time
}

type workload struct {
	e        *env
	r        *rand.Rand
	k        int
	events   map[string]wantEvent // by event_id
	rejected map[uint64]string    // stream sequence -> reason
	lastSeq  uint64
}

func newWorkload(e *env, seed uint64) *workload {
	return &workload{e: e, r: rand.New(rand.NewPCG(seed, 2)), events: map[string]wantEvent{}, rejected: map[uint64]string{}}
}

func (w *workload) publish(subject, msgID string, data []byte, edge bool) (seq uint64, dup bool) {
	w.e.t.Helper()
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	var opts []jetstream.PublishOpt
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	if edge {
		msg.Header.Set(jsadapter.SourceHeader, "http")
	}
	ack, err := w.e.js.PublishMsg(context.Background(), msg, opts...)
	if err != nil {
		w.e.t.Fatalf("publish %s: %v", subject, err)
	}
	if !ack.Duplicate {
		w.lastSeq = max(w.lastSeq, ack.Sequence)
	}
	return ack.Sequence, ack.Duplicate
}

func (w *workload) streamTime(seq uint64) time.Time {
	w.e.t.Helper()
	m, err := w.e.stream.GetMsg(context.Background(), seq)
	if err != nil {
		w.e.t.Fatalf("get message %d: %v", seq, err)
	}
	return m.Time
}

func (w *workload) user() string {
	switch n := w.r.IntN(400); {
	case n < 10:
		return "player " + strconv.Itoa(n) + "@x" // needs a base64 token
	default:
		return "u" + strconv.Itoa(n)
	}
}

// otherToken returns a user token in a different partition than user's.
func otherToken(user string) string {
	p := domain.PartitionOf(domain.UserToken(user), partitions)
	for i := 0; ; i++ {
		if tok := "x" + strconv.Itoa(i); domain.PartitionOf(tok, partitions) != p {
			return tok
		}
	}
}

func body(id, user, typ, region string, mode int, ts string) []byte {
	var b bytes.Buffer
	b.WriteString("{")
	if id != "" {
		fmt.Fprintf(&b, `"event_id":%q,`, id)
	}
	if n, err := strconv.Atoi(user); err == nil && strconv.Itoa(n) == user {
		fmt.Fprintf(&b, `"user_id":%d,`, n)
	} else {
		fmt.Fprintf(&b, `"user_id":%q,`, user)
	}
	fmt.Fprintf(&b, `"event_type":%q,"event_payload":{"game_mode":%d,"region":%q}`, typ, mode, region)
	if ts != "" {
		fmt.Fprintf(&b, `,"timestamp":%s`, ts)
	}
	b.WriteString("}")
	return b.Bytes()
}

// add publishes n items of mixed kinds and records what the archive must hold.
func (w *workload) add(n int) {
	for i := 0; i < n; i++ {
		w.k++
		k := w.k
		user, region, mode := w.user(), regions[w.r.IntN(len(regions))], 1+w.r.IntN(3)
		typ := []string{"ENTER_GAME_MODE", "LEAVE_GAME_MODE"}[w.r.IntN(2)]
		subject := topology.EventSubject(region, domain.UserToken(user))
		ts := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC).Add(time.Duration(k) * time.Second)
		tsJSON := strconv.Quote(ts.Format(time.RFC3339))
		valid := func(id string, seq uint64, ts time.Time) {
			w.events[id] = wantEvent{seq: seq, user: user, typ: typ, region: region, mode: mode, timestamp: ts}
		}
		switch kind := w.r.IntN(20); {
		case kind < 6: // the edge: canonical, event_id = Nats-Msg-Id, source header
			id := "ev-" + strconv.Itoa(k)
			seq, _ := w.publish(subject, id, body(id, user, typ, region, mode, tsJSON), true)
			valid(id, seq, ts)
		case kind < 10: // a game server with an event_id and the same Nats-Msg-Id, epoch seconds
			id := "gs-" + strconv.Itoa(k)
			seq, _ := w.publish(subject, id, body(id, user, typ, region, mode, strconv.FormatInt(ts.Unix(), 10)), false)
			valid(id, seq, ts)
			if w.r.IntN(3) == 0 { // a retry with the same Nats-Msg-Id: the stream drops it
				if _, dup := w.publish(subject, id, body(id, user, typ, region, mode, tsJSON), false); !dup {
					w.e.t.Fatal("retry with the same Nats-Msg-Id stored twice")
				}
			}
		case kind < 12: // one event_id under two Nats-Msg-Ids: both stored, the first wins
			id := "dup-" + strconv.Itoa(k)
			seq, _ := w.publish(subject, id+"-a", body(id, user, typ, region, mode, tsJSON), false)
			valid(id, seq, ts)
			w.publish(subject, id+"-b", body(id, user, typ, region, 1+mode%3, tsJSON), false)
		case kind < 14: // no event_id: the Nats-Msg-Id is the id
			id := "mid-" + strconv.Itoa(k)
			seq, _ := w.publish(subject, id, body("", user, typ, region, mode, tsJSON), false)
			valid(id, seq, ts)
		case kind < 16: // no event_id, no Nats-Msg-Id, no timestamp: derived id, stream time
			seq, _ := w.publish(subject, "", body("", user, typ, region, mode, ""), false)
			st := w.streamTime(seq)
			valid(archive.DerivedEventID(seq, st), seq, st.UTC().Truncate(time.Microsecond))
		case kind == 16:
			seq, _ := w.publish(subject, "bad-"+strconv.Itoa(k), []byte(`{"user_id":`), false)
			w.rejected[seq] = domain.CodeMalformedJSON
		case kind == 17:
			other := regions[(slicesIndex(regions, region)+1)%len(regions)]
			seq, _ := w.publish(topology.EventSubject(other, domain.UserToken(user)), "", body("rm-"+strconv.Itoa(k), user, typ, region, mode, tsJSON), false)
			w.rejected[seq] = archive.ReasonRegionMismatch
		case kind == 18:
			seq, _ := w.publish(topology.EventSubject(region, otherToken(user)), "", body("pm-"+strconv.Itoa(k), user, typ, region, mode, tsJSON), false)
			w.rejected[seq] = archive.ReasonPartitionMismatch
		default:
			seq, _ := w.publish(subject, "", body("gm-"+strconv.Itoa(k), user, typ, region, 7, tsJSON), false)
			w.rejected[seq] = domain.CodeInvalidGameMode
		}
	}
}

func slicesIndex(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func (e *env) count(q string) int {
	e.t.Helper()
	var n int
	if err := e.pool.QueryRow(context.Background(), q).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", q, err)
	}
	return n
}

// waitArchived waits until the archive holds as many rows as w expects and
// the consumer acknowledged the whole stream, then checks every row.
func (w *workload) waitArchived(within time.Duration) {
	e := w.e
	e.t.Helper()
	ctx := context.Background()
	cons, err := e.js.Consumer(ctx, topology.EventsStream, jsadapter.ArchiveConsumer)
	if err != nil {
		e.t.Fatal(err)
	}
	deadline := time.Now().Add(within)
	for {
		info, err := cons.Info(ctx)
		events, rejected := e.count(`SELECT count(*) FROM event`), e.count(`SELECT count(*) FROM rejected_event`)
		if err == nil && info.AckFloor.Stream == w.lastSeq && events == len(w.events) && rejected == len(w.rejected) &&
			e.count(`SELECT coalesce(max(last_seq), 0) FROM archive_checkpoint`) == int(w.lastSeq) {
			break
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("not archived in %s: %d/%d events, %d/%d rejected, consumer %+v %v",
				within, events, len(w.events), rejected, len(w.rejected), info, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	w.check()
}

// check compares the archive with the ground truth, row by row.
func (w *workload) check() {
	e := w.e
	e.t.Helper()
	ctx := context.Background()
	rows, err := e.pool.Query(ctx, `SELECT event_id, stream_seq, user_id, event_type, region, game_mode,
		event_payload->>'region', (event_payload->>'game_mode')::int, timestamp, partition FROM event`)
	if err != nil {
		e.t.Fatal(err)
	}
	seen := map[string]bool{}
	for rows.Next() {
		var id, user, typ, region, pregion string
		var seq int64
		var mode, pmode, partition int32
		var ts time.Time
		if err := rows.Scan(&id, &seq, &user, &typ, &region, &mode, &pregion, &pmode, &ts, &partition); err != nil {
			e.t.Fatal(err)
		}
		want, ok := w.events[id]
		switch {
		case !ok:
			e.t.Errorf("event %s (seq %d) archived but not accepted", id, seq)
		case seen[id]:
			e.t.Errorf("event %s archived twice", id)
		case uint64(seq) != want.seq || user != want.user || typ != want.typ || region != want.region || int(mode) != want.mode ||
			pregion != want.region || int(pmode) != want.mode || !ts.Equal(want.timestamp) ||
			int(partition) != domain.PartitionOf(domain.UserToken(want.user), partitions):
			e.t.Errorf("event %s: seq %d user %q %s %s/%d payload %s/%d ts %v partition %d; want %+v",
				id, seq, user, typ, region, mode, pregion, pmode, ts, partition, want)
		}
		seen[id] = true
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	if len(seen) != len(w.events) {
		e.t.Errorf("%d events archived, want %d", len(seen), len(w.events))
	}
	rows, err = e.pool.Query(ctx, `SELECT stream_seq, reason FROM rejected_event`)
	if err != nil {
		e.t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		var seq int64
		var reason string
		if err := rows.Scan(&seq, &reason); err != nil {
			e.t.Fatal(err)
		}
		if w.rejected[uint64(seq)] != reason {
			e.t.Errorf("rejected seq %d reason %q, want %q", seq, reason, w.rejected[uint64(seq)])
		}
		n++
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	if n != len(w.rejected) {
		e.t.Errorf("%d rejected rows, want %d", n, len(w.rejected))
	}
}

func rejectedTotal(m *archive.Metrics) float64 {
	total := 0.0
	for _, r := range []string{domain.CodeMalformedJSON, archive.ReasonRegionMismatch, archive.ReasonPartitionMismatch, domain.CodeInvalidGameMode} {
		total += testutil.ToFloat64(m.Rejected.WithLabelValues(r))
	}
	return total
}

func TestArchiveExactlyOnce(t *testing.T) {
	e := newEnv(t)
	w := newWorkload(e, 1)
	w.add(1500)                                     // a backlog before the archiver starts
	r := e.start(e.pgURL, 10*time.Second, nil, nil) // no redelivery: the metrics are exact
	w.add(1500)                                     // and live traffic
	w.waitArchived(20 * time.Second)
	if len(w.rejected) == 0 || len(w.events) < 2000 {
		t.Fatalf("workload too tame: %d events, %d rejected", len(w.events), len(w.rejected))
	}
	if got := testutil.ToFloat64(r.metrics.Rows); got != float64(len(w.events)+w.dupLosers()) {
		t.Errorf("rows metric %v, want %d", got, len(w.events)+w.dupLosers())
	}
	if got := rejectedTotal(r.metrics); got != float64(len(w.rejected)) {
		t.Errorf("rejected metric %v, want %d", got, len(w.rejected))
	}
	deadline := time.Now().Add(5 * time.Second)
	for r.a.Lag() != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if r.a.Lag() != 0 || r.a.Ready() != nil {
		t.Fatalf("lag %d, ready %v", r.a.Lag(), r.a.Ready())
	}
	t.Logf("%d stream messages: %d events, %d rejected", w.lastSeq, len(w.events), len(w.rejected))
}

// dupLosers is the number of stored messages whose event_id an earlier
// message already had (they reach the store and are ignored).
func (w *workload) dupLosers() int {
	n := 0
	for id := range w.events {
		if strings.HasPrefix(id, "dup-") {
			n++
		}
	}
	return n
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) count(msg string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.buf.String(), `msg="`+msg+`"`)
}

func TestArchivePostgresOutage(t *testing.T) {
	e := newEnv(t)
	proxy := pgtest.NewProxy(t, e.pgURL)
	logs := &syncBuffer{}
	r := e.start(proxy.URL(e.pgURL), 500*time.Millisecond, nil, logs)
	w := newWorkload(e, 2)
	w.add(500)
	w.waitArchived(20 * time.Second)

	proxy.Cut()
	w.add(500) // ingestion goes on: the events wait in the stream
	natstest.WaitFor(t, 10*time.Second, "the archiver to notice", func() bool {
		err := r.a.Ready()
		return err != nil && strings.Contains(err.Error(), "archive down")
	})
	natstest.WaitFor(t, 10*time.Second, "the lag to show the backlog", func() bool { return r.a.Lag() > 0 })
	natstest.WaitFor(t, 10*time.Second, "some retries", func() bool { return testutil.ToFloat64(r.metrics.Errors.WithLabelValues("write")) >= 3 })
	if testutil.ToFloat64(r.metrics.StoreUp) != 0 {
		t.Fatal("store_up should be 0 while Postgres is away")
	}
	w.add(500)
	// Stay down until the messages the archiver had in hand are due again:
	// it gave the feed up when the write failed (no pull waiting), with
	// messages delivered and unacknowledged, the last delivered more than
	// the consumer's AckWait ago. (No redelivery comes while it is down:
	// nobody pulls; its next session positions the consumer at the
	// checkpoint, and what the server still counts as in flight must not
	// be archived twice.)
	natstest.WaitFor(t, 10*time.Second, "the messages in hand to be past AckWait, unpulled", func() bool {
		c, err := e.stream.Consumer(context.Background(), jsadapter.ArchiveConsumer)
		if err != nil {
			return false
		}
		info, err := c.Info(context.Background())
		return err == nil && info.NumWaiting == 0 && info.NumAckPending > 0 &&
			info.Delivered.Last != nil && time.Since(*info.Delivered.Last) > info.Config.AckWait
	})
	proxy.Restore()

	w.waitArchived(30 * time.Second)
	natstest.WaitFor(t, 5*time.Second, "ready", func() bool { return r.a.Ready() == nil })
	if n := logs.count("archive down"); n != 1 {
		t.Errorf(`"archive down" logged %d times, want 1`, n)
	}
	if n := logs.count("archive recovered"); n != 1 {
		t.Errorf(`"archive recovered" logged %d times, want 1`, n)
	}
	t.Logf("%d write errors during the outage; %d events, %d rejected", int(testutil.ToFloat64(r.metrics.Errors.WithLabelValues("write"))), len(w.events), len(w.rejected))
}

// crashAfter is a store whose claims commit n batches, then cut the
// archiver's NATS connection before it can acknowledge and write nothing
// more: a process killed (kill -9) right after a commit, with more messages
// pulled ahead in hand. Its claims stay held, as a dead process's session
// would until Postgres notices: released only when the archiver stops.
type crashAfter struct {
	inner   archive.Store
	n       int32
	batches atomic.Int32
	crash   func()
	crashed chan struct{}
}

func (c *crashAfter) Claim(ctx context.Context) (archive.Claim, error) {
	cl, err := c.inner.Claim(ctx)
	if err != nil {
		return nil, err
	}
	return &crashClaim{Claim: cl, c: c}, nil
}

type crashClaim struct {
	archive.Claim
	c *crashAfter
}

func (cc *crashClaim) WriteBatch(ctx context.Context, events []archive.ArchivedEvent, rejected []archive.RejectedEvent, from, to archive.Checkpoint) error {
	c := cc.c
	if c.batches.Load() >= c.n {
		return errors.New("dead") // the process is gone: nothing more is written
	}
	if err := cc.Claim.WriteBatch(ctx, events, rejected, from, to); err != nil {
		return err
	}
	if c.batches.Add(1) == c.n {
		c.crash()
		close(c.crashed)
	}
	return nil
}

// TestArchiveRestartMidStream: an archiver dies right after committing a
// batch (not acknowledged; more messages pulled in hand); the next one
// resumes after the checkpoint, which names the committed batch, and every
// event ends in the archive once.
func TestArchiveRestartMidStream(t *testing.T) {
	e := newEnv(t)
	w := newWorkload(e, 3)
	w.add(2000)
	var first *runner
	started := make(chan struct{})
	crash := &crashAfter{n: 3, crashed: make(chan struct{})}
	crash.crash = func() { <-started; first.nc.Close() }
	first = e.start(e.pgURL, 500*time.Millisecond, func(s archive.Store) archive.Store { crash.inner = s; return crash }, nil)
	close(started)
	select {
	case <-crash.crashed:
	case <-time.After(20 * time.Second):
		t.Fatal("the archiver never wrote 3 batches")
	}
	ctx := context.Background()
	cons, err := e.js.Consumer(ctx, topology.EventsStream, jsadapter.ArchiveConsumer)
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkpoint := uint64(e.count(`SELECT last_seq FROM archive_checkpoint`))
	// The third batch is committed (the checkpoint names it) but not acknowledged ...
	if info.AckFloor.Stream >= checkpoint {
		t.Fatalf("ack floor %d, checkpoint %d: the crash left no committed batch unacknowledged", info.AckFloor.Stream, checkpoint)
	}
	// ... and messages after it were delivered and never written: a
	// successor resuming from the consumer's cumulative acknowledgement of
	// them would lose them.
	if info.Delivered.Stream <= checkpoint {
		t.Fatalf("delivered %d, checkpoint %d: the crash left no message in hand", info.Delivered.Stream, checkpoint)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_ = first.a.Stop(cctx) // killed: the batches it had in hand are not written; its claim goes

	w.add(500)
	second := e.start(e.pgURL, 500*time.Millisecond, nil, nil)
	w.waitArchived(30 * time.Second)
	// The second archiver wrote exactly the messages after the checkpoint.
	if got, want := testutil.ToFloat64(second.metrics.Rows)+rejectedTotal(second.metrics), float64(w.lastSeq-checkpoint); got != want {
		t.Errorf("second archiver wrote %v rows, want the %v messages after the checkpoint", got, want)
	}
	t.Logf("crash left sequences %d-%d committed but unacknowledged, %d-%d pulled but not written; %d events, %d rejected in the end",
		info.AckFloor.Stream+1, checkpoint, checkpoint+1, info.Delivered.Stream, len(w.events), len(w.rejected))
}

// TestTwoArchiversAtOnce: two archivers start together on one archive; one
// archives, the other waits as a standby; when the active one stops, the
// standby takes over where it left; every event is archived once.
func TestTwoArchiversAtOnce(t *testing.T) {
	e := newEnv(t)
	w := newWorkload(e, 4)
	w.add(1000)
	var rs [2]*runner
	var wg sync.WaitGroup
	for i := range rs {
		wg.Go(func() { rs[i] = e.start(e.pgURL, 10*time.Second, nil, nil) })
	}
	wg.Wait()
	w.add(1000)
	w.waitArchived(30 * time.Second)
	active := func(r *runner) bool { return testutil.ToFloat64(r.metrics.Active) == 1 }
	natstest.WaitFor(t, 5*time.Second, "one active archiver and one standby", func() bool {
		return active(rs[0]) != active(rs[1]) && (rs[0].a.Status().Standby || rs[1].a.Status().Standby)
	})
	on, off := rs[0], rs[1]
	if !active(on) {
		on, off = off, on
	}
	if got := testutil.ToFloat64(off.metrics.Rows) + rejectedTotal(off.metrics); got != 0 {
		t.Fatalf("the standby wrote %v rows", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := on.a.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	before := uint64(e.count(`SELECT last_seq FROM archive_checkpoint`))
	w.add(700)
	w.waitArchived(30 * time.Second)
	if !active(off) {
		t.Fatal("the standby did not take over")
	}
	if got, want := testutil.ToFloat64(off.metrics.Rows)+rejectedTotal(off.metrics), float64(w.lastSeq-before); got != want {
		t.Errorf("the standby wrote %v rows after taking over, want the %v messages after the checkpoint", got, want)
	}
}

// BenchmarkArchiver measures the archiver end to end: b.N valid events are
// stored in the stream first, then the clock runs from the archiver's start
// until every one is committed to Postgres and acknowledged (batches of
// 5,000, one cumulative acknowledgement per batch).
func BenchmarkArchiver(b *testing.B) {
	pgURL := pgtest.Schema(b)
	ctx := context.Background()
	if _, err := schema.MigrateURL(ctx, pgURL, nil); err != nil {
		b.Fatal(err)
	}
	ns := natstest.RunServer(b)
	_, js := natstest.Connect(b, ns.ClientURL())
	if _, err := topology.Ensure(ctx, js, topology.Config{Partitions: 32}); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		user := "u" + strconv.Itoa(i%100000)
		id := "b-" + strconv.Itoa(i)
		if _, err := js.PublishAsync(topology.EventSubject("US", user), body(id, user, "ENTER_GAME_MODE", "US", 1+i%3, `"2026-11-26T01:00:00Z"`), jetstream.WithMsgID(id)); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("publish timeout")
	}
	feed, err := jsadapter.NewArchiveFeed(ctx, js, jsadapter.ArchiveFeedConfig{})
	if err != nil {
		b.Fatal(err)
	}
	defer feed.Close()
	pool, err := postgres.Open(ctx, pgURL)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	a, err := archive.New(archive.Config{Partitions: feed.Partitions(), LagInterval: 10 * time.Millisecond}, catalog, feed, postgres.NewArchive(pool),
		archive.NewMetrics(prometheus.NewRegistry()), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	cons, err := js.Consumer(ctx, topology.EventsStream, jsadapter.ArchiveConsumer)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	a.Start()
	for {
		info, err := cons.Info(ctx)
		if err == nil && info.AckFloor.Stream == uint64(b.N) {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	_ = a.Stop(ctx)
}
