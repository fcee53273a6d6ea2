package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/adapters/postgres"
	"github.com/gamemodes/gamemodes/adapters/postgres/pgtest"
	"github.com/gamemodes/gamemodes/modules/archive"
	schema "github.com/gamemodes/gamemodes/sql"
	"github.com/jackc/pgx/v5/pgxpool"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// newArchive returns an archive on a fresh migrated schema and its pool.
func newArchive(t testing.TB) (*postgres.Archive, *pgxpool.Pool) {
	t.Helper()
	url := pgtest.Schema(t)
	ctx := context.Background()
	if _, err := schema.MigrateURL(ctx, url, nil); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	pool, err := postgres.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return postgres.NewArchive(pool), pool
}

var t0 = time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)

func event(i int) archive.ArchivedEvent {
	region := []string{"US", "EU", "BR"}[i%3]
	mode := 1 + i%10
	return archive.ArchivedEvent{
		EventID:    "ev-" + strconv.Itoa(i),
		UserID:     "user" + strconv.Itoa(i%97),
		EventType:  []string{"ENTER_GAME_MODE", "LEAVE_GAME_MODE"}[i%2],
		Payload:    fmt.Appendf(nil, `{"game_mode":%d,"region":%q}`, mode, region),
		Timestamp:  t0.Add(time.Duration(i) * time.Millisecond),
		StreamSeq:  uint64(i + 1),
		Partition:  i % 32,
		Region:     region,
		GameMode:   mode,
		ReceivedAt: t0.Add(time.Duration(i)*time.Millisecond + time.Microsecond),
	}
}

func events(from, n int) []archive.ArchivedEvent {
	out := make([]archive.ArchivedEvent, n)
	for i := range out {
		out[i] = event(from + i)
	}
	return out
}

// writer is a claim of the archive and the checkpoint it moves one step
// per batch.
type writer struct {
	t     testing.TB
	claim archive.Claim
	cp    archive.Checkpoint
}

func newWriter(t testing.TB, a *postgres.Archive) *writer {
	t.Helper()
	c, err := a.Claim(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Release)
	return &writer{t: t, claim: c}
}

// write writes a batch, moving the checkpoint to the next sequence.
func (w *writer) write(events []archive.ArchivedEvent, rejected []archive.RejectedEvent) error {
	to := archive.Checkpoint{Stream: "s1", Seq: w.cp.Seq + 1}
	if err := w.claim.WriteBatch(context.Background(), events, rejected, w.cp, to); err != nil {
		return err
	}
	w.cp = to
	return nil
}

