package partition_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/modules/eventmetrics"
	"github.com/gamemodes/gamemodes/modules/partition"
	"github.com/gamemodes/gamemodes/modules/partition/partitiontest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The owner's unit tests: an owner on the in-memory fakes, driven by the
// fake clock, so TTLs, retries and pacing take no wall-clock time.

var (
	catalog = domain.MustCatalog([]string{"US", "EU"}, []int{1, 2})
	t0      = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
)

const ttl = 10 * time.Second

// world is one partitioned stream and store shared by the owners of a test.
type world struct {
	t          *testing.T
	partitions int
	clock      *partitiontest.Clock
	store      *partitiontest.Store
	feed       *partitiontest.Feed
	reg        *prometheus.Registry
	events     *eventmetrics.Metrics
	metrics    *partition.Metrics
}

func newWorld(t *testing.T, partitions int) *world {
	clock := partitiontest.NewClock(t0)
	w := &world{t: t, partitions: partitions, clock: clock,
		store: partitiontest.NewStore(partitiontest.WithClock(clock), partitiontest.WithTTL(ttl)),
		feed:  partitiontest.NewFeed(partitions, clock), reg: prometheus.NewRegistry()}
	t.Cleanup(w.store.Close)
	w.events = eventmetrics.New(w.reg)
	w.metrics = partition.NewMetrics(w.reg, w.events)
	return w
}

func (w *world) config(id string) partition.OwnerConfig {
	return partition.OwnerConfig{OwnerID: id, Partitions: w.partitions, PlayerTTL: ttl, Clock: w.clock}
}

// running is an owner being run.
type running struct {
	w      *world
	p      int
	cancel context.CancelFunc
	done   chan error
}

// start runs an owner of partition p; the test's end stops it.
func (w *world) start(p int, cfg partition.OwnerConfig) *running {
	o := partition.NewOwner(p, cfg, catalog, w.store, w.feed, w.metrics, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{w: w, p: p, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- o.Run(ctx) }()
	w.t.Cleanup(func() {
		cancel()
		w.clock.Advance(time.Hour) // past any drain deadline
	})
	return r
}

// stop asks the owner to hand over and returns how Run ended.
func (r *running) stop() error {
	r.cancel()
	return r.result()
}

// result waits for Run to end, advancing the clock so that pacing timers fire.
func (r *running) result() error {
	r.w.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		select {
		case err := <-r.done:
			return err
		case <-time.After(100 * time.Microsecond):
		}
		if time.Now().After(deadline) {
			r.w.t.Fatal("owner did not return")
		}
		r.w.clock.Advance(time.Millisecond)
	}
}

// until waits for cond, advancing the clock a millisecond at a time (shard
// writes are paced by the clock).
func (w *world) until(what string, cond func() bool) {
	w.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			w.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Microsecond)
		w.clock.Advance(time.Millisecond)
	}
}

// send publishes an event of user as a game server does.
func (w *world) send(user, typ, region string, mode int) uint64 {
	body := fmt.Sprintf(`{"user_id":%q,"event_type":%q,"event_payload":{"game_mode":%d,"region":%q}}`, user, typ, mode, region)
	return w.feed.Publish(region, domain.UserToken(user), []byte(body))
}

func (w *world) enter(user, region string, mode int) uint64 {
	return w.send(user, "ENTER_GAME_MODE", region, mode)
}

// userIn returns a user of partition p.
func (w *world) userIn(p, i int) string {
	for n := 0; ; n++ {
		u := fmt.Sprintf("user-%d-%d", i, n)
		if domain.PartitionOf(domain.UserToken(u), w.partitions) == p {
			return u
		}
	}
}

// shard decodes partition p's stored count shard.
func (w *world) shard(p int) (domain.ShardHeader, domain.Counts, bool) {
	v, _ := w.store.Shard(p)
	if v == nil {
		return domain.ShardHeader{}, domain.Counts{}, false
	}
	h, counts, _, err := catalog.DecodeShard(v)
	if err != nil {
		w.t.Fatalf("stored shard: %v", err)
	}
	return h, counts, true
}

func (w *world) count(p int, region string, mode int) int64 {
	_, counts, ok := w.shard(p)
	if !ok {
		return 0
	}
	slot, _ := catalog.SlotOf(region, mode)
	return counts.Get(slot)
}

