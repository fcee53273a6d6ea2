package archive

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gamemodes/gamemodes/modules/domain"
)

// Config of the archiver. Zero fields take the defaults.
type Config struct {
	// Partitions is the events stream's partition count (required).
	Partitions int
	// BatchSize is the most messages in one transaction (default 5000).
	BatchSize int
	// BatchWait is how long a batch collects after its first message
	// before it is written (default 50ms).
	BatchWait time.Duration
	// RetryMin and RetryMax bound the exponential backoff between attempts
	// to resume after a failure of the store or the stream (defaults 100ms
	// and 5s).
	RetryMin, RetryMax time.Duration
	// WriteTimeout bounds one batch transaction, acknowledgement or
	// positioning request (default 30s).
	WriteTimeout time.Duration
	// LagInterval is how often the consumer lag is read (default 1s).
	LagInterval time.Duration
	// Prepare, if set, runs before the first batch is read, retried with
	// the backoff until it succeeds: for example applying the migrations
	// (schema.MigrateURL), so a Postgres that is down at start delays the
	// archive instead of failing the process.
	Prepare func(ctx context.Context) error
}

// Defaults fills zero fields with the defaults.
func (c Config) Defaults() Config {
	if c.BatchSize == 0 {
		c.BatchSize = 5000
	}
	if c.BatchWait == 0 {
		c.BatchWait = 50 * time.Millisecond
	}
	if c.RetryMin == 0 {
		c.RetryMin = 100 * time.Millisecond
	}
	if c.RetryMax == 0 {
		c.RetryMax = 5 * time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 30 * time.Second
	}
	if c.LagInterval == 0 {
		c.LagInterval = time.Second
	}
	return c
}

// Validate checks the settings.
func (c Config) Validate() error {
	switch {
	case c.Partitions < 1:
		return fmt.Errorf("archive: partitions %d: want at least 1", c.Partitions)
	case c.BatchSize < 1:
		return fmt.Errorf("archive: batch size %d: want at least 1", c.BatchSize)
	case c.BatchWait <= 0 || c.RetryMin <= 0 || c.RetryMax < c.RetryMin || c.WriteTimeout <= 0 || c.LagInterval <= 0:
		return errors.New("archive: durations must be positive and retry max at least retry min")
	}
	return nil
}

// Status is the archiver's state for health checks.
type Status struct {
	// Running is true between Start and Stop.
	Running bool
	// Standby is true while another archiver holds the archive and this one
	// waits to take over.
	Standby bool
	// StoreDown is true while the archive cannot be claimed or batches fail
	// to commit (Postgres down or slow).
	StoreDown bool
	// StreamDown is true while reading or positioning the stream fails.
	StreamDown bool
	// Since is when the current failure started.
	Since time.Time
	// LastError is the last failure, empty when none is current.
	LastError string
	// Lag is the consumer's unacknowledged messages at the last reading.
	Lag uint64
	// LastCommit is when the last batch committed.
	LastCommit time.Time
	// Checkpoint is the last stream sequence this archiver archived (or
	// read from the checkpoint when it took over).
	Checkpoint uint64
}

// Archiver moves the events stream into the archive.
type Archiver struct {
	cfg     Config
	src     Source
	store   Store
	cls     *Classifier
	metrics *Metrics
	log     *slog.Logger

	lag atomic.Uint64

	mu         sync.Mutex
	running    bool
	standby    bool
	stopSoft   context.CancelFunc
	stopHard   context.CancelFunc
	done       chan struct{}
	storeDown  bool
	streamDown bool
	since      time.Time
	lastErr    error
	lastCommit time.Time
	checkpoint uint64
}

// New returns an archiver reading src and writing store. Events are
// validated against catalog; logger may be nil (slog.Default).
func New(cfg Config, catalog *domain.Catalog, src Source, store Store, metrics *Metrics, logger *slog.Logger) (*Archiver, error) {
	cfg = cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &Archiver{
		cfg: cfg, src: src, store: store, cls: NewClassifier(catalog, cfg.Partitions),
		metrics: metrics, log: logger.With("component", "archiver"),
	}, nil
}

// Start starts archiving in the background and returns.
func (a *Archiver) Start() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.running {
		return
	}
	soft, stopSoft := context.WithCancel(context.Background())
	hard, stopHard := context.WithCancel(context.Background())
	a.running, a.stopSoft, a.stopHard, a.done = true, stopSoft, stopHard, make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); a.run(soft, hard) }()
	go func() { defer wg.Done(); a.pollLag(soft) }()
	done := a.done
	go func() { wg.Wait(); close(done) }()
}