func count(t testing.TB, pool *pgxpool.Pool, query string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := pool.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func TestWriteBatchIdempotent(t *testing.T) {
	a, pool := newArchive(t)
	w := newWriter(t, a)
	ctx := context.Background()
	evs := events(0, 1000)
	rej := []archive.RejectedEvent{
		{StreamSeq: 5000, ReceivedAt: t0, Subject: "3.gamemodes.events.US", MsgID: "m1", Payload: []byte("{"), Reason: "malformed_json", Detail: "x"},
		{StreamSeq: 5001, ReceivedAt: t0, Subject: "gamemodes.events.US.*", Payload: nil, Reason: "invalid_subject"},
	}
	for i := 0; i < 2; i++ {
		if err := w.write(evs, rej); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	// An overlapping batch: half old, half new.
	if err := w.write(events(500, 1000), rej[:1]); err != nil {
		t.Fatal(err)
	}
	if n := count(t, pool, `SELECT count(*) FROM event`); n != 1500 {
		t.Fatalf("event rows %d, want 1500", n)
	}
	if n := count(t, pool, `SELECT count(DISTINCT event_id) FROM event`); n != 1500 {
		t.Fatalf("distinct event ids %d, want 1500", n)
	}
	if n := count(t, pool, `SELECT count(*) FROM rejected_event`); n != 2 {
		t.Fatalf("rejected rows %d, want 2", n)
	}

	// Each row holds exactly what was written.
	e := event(777)
	var (
		userID, eventType, region string
		payload                   map[string]any
		ts                        time.Time
		seq                       int64
		partition, gameMode       int32
		received                  time.Time
	)
	err := pool.QueryRow(ctx, `SELECT user_id, event_type, event_payload, timestamp, stream_seq, partition, region, game_mode, received_at
		FROM event WHERE event_id = $1`, e.EventID).Scan(&userID, &eventType, &payload, &ts, &seq, &partition, &region, &gameMode, &received)
	if err != nil {
		t.Fatal(err)
	}
	if userID != e.UserID || eventType != e.EventType || region != e.Region || int(gameMode) != e.GameMode ||
		uint64(seq) != e.StreamSeq || int(partition) != e.Partition || !ts.Equal(e.Timestamp) || !received.Equal(e.ReceivedAt) ||
		payload["region"] != e.Region || payload["game_mode"] != float64(e.GameMode) {
		t.Fatalf("row %s: %v %v %v %v %v %v %v %v %v", e.EventID, userID, eventType, payload, ts, seq, partition, region, gameMode, received)
	}
	var subject, reason string
	var msgID *string
	var body []byte
	if err := pool.QueryRow(ctx, `SELECT subject, msg_id, payload, reason FROM rejected_event WHERE stream_seq = 5001`).Scan(&subject, &msgID, &body, &reason); err != nil {
		t.Fatal(err)
	}
	if subject != "gamemodes.events.US.*" || msgID != nil || len(body) != 0 || reason != "invalid_subject" {
		t.Fatalf("rejected 5001: %q %v %q %q", subject, msgID, body, reason)
	}
}

func TestWriteBatchDuplicateIDFirstInStreamWins(t *testing.T) {
	a, pool := newArchive(t)
	w := newWriter(t, a)
	ctx := context.Background()
	first, second := event(1), event(2)
	second.EventID = first.EventID
	// The batch lists the later message first: stream order decides.
	if err := w.write([]archive.ArchivedEvent{second, first}, nil); err != nil {
		t.Fatal(err)
	}
	var seq int64
	if err := pool.QueryRow(ctx, `SELECT stream_seq FROM event WHERE event_id = $1`, first.EventID).Scan(&seq); err != nil {
		t.Fatal(err)
	}
	if n := count(t, pool, `SELECT count(*) FROM event`); n != 1 || uint64(seq) != first.StreamSeq {
		t.Fatalf("%d rows, seq %d; want 1 row of seq %d", n, seq, first.StreamSeq)
	}
}

func TestWriteBatchRejectedUnstorableText(t *testing.T) {
	a, pool := newArchive(t)
	w := newWriter(t, a)
	ctx := context.Background()
	rej := []archive.RejectedEvent{{
		StreamSeq: 9, ReceivedAt: t0, Subject: "1.gamemodes.events.US", MsgID: "bad\x00id\xff",
		Payload: []byte("\x00\xff{"), Reason: "malformed_json", Detail: "nul \x00",
	}}
	if err := w.write(nil, rej); err != nil {
		t.Fatalf("a publisher's bytes must not block the archive: %v", err)
	}
	var body []byte
	var msgID string
	if err := pool.QueryRow(ctx, `SELECT payload, msg_id FROM rejected_event`).Scan(&body, &msgID); err != nil {
		t.Fatal(err)
	}
	if string(body) != "\x00\xff{" || msgID != "bad\uFFFDid\uFFFD" {
		t.Fatalf("payload %q msg_id %q", body, msgID)
	}
}

func TestWriteBatchEmpty(t *testing.T) {
	a, pool := newArchive(t)
	w := newWriter(t, a)
	if err := w.write(nil, nil); err != nil {
		t.Fatal(err)
	}
	if n := count(t, pool, `SELECT count(*) FROM archive_checkpoint WHERE last_seq = 1`); n != 1 {
		t.Fatalf("an empty batch moves the checkpoint too: %d rows", n)
	}
}

// TestCheckpointCompareAndSet: a batch commits only from the stored
// checkpoint; from any other, it writes nothing.
func TestCheckpointCompareAndSet(t *testing.T) {
	a, pool := newArchive(t)
	ctx := context.Background()
	w := newWriter(t, a)
	if _, ok, err := w.claim.Checkpoint(ctx); ok || err != nil {
		t.Fatalf("checkpoint of an empty archive: ok %v err %v", ok, err)
	}
	one := archive.Checkpoint{Stream: "s1", Seq: 10}
	if err := w.claim.WriteBatch(ctx, events(0, 10), nil, archive.Checkpoint{}, one); err != nil {
		t.Fatal(err)
	}
	if cp, ok, err := w.claim.Checkpoint(ctx); !ok || err != nil || cp != one {
		t.Fatalf("checkpoint %+v %v %v, want %+v", cp, ok, err, one)
	}
	for _, from := range []archive.Checkpoint{{}, {Stream: "s1", Seq: 9}, {Stream: "s0", Seq: 10}} {
		err := w.claim.WriteBatch(ctx, events(10, 5), nil, from, archive.Checkpoint{Stream: "s1", Seq: 15})
		if !errors.Is(err, archive.ErrCheckpointMoved) {
			t.Fatalf("from %+v: %v, want ErrCheckpointMoved", from, err)
		}
	}
	if n := count(t, pool, `SELECT count(*) FROM event`); n != 10 {
		t.Fatalf("a refused batch wrote rows: %d, want 10", n)
	}
	// A stream created again: the checkpoint moves to the new one.
	two := archive.Checkpoint{Stream: "s2", Seq: 3}
	if err := w.claim.WriteBatch(ctx, events(10, 3), nil, one, two); err != nil {
		t.Fatal(err)
	}
	if cp, _, _ := w.claim.Checkpoint(ctx); cp != two {
		t.Fatalf("checkpoint %+v, want %+v", cp, two)
	}
}

// TestClaimIsExclusive: a second claim waits (in Postgres, on the advisory
// lock) until the first is released, and reads the checkpoint it left.
func TestClaimIsExclusive(t *testing.T) {
	a, pool := newArchive(t)
	ctx := context.Background()
	first, err := a.Claim(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.WriteBatch(ctx, events(0, 3), nil, archive.Checkpoint{}, archive.Checkpoint{Stream: "s", Seq: 3}); err != nil {
		t.Fatal(err)
	}
	got := make(chan archive.Claim, 1)
	go func() {
		c, err := a.Claim(ctx)
		if err != nil {
			t.Error(err)
		}
		got <- c
	}()
	waiting := `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
		AND classid::bigint = $1 AND objid::bigint = hashtext(current_schema())::bigint & 4294967295 AND objsubid = 2`
	for deadline := time.Now().Add(10 * time.Second); count(t, pool, waiting, int64(postgres.ArchiveLockClass)) != 1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the second claim never waited on the lock")
		}
	}
	select {
	case <-got:
		t.Fatal("two claims at once")
	default:
	}
	first.Release()
	var second archive.Claim
	select {
	case second = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the second claim did not get the archive after the first was released")
	}
	defer second.Release()
	if cp, ok, err := second.Checkpoint(ctx); !ok || err != nil || cp.Seq != 3 {
		t.Fatalf("checkpoint %+v %v %v", cp, ok, err)
	}
	// A claim that gives up waiting returns its context's error.
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := a.Claim(cctx); err == nil {
		t.Fatal("a third claim while the second holds the archive")
	}
}

// BenchmarkArchiveWriteBatch measures archive throughput: batches of 5,000
// new events, each in one transaction (COPY into staging, INSERT ... ON
// CONFLICT, the checkpoint moved). Reported as rows/s.
func BenchmarkArchiveWriteBatch(b *testing.B) {
	const batch = 5000
	a, _ := newArchive(b)
	w := newWriter(b, a)
	next := 0
	for b.Loop() {
		b.StopTimer()
		evs := events(next, batch)
		next += batch
		b.StartTimer()
		if err := w.write(evs, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(next)/b.Elapsed().Seconds(), "rows/s")
}