// shows waits until p's shard says counts for US/1 and US/2 and an applied sequence.
func (w *world) shows(p int, us1, us2 int64, applied uint64) {
	w.t.Helper()
	w.until(fmt.Sprintf("partition %d shows US/1=%d US/2=%d applied %d", p, us1, us2, applied), func() bool {
		h, _, ok := w.shard(p)
		return ok && h.AppliedSeq == applied && w.count(p, "US", 1) == us1 && w.count(p, "US", 2) == us2
	})
}

func metric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

func TestOwnerAppliesEventsAndWritesPlayers(t *testing.T) {
	w := newWorld(t, 1)
	w.start(0, w.config("a"))
	w.enter("alice", "US", 1)
	w.enter("bob", "US", 1)
	w.enter("alice", "US", 2) // moves
	last := w.send("bob", "LEAVE_GAME_MODE", "US", 1)
	w.shows(0, 0, 1, last)
	v, ok := w.store.Player(0, "alice")
	if !ok {
		t.Fatal("alice's state was not written")
	}
	if st, err := catalog.DecodePlayer(v); err != nil || !st.Present || st.LastSeq != 3 {
		t.Fatalf("alice stored as %+v, %v", st, err)
	}
	if got := metric(t, w.reg, "gamemodes_events_accepted_total"); got != 4 {
		t.Fatalf("accepted %v events from NATS, want 4", got)
	}
}

// The expiry wheel: a player not written for the TTL leaves their mode;
// any event of theirs restarts the TTL.
func TestOwnerExpiresPlayersAtTheirTTL(t *testing.T) {
	w := newWorld(t, 1)
	w.start(0, w.config("a"))
	w.enter("alice", "US", 1)
	seq := w.enter("bob", "US", 1)
	w.shows(0, 2, 0, seq)
	w.clock.Advance(8 * time.Second)
	seq = w.enter("alice", "US", 1) // refreshes alice
	w.shows(0, 2, 0, seq)
	w.clock.Advance(3 * time.Second) // bob's TTL has run out, not alice's
	w.shows(0, 1, 0, seq)
	if _, ok := w.store.Player(0, "alice"); !ok {
		t.Fatal("alice not stored")
	}
	w.clock.Advance(8 * time.Second) // alice's too
	w.shows(0, 0, 0, seq)
	if got := testutil.ToFloat64(w.metrics.ExpiriesCounter()); got != 2 {
		t.Fatalf("%v expiries, want 2", got)
	}
}

// An event arriving after the player's stored state expired, before the
// wheel's tick, comes after the expiry.
func TestOwnerExpiresBeforeALateEvent(t *testing.T) {
	w := newWorld(t, 1)
	r := w.start(0, w.config("a"))
	seq := w.enter("alice", "US", 1)
	w.shows(0, 1, 0, seq)
	w.clock.Advance(ttl) // no tick read yet: the event comes first
	seq = w.send("alice", "LEAVE_GAME_MODE", "US", 1)
	w.shows(0, 0, 0, seq)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
}

// The applied sequence in the shard (the watermark) covers only events
// whose player writes are acknowledged; the counts already include the
// events delivered.
func TestOwnerWatermarkWaitsForPlayerWrites(t *testing.T) {
	w := newWorld(t, 1)
	w.start(0, w.config("a"))
	first := w.enter("alice", "US", 1)
	w.shows(0, 1, 0, first)
	w.store.Hold()
	w.enter("bob", "US", 1)
	last := w.enter("carol", "US", 2)
	w.until("the shard counts bob and carol", func() bool {
		h, _, _ := w.shard(0)
		return h.DeliveredSeq == last && w.count(0, "US", 1) == 2 && w.count(0, "US", 2) == 1
	})
	if h, _, _ := w.shard(0); h.AppliedSeq != first {
		t.Fatalf("applied sequence %d while bob's and carol's writes wait, want %d", h.AppliedSeq, first)
	}
	if got := metric(t, w.reg, "gamemodes_partition_durable_lag_events"); got != 2 {
		t.Fatalf("durable lag %v events, want 2", got)
	}
	w.store.Release()
	w.shows(0, 2, 1, last)
	w.until("no durable lag", func() bool { return metric(t, w.reg, "gamemodes_partition_durable_lag_events") == 0 })
}