// Stop stops reading the stream, commits and acknowledges the batch being
// collected, gives the archive up and returns. If ctx ends first (for
// example Postgres is down), the batch is abandoned (the next archiver
// resumes after the checkpoint, before it) and ctx's error is returned.
func (a *Archiver) Stop(ctx context.Context) error {
	a.mu.Lock()
	if !a.running {
		a.mu.Unlock()
		return nil
	}
	a.running = false
	stopSoft, stopHard, done := a.stopSoft, a.stopHard, a.done
	a.mu.Unlock()

	stopSoft()
	defer stopHard()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		stopHard()
		<-done
		return fmt.Errorf("archive stop: batch abandoned uncommitted: %w", ctx.Err())
	}
}

// Lag returns the consumer's unacknowledged messages at the last reading.
func (a *Archiver) Lag() uint64 { return a.lag.Load() }

// Status returns the archiver's state.
func (a *Archiver) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := Status{
		Running: a.running, Standby: a.standby, StoreDown: a.storeDown, StreamDown: a.streamDown,
		Lag: a.lag.Load(), LastCommit: a.lastCommit, Checkpoint: a.checkpoint,
	}
	if a.storeDown || a.streamDown {
		s.Since = a.since
		if a.lastErr != nil {
			s.LastError = a.lastErr.Error()
		}
	}
	return s
}

// Ready returns nil while the archiver runs and its store and stream work
// (a standby waiting for the active archiver is ready), else why not (with
// the lag: events wait in the stream meanwhile).
func (a *Archiver) Ready() error {
	s := a.Status()
	switch {
	case !s.Running:
		return errors.New("archiver not running")
	case s.StoreDown:
		return fmt.Errorf("archive down since %s (lag %d messages): %s", s.Since.Format(time.RFC3339), s.Lag, s.LastError)
	case s.StreamDown && !s.Standby:
		// A standby reads no stream: a failure its last session met says
		// nothing about it now (found by the chaos soak: a standby stayed
		// unready after a node fault, which would hold a rollout).
		return fmt.Errorf("archive stream unavailable since %s (lag %d messages): %s", s.Since.Format(time.RFC3339), s.Lag, s.LastError)
	}
	return nil
}

// batch is the messages collected for one transaction.
type batch struct {
	events   []ArchivedEvent
	rejected []RejectedEvent
	last     Message
	n        int
}

func (b *batch) add(c *Classifier, m Message) {
	if ev, rej, ok := c.Classify(m); ok {
		b.events = append(b.events, ev)
	} else {
		b.rejected = append(b.rejected, rej)
	}
	b.last = m
	b.n++
}

func (b *batch) reset() {
	clear(b.events)
	clear(b.rejected)
	b.events, b.rejected, b.last, b.n = b.events[:0], b.rejected[:0], Message{}, 0
}

// errStopped ends a session because the archiver stops.
var errStopped = errors.New("archiver stopping")

// run holds sessions until soft ends: each claims the archive, resumes
// after its checkpoint, and archives until the store or the stream fails;
// then the next one starts after a backoff.
func (a *Archiver) run(soft, hard context.Context) {
	if !a.prepare(soft) {
		return
	}
	backoff := a.cfg.RetryMin
	for soft.Err() == nil {
		progressed, err := a.session(soft, hard)
		if errors.Is(err, errStopped) || soft.Err() != nil {
			return
		}
		if progressed {
			backoff = a.cfg.RetryMin
		}
		if !sleep(soft, jitter(backoff)) {
			return
		}
		backoff = min(2*backoff, a.cfg.RetryMax)
	}
}