func TestOwnerIsFenced(t *testing.T) {
	t.Run("ByAClaimOfItsPartition", func(t *testing.T) {
		w := newWorld(t, 1)
		r := w.start(0, w.config("a"))
		seq := w.enter("alice", "US", 1)
		w.shows(0, 1, 0, seq)
		if _, err := w.store.Claim(context.Background(), 0, "b"); err != nil {
			t.Fatal(err)
		}
		w.enter("bob", "US", 1)
		if err := r.result(); !errors.Is(err, partition.ErrFenced) {
			t.Fatalf("owner ended with %v, want ErrFenced", err)
		}
		if _, ok := w.store.Player(0, "bob"); ok {
			t.Fatal("a fenced owner stored a player")
		}
	})
	t.Run("ByAShardWrittenOverIt", func(t *testing.T) {
		w := newWorld(t, 1)
		r := w.start(0, w.config("a"))
		seq := w.enter("alice", "US", 1)
		w.shows(0, 1, 0, seq)
		_, rev := w.store.Shard(0)
		done := make(chan error, 1)
		w.store.WriteShard(0, []byte("another owner's"), rev, func(_ uint64, err error) { done <- err })
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		w.enter("bob", "US", 1)
		if err := r.result(); !errors.Is(err, partition.ErrFenced) {
			t.Fatalf("owner ended with %v, want ErrFenced", err)
		}
	})
}

// One batch in flight (a replicated bucket): a batch refused as busy, or
// whose outcome is unknown, is sent again; pipelined batches cannot be,
// and the owner fails (to reload).
func TestOwnerResendsARefusedBatch(t *testing.T) {
	busy := fmt.Errorf("%w: 10164", partition.ErrBusy)
	t.Run("OneInFlight", func(t *testing.T) {
		w := newWorld(t, 1)
		cfg := w.config("a")
		cfg.Writes = partition.WriteLimits{MaxBatch: 100, MaxInflight: 1}
		w.start(0, cfg)
		w.store.FailPlayerWrites(busy, busy, errors.New("acknowledgement lost"))
		seq := w.enter("alice", "US", 1)
		w.until("alice stored", func() bool { _, ok := w.store.Player(0, "alice"); return ok })
		w.shows(0, 1, 0, seq)
		if got := metric(t, w.reg, "gamemodes_write_busy_retries_total"); got < 3 {
			t.Fatalf("%v resends counted, want 3", got)
		}
	})
	t.Run("Pipelined", func(t *testing.T) {
		w := newWorld(t, 1)
		cfg := w.config("a")
		cfg.Writes = partition.WriteLimits{MaxBatch: 100, MaxInflight: 4}
		r := w.start(0, cfg)
		w.store.FailPlayerWrites(busy)
		w.enter("alice", "US", 1)
		if err := r.result(); err == nil || !errors.Is(err, partition.ErrBusy) || errors.Is(err, partition.ErrFenced) {
			t.Fatalf("owner ended with %v, want the busy error", err)
		}
	})
}

// Hand-over: a stopping owner finishes its writes and flushes; the next
// owner loads the same counts and goes on from the applied sequence.
func TestOwnerHandsOver(t *testing.T) {
	w := newWorld(t, 1)
	a := w.start(0, w.config("a"))
	w.enter("alice", "US", 1)
	w.enter("bob", "US", 2)
	seq := w.enter("carol", "US", 1)
	w.shows(0, 2, 1, seq)
	if err := a.stop(); err != nil {
		t.Fatalf("hand-over: %v", err)
	}
	w.enter("dave", "US", 2) // stored while nobody owns the partition
	w.start(0, w.config("b"))
	seq = w.send("alice", "LEAVE_GAME_MODE", "US", 1)
	w.shows(0, 1, 2, seq)
	if h, _, _ := w.shard(0); h.Owner != "b" {
		t.Fatalf("shard written by %q, want b", h.Owner)
	}
	if got := metric(t, w.reg, "gamemodes_events_applied_total"); got != 5 {
		t.Fatalf("%v events applied, want 5 (none again after the hand-over)", got)
	}
}

// A stopping owner whose writes are not acknowledged gives up after
// DrainTimeout (of the owner's clock).
func TestOwnerDrainTimesOut(t *testing.T) {
	w := newWorld(t, 1)
	cfg := w.config("a")
	cfg.DrainTimeout = 2 * time.Second
	r := w.start(0, cfg)
	seq := w.enter("alice", "US", 1)
	w.shows(0, 1, 0, seq)
	w.store.Hold()
	w.enter("bob", "US", 1)
	w.until("bob's write sent", func() bool { _, ok := w.store.Player(0, "bob"); return ok })
	r.cancel()
	time.Sleep(time.Millisecond)
	select {
	case err := <-r.done:
		t.Fatalf("owner returned with a write in flight: %v", err)
	default:
	}
	w.clock.Advance(2 * time.Second)
	if err := r.result(); err == nil {
		t.Fatal("drain did not time out")
	}
}

// Batching: player writes go in batches of at most MaxBatch with at most
// MaxInflight unacknowledged, and later events of a player waiting for
// its write join that write.
func TestOwnerBatchesWithinWriteLimits(t *testing.T) {
	w := newWorld(t, 1)
	cfg := w.config("a")
	cfg.Writes = partition.WriteLimits{MaxBatch: 10, MaxInflight: 2}
	r := w.start(0, cfg)
	w.store.Hold()
	var last uint64
	for i := range 95 {
		last = w.enter(fmt.Sprintf("u%d", i), "US", 1+i%2)
	}
	w.until("every event counted", func() bool {
		h, _, _ := w.shard(0)
		return h.DeliveredSeq == last
	})
	for range 20 {
		last = w.enter("u94", "US", 1) // u94 is queued: these join its write
	}
	w.until("the refreshes handled", func() bool { return metric(t, w.reg, "gamemodes_events_applied_total") == 115 })
	if n := len(w.store.Batches()); n != 2 {
		t.Fatalf("%d batches sent with 2 unacknowledged, want 2 (MaxInflight)", n)
	}
	w.store.Release()
	w.until("every player stored", func() bool {
		select {
		case err := <-r.done:
			t.Fatalf("owner ended: %v (batches %v)", err, w.store.Batches())
		default:
		}
		return w.store.Players(0) == 95
	})
	w.shows(0, 48, 47, last)
	batches := w.store.Batches()
	total := 0
	for _, n := range batches {
		if n > 10 {
			t.Fatalf("a batch of %d players, want at most 10: %v", n, batches)
		}
		total += n
	}
	// u94's 20 refreshes joined its queued write (or one more, had its
	// first write been sent already).
	if total < 95 || total > 96 {
		t.Fatalf("batches %v: %d writes, want 95 or 96", batches, total)
	}
	if got := w.store.MaxUnacknowledged(); got > 2 {
		t.Fatalf("%d batches unacknowledged at once, want at most 2", got)
	}
}

// Invalid stored events are terminated and counted, never applied; events
// older than the TTL are skipped.
func TestOwnerRejectsInvalidEvents(t *testing.T) {
	w := newWorld(t, 2)
	w.start(0, w.config("a"))
	mine, other := w.userIn(0, 1), w.userIn(1, 2)
	body := func(user, region string) []byte {
		return fmt.Appendf(nil, `{"user_id":%q,"event_type":"ENTER_GAME_MODE","event_payload":{"game_mode":1,"region":%q}}`, user, region)
	}
	w.feed.Append(partition.EventMsg{Partition: 0, Region: "US", Data: body(other, "US")}) // its user is in partition 1
	w.feed.Append(partition.EventMsg{Partition: 0, Region: "EU", Data: body(mine, "US")})  // region mismatch
	w.feed.Append(partition.EventMsg{Partition: 0, Region: "US", Data: []byte("not json")})
	w.feed.Append(partition.EventMsg{Partition: 0, Region: "US", Data: body(mine, "US"), Time: t0.Add(-2 * ttl)}) // expired already
	seq := w.feed.Append(partition.EventMsg{Partition: 0, Region: "US", Data: body(mine, "US")})
	w.until("the valid event applied", func() bool { h, _, _ := w.shard(0); return h.DeliveredSeq == seq })
	if got := w.count(0, "US", 1); got != 1 {
		t.Fatalf("US/1 counts %d, want 1", got)
	}
	for _, reason := range []string{domain.CodePartitionMismatch, domain.CodeRegionMismatch, domain.CodeMalformedJSON} {
		if got := testutil.ToFloat64(w.events.Rejected.WithLabelValues(eventmetrics.SourceNATS, reason)); got != 1 {
			t.Errorf("rejected %s: %v, want 1", reason, got)
		}
	}
	if got := metric(t, w.reg, "gamemodes_events_skipped_total"); got != 1 {
		t.Errorf("%v events skipped as older than the TTL, want 1", got)
	}
}