// session claims the archive (waiting as a standby while another archiver
// holds it), positions the stream after the checkpoint and archives batch
// after batch. It returns why it ended (errStopped when soft ended) and
// whether any batch committed.
func (a *Archiver) session(soft, hard context.Context) (progressed bool, err error) {
	a.setStandby(true)
	claim, err := a.store.Claim(soft)
	a.setStandby(false)
	if err != nil {
		if soft.Err() != nil {
			return false, errStopped
		}
		a.metrics.Errors.WithLabelValues(opWrite).Inc()
		a.storeFailed(fmt.Errorf("claim the archive: %w", err), 0)
		return false, err
	}
	defer claim.Release()
	a.metrics.Active.Set(1)
	defer a.metrics.Active.Set(0)

	from, stream, after, err := a.resumePoint(soft, claim)
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(soft, a.cfg.WriteTimeout)
	err = a.src.Open(ctx, after)
	cancel()
	if err != nil {
		if soft.Err() != nil {
			return false, errStopped
		}
		a.metrics.Errors.WithLabelValues(opSource).Inc()
		a.streamFailed(fmt.Errorf("position the stream after %d: %w", after, err))
		return false, err
	}
	defer a.src.Release()
	a.setCheckpoint(after)
	a.log.Info("archiving", "after_seq", after)

	b := &batch{events: make([]ArchivedEvent, 0, a.cfg.BatchSize)}
	for {
		cerr := a.collect(soft, b)
		if cerr != nil {
			a.metrics.Errors.WithLabelValues(opSource).Inc()
			a.streamFailed(cerr)
		}
		if b.n > 0 {
			to := Checkpoint{Stream: stream, Seq: b.last.Seq}
			if err := a.commit(hard, claim, b, from, to); err != nil {
				return progressed, err
			}
			progressed, from = true, to
			b.reset()
		}
		if cerr != nil {
			return progressed, cerr
		}
		if soft.Err() != nil {
			return progressed, errStopped
		}
	}
}

// resumePoint reads where the claimed archive stands: the checkpoint to
// move from, the identity of the stream now and the stream sequence to
// resume after. Without a checkpoint (an archive of a version that
// acknowledged each message) that is the durable consumer's ack floor;
// with one of another stream (created again) it is the start of this one.
func (a *Archiver) resumePoint(soft context.Context, claim Claim) (from Checkpoint, stream string, after uint64, err error) {
	ctx, cancel := context.WithTimeout(soft, a.cfg.WriteTimeout)
	defer cancel()
	cp, ok, err := claim.Checkpoint(ctx)
	if err != nil {
		if soft.Err() != nil {
			return from, "", 0, errStopped
		}
		a.metrics.Errors.WithLabelValues(opWrite).Inc()
		a.storeFailed(fmt.Errorf("read the checkpoint: %w", err), 0)
		return from, "", 0, err
	}
	a.storeOK()
	stream, err = a.src.Identity(ctx)
	if err == nil && !ok {
		after, err = a.src.AckFloor(ctx)
	}
	if err != nil {
		if soft.Err() != nil {
			return from, "", 0, errStopped
		}
		a.metrics.Errors.WithLabelValues(opSource).Inc()
		a.streamFailed(fmt.Errorf("read the stream's state: %w", err))
		return from, "", 0, err
	}
	switch {
	case !ok:
		a.log.Info("archive has no checkpoint yet: resuming after the durable consumer's acknowledgements", "after_seq", after)
		return Checkpoint{}, stream, after, nil
	case cp.Stream != stream:
		a.log.Warn("the events stream is not the one of the archive's checkpoint (created again?): archiving it from its start",
			"checkpoint_stream", cp.Stream, "checkpoint_seq", cp.Seq, "stream", stream)
		return cp, stream, 0, nil
	}
	return cp, stream, cp.Seq, nil
}

// prepare runs Config.Prepare until it succeeds; false if ctx ended first.
func (a *Archiver) prepare(ctx context.Context) bool {
	if a.cfg.Prepare == nil {
		return true
	}
	backoff := a.cfg.RetryMin
	for {
		pctx, cancel := context.WithTimeout(ctx, a.cfg.WriteTimeout)
		err := a.cfg.Prepare(pctx)
		cancel()
		if err == nil {
			a.storeOK()
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		a.metrics.Errors.WithLabelValues(opWrite).Inc()
		a.storeFailed(fmt.Errorf("prepare: %w", err), 0)
		if !sleep(ctx, jitter(backoff)) {
			return false
		}
		backoff = min(2*backoff, a.cfg.RetryMax)
	}
}

// collect waits for a message, then adds messages until the batch is full
// or BatchWait has passed since the first. It returns a stream error, not
// the end of soft or of the wait.
func (a *Archiver) collect(soft context.Context, b *batch) error {
	m, err := a.src.Next(soft)
	if err != nil {
		if soft.Err() != nil {
			return nil
		}
		return err
	}
	a.streamOK()
	b.add(a.cls, m)
	ctx, cancel := context.WithTimeout(soft, a.cfg.BatchWait)
	defer cancel()
	for b.n < a.cfg.BatchSize {
		m, err := a.src.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		b.add(a.cls, m)
	}
	return nil
}

// commit writes b and moves the checkpoint from from to to, then
// acknowledges the batch. A failed write ends the session: the claim may be
// lost with its database session, and the next one resumes after the
// checkpoint, which still names what is committed.
func (a *Archiver) commit(hard context.Context, claim Claim, b *batch, from, to Checkpoint) error {
	ctx, cancel := context.WithTimeout(hard, a.cfg.WriteTimeout)
	start := time.Now()
	err := claim.WriteBatch(ctx, b.events, b.rejected, from, to)
	cancel()
	if err != nil {
		if hard.Err() != nil {
			return errStopped
		}
		a.metrics.Errors.WithLabelValues(opWrite).Inc()
		if errors.Is(err, ErrCheckpointMoved) {
			a.log.Warn("archive checkpoint moved by another archiver: resuming from the stored checkpoint", "from_seq", from.Seq, "batch_messages", b.n)
			return err
		}
		a.storeFailed(err, b.n)
		return err
	}
	a.metrics.WriteSeconds.Observe(time.Since(start).Seconds())
	a.storeOK()
	a.setCheckpoint(to.Seq)
	a.metrics.Batches.Inc()
	a.metrics.Rows.Add(float64(len(b.events)))
	for _, r := range b.rejected {
		a.metrics.Rejected.WithLabelValues(r.Reason).Inc()
	}

	ctx, cancel = context.WithTimeout(hard, a.cfg.WriteTimeout)
	err = a.src.Ack(ctx, b.last)
	cancel()
	if err != nil {
		// The batch is archived and the checkpoint moved: only the lag
		// reading waits for the next acknowledgement.
		a.metrics.Errors.WithLabelValues(opAck).Inc()
		a.log.Warn("archive batch committed but not acknowledged", "last_seq", b.last.Seq, "error", err)
	}
	return nil
}

func (a *Archiver) setStandby(v bool) {
	a.mu.Lock()
	a.standby = v
	a.mu.Unlock()
}

func (a *Archiver) setCheckpoint(seq uint64) {
	a.mu.Lock()
	a.checkpoint = seq
	a.mu.Unlock()
}

// pollLag reads the consumer lag every LagInterval until ctx ends.
func (a *Archiver) pollLag(ctx context.Context) {
	t := time.NewTicker(a.cfg.LagInterval)
	defer t.Stop()
	for {
		qctx, cancel := context.WithTimeout(ctx, a.cfg.LagInterval+time.Second)
		n, err := a.src.Lag(qctx)
		cancel()
		if err == nil {
			a.setLag(n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (a *Archiver) setLag(n uint64) {
	a.lag.Store(n)
	a.metrics.Lag.Set(float64(n))
}

func (a *Archiver) storeFailed(err error, rows int) {
	a.mu.Lock()
	first := !a.storeDown
	a.storeDown, a.lastErr = true, err
	if first && !a.streamDown {
		a.since = time.Now()
	}
	a.mu.Unlock()
	if first {
		a.metrics.StoreUp.Set(0)
		a.log.Warn("archive down", "error", err, "batch_messages", rows, "lag", a.lag.Load())
	}
}

func (a *Archiver) storeOK() {
	a.mu.Lock()
	was := a.storeDown
	since := a.since
	a.storeDown, a.lastCommit = false, time.Now()
	if was && !a.streamDown {
		a.lastErr = nil
	}
	a.mu.Unlock()
	if was {
		a.metrics.StoreUp.Set(1)
		a.log.Info("archive recovered", "down_for", time.Since(since).Round(time.Millisecond), "lag", a.lag.Load())
	}
}

func (a *Archiver) streamFailed(err error) {
	a.mu.Lock()
	first := !a.streamDown
	a.streamDown, a.lastErr = true, err
	if first && !a.storeDown {
		a.since = time.Now()
	}
	a.mu.Unlock()
	if first {
		a.log.Warn("archive stream unavailable", "error", err)
	}
}

func (a *Archiver) streamOK() {
	a.mu.Lock()
	was := a.streamDown
	since := a.since
	a.streamDown = false
	if was && !a.storeDown {
		a.lastErr = nil
	}
	a.mu.Unlock()
	if was {
		a.log.Info("archive stream recovered", "down_for", time.Since(since).Round(time.Millisecond))
	}
}

// jitter spreads d by ±20%.
func jitter(d time.Duration) time.Duration {
	return d - d/5 + time.Duration(rand.Int64N(int64(2*d/5)+1))
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
