package main

import (
	"context"
	"fmt"
	"github.com/gamemodes/gamemodes/cmd/internal/workload"
	"io"
	"math/rand/v2"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// runner holds one load generation run.
type runner struct {
	cfg     config
	cat     *domain.Catalog
	pop     *workload.Population // nil in read mode
	regions *workload.Sampler    // which region a GET asks for
	queries []string             // URL-escaped region names by region index
	web     *workload.HTTPTarget // workload client; nil in nats mode
	admin   *workload.HTTPTarget // lobby reads of baseline, verification and probe; nil without --http-url
	bus     *workload.NATSTarget // nil unless nats mode
	busy    []atomic.Bool
	log     io.Writer

	pace           *pacer
	c              counters
	post, get, lag *histogram
	runID          string
	seed           uint64
	eventSeq       atomic.Int64
	baseline       map[string]map[int]int64
	ryw            *rywProbe // nil until run starts it
	rejectOnce     sync.Once
}

// outcome is how an event's delivery ended.
type outcome = workload.Outcome

const (
	outcomeAcked      = workload.Acked      // stored by the service (202 or PubAck)
	outcomeRejected   = workload.Rejected   // refused for good (4xx): nothing stored
	outcomeUnresolved = workload.Unresolved // no answer within --retry-for: stored or not, unknown
)

// outEvent is an event ready to send.
type outEvent struct {
	plan    workload.Planned
	id      string
	subject string
	body    []byte
}

// newRunner connects to the targets and builds the workload.
func newRunner(cfg config, log io.Writer) (*runner, error) {
	cat, err := domain.NewCatalog(cfg.regions, cfg.gameModes)
	if err != nil {
		return nil, err
	}
	r := &runner{cfg: cfg, cat: cat, log: log, runID: newRunID(), seed: cfg.seed,
		regions: workload.NewSampler(cat.NumRegions(), cfg.regionSkew),
		post:    newHistogram(cfg.concurrency), get: newHistogram(cfg.concurrency), lag: newHistogram(cfg.concurrency)}
	if r.seed == 0 {
		r.seed = rand.Uint64()
	}
	for _, reg := range cat.Regions() {
		r.queries = append(r.queries, url.QueryEscape(reg))
	}
	if cfg.httpURL != "" {
		if r.admin, err = workload.NewHTTPTarget(cfg.httpURL, cfg.authToken, 4, cfg.requestTimeout); err != nil {
			return nil, err
		}
		if cfg.mode != modeNATS {
			if r.web, err = workload.NewHTTPTarget(cfg.httpURL, cfg.authToken, cfg.concurrency+8, cfg.requestTimeout); err != nil {
				return nil, err
			}
		}
	}
	if cfg.mode == modeNATS {
		if r.bus, err = workload.DialNATS(cfg.natsURL, cfg.natsSecurity, cfg.maxPending, cfg.requestTimeout); err != nil {
			return nil, err
		}
		r.busy = make([]atomic.Bool, cfg.players)
	}
	if cfg.writes() {
		prefix := cfg.userPrefix
		if prefix == "" {
			prefix = "lg" + r.runID + "-"
		}
		m := workload.Mix{Leave: cfg.leaveRatio, Drop: cfg.dropRatio, StaleLeave: cfg.staleRatio, Travel: cfg.travelRatio, Heartbeat: cfg.beatRatio}
		r.pop = workload.NewPopulation(cat, cfg.players, cfg.regionSkew, cfg.modeSkew, m, r.seed, prefix, cfg.playerTTL > 0, true)
	}
	return r, nil
}

// close releases the connections.
func (r *runner) close() {
	if r.bus != nil {
		r.bus.Close()
	}
}

// newRunID returns 8 random base-36 characters naming the run in user and event ids.
func newRunID() string {
	const digits = "0123456789abcdefghijklmnopqrstuvwxyz"
	b := make([]byte, 8)
	for i := range b {
		b[i] = digits[rand.IntN(len(digits))]
	}
	return string(b)
}

// rng returns worker w's random source.
func (r *runner) rng(w int) *rand.Rand { return rand.New(rand.NewPCG(r.seed, uint64(w)+1)) }

// newEvent builds the event of a plan for user userID.
func (r *runner) newEvent(pe workload.Planned, userID string) outEvent {
	id := r.runID + "-" + strconv.FormatInt(r.eventSeq.Add(1), 36)
	region := r.cat.Region(int(pe.Slot.Region))
	body := workload.AppendEventJSON(make([]byte, 0, 192), id, userID, pe.Type, region, r.cat.GameMode(int(pe.Slot.Mode)), time.Now().UnixMilli())
	ev := outEvent{plan: pe, id: id, body: body}
	if r.bus != nil {
		ev.subject = topology.EventSubject(region, domain.UserToken(userID))
	}
	return ev
}

// drive runs the workers until the pacer ends the run and every event sent
// is resolved.
func (r *runner) drive() {
	var shards []*workload.Shard
	if r.pop != nil {
		shards = workload.NewShards(r.cfg.players, r.cfg.concurrency)
	}
	var wg sync.WaitGroup
	for w := range r.cfg.concurrency {
		var sh *workload.Shard
		if shards != nil {
			sh = shards[w]
		}
		if r.cfg.mode == modeNATS {
			wg.Go(func() { r.natsWorker(w, sh) })
		} else {
			wg.Go(func() { r.httpWorker(w, sh) })
		}
	}
	wg.Wait()
}

// noteLag records how late an open-loop ticket was taken.
func (r *runner) noteLag(w int, lag time.Duration) {
	if r.cfg.rate <= 0 {
		return
	}
	r.lag.record(w, lag)
	if lag > lateAfter {
		r.c.late.Add(1)
	}
}

// httpWorker sends one request at a time: POSTs for its own players, and
// GETs in read and mixed mode.
func (r *runner) httpWorker(w int, sh *workload.Shard) {
	rng, timer := r.rng(w), newStoppedTimer()
	for {
		k, lag, ok := r.pace.take(timer)
		if !ok {
			return
		}
		r.noteLag(w, lag)
		if r.cfg.mode == modeRead || r.cfg.mode == modeMixed && opIsRead(k, r.cfg.readRatio) {
			r.doGet(w, rng)
			continue
		}
		pe, ok := r.nextEvent(rng, sh, nil)
		if !ok {
			return // every player of this worker dropped
		}
		ev := r.newEvent(pe, r.pop.UserID(pe.Player))
		r.c.sent.Add(1)
		switch res, at := r.postEvent(r.web, r.post, w, ev.body); res {
		case outcomeAcked:
			r.c.acked.Add(1)
			r.pop.Ack(pe, at)
		case outcomeUnresolved:
			r.pop.Unresolved(pe, at)
		}
	}
}

// nextEvent plans the next event of a live player of the shard. In nats
// mode it claims the player's busy flag (released when the event resolves),
// so one player never has two events in flight; freed signals a release.
func (r *runner) nextEvent(rng *rand.Rand, sh *workload.Shard, freed <-chan struct{}) (workload.Planned, bool) {
	misses := 0
	for len(sh.Live) > 0 {
		pos, i := sh.Pick(rng)
		if r.busy != nil && !r.busy[i].CompareAndSwap(false, true) {
			if misses++; misses%8 == 0 {
				select {
				case <-freed:
				case <-time.After(time.Millisecond):
				}
			}
			continue
		}
		if !r.pop.Usable(i) {
			sh.Remove(pos)
			continue
		}
		if pe, ok := r.pop.Plan(rng, i); ok {
			return pe, true
		}
		sh.Remove(pos) // dropped: silent from now on
	}
	return workload.Planned{}, false
}

// postEvent posts an event until it is acknowledged, refused for good, or
// --retry-for has passed, retrying with backoff and the same event_id. It
// records the latency of the successful attempt in hist (when not nil).
func (r *runner) postEvent(t *workload.HTTPTarget, hist *histogram, w int, body []byte) (outcome, time.Time) {
	return r.sendPost(t, hist, w, body, nil)
}

// postEventToken is postEvent keeping the answer's consistency token.
func (r *runner) postEventToken(t *workload.HTTPTarget, body []byte, token *string) (outcome, time.Time) {
	return r.sendPost(t, nil, 0, body, token)
}

// sendPost is postEvent, storing the acknowledgement's consistency token in
// token when it is not nil.
func (r *runner) sendPost(t *workload.HTTPTarget, hist *histogram, w int, body []byte, token *string) (outcome, time.Time) {
	res := t.PostUntil(body, r.cfg.retryFor, token != nil, r.c.fail)
	r.c.retries.Add(int64(res.Retries))
	switch res.Outcome {
	case workload.Acked:
		if hist != nil {
			hist.record(w, res.Latency)
		}
		if res.Duplicate {
			r.c.duplicates.Add(1)
		}
		if token != nil {
			*token = res.Token
		}
	case workload.Rejected:
		r.rejected(res.Status, body)
	case workload.Unresolved:
		r.c.unresolved.Add(1)
	}
	return res.Outcome, res.At
}

// rejected counts an event the service refused for good and reports the first one.
func (r *runner) rejected(status int, body []byte) {
	r.c.rejected.Add(1)
	r.rejectOnce.Do(func() {
		fmt.Fprintf(r.log, "loadgen: the service refused an event with %d (do --regions and --game-modes match the service?): %s\n", status, body)
	})
}

// doGet reads one lobby list of a region drawn by popularity.
func (r *runner) doGet(w int, rng *rand.Rand) {
	t0 := time.Now()
	status, _, err := r.web.Get(r.queries[r.regions.Sample(rng)], false)
	switch {
	case err != nil:
		r.c.fail(workload.ErrorKey("get", err))
	case status != 200:
		r.c.fail("get:" + strconv.Itoa(status))
	default:
		r.get.record(w, time.Since(t0))
		r.c.gets.Add(1)
	}
}

// inflight is a published event awaiting its acknowledgement.
type inflight struct {
	ev    outEvent
	msg   *nats.Msg
	fut   jetstream.PubAckFuture // nil when the last publish call failed
	first time.Time              // first attempt
	sent  time.Time              // last attempt
}

// natsWorker publishes events of its players asynchronously, at most
// max-pending/concurrency awaiting acknowledgement; its acker goroutine
// resolves them in order.
func (r *runner) natsWorker(w int, sh *workload.Shard) {
	limit := max(1, r.cfg.maxPending/r.cfg.concurrency)
	sem := make(chan struct{}, limit)
	queue := make(chan *inflight, limit)
	freed := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.natsAcker(w, queue, sem, freed)
	}()
	rng, timer := r.rng(w), newStoppedTimer()
	for {
		_, lag, ok := r.pace.take(timer)
		if !ok {
			break
		}
		r.noteLag(w, lag)
		pe, ok := r.nextEvent(rng, sh, freed)
		if !ok {
			break
		}
		ev := r.newEvent(pe, r.pop.UserID(pe.Player))
		sem <- struct{}{}
		it := &inflight{ev: ev, msg: workload.Message(ev.subject, ev.id, ev.body), first: time.Now()}
		r.c.sent.Add(1)
		r.publishAsync(it)
		queue <- it
	}
	close(queue)
	<-done
}

// publishAsync (re)publishes an inflight event.
func (r *runner) publishAsync(it *inflight) {
	it.sent = time.Now()
	fut, err := r.bus.JS.PublishMsgAsync(it.msg)
	if err != nil {
		r.c.fail(workload.NATSErrorKey(err))
		fut = nil
	}
	it.fut = fut
}

// natsAcker resolves a worker's inflight events in publish order.
func (r *runner) natsAcker(w int, queue <-chan *inflight, sem <-chan struct{}, freed chan<- struct{}) {
	for it := range queue {
		r.awaitAck(w, it)
		r.busy[it.ev.plan.Player].Store(false)
		<-sem
		select {
		case freed <- struct{}{}:
		default:
		}
	}
}

// awaitAck waits for an event's acknowledgement, republishing it (same
// Nats-Msg-Id) with backoff on failure until --retry-for has passed.
func (r *runner) awaitAck(w int, it *inflight) {
	for attempt := 1; ; attempt++ {
		if it.fut != nil {
			select {
			case ack := <-it.fut.Ok():
				now := time.Now()
				r.post.record(w, now.Sub(it.sent))
				if ack.Duplicate {
					r.c.duplicates.Add(1)
				}
				r.c.acked.Add(1)
				r.pop.Ack(it.ev.plan, now)
				return
			case err := <-it.fut.Err():
				r.c.fail(workload.NATSErrorKey(err))
			}
		}
		if time.Since(it.first) > r.cfg.retryFor {
			r.c.unresolved.Add(1)
			r.pop.Unresolved(it.ev.plan, time.Now())
			return
		}
		time.Sleep(workload.Backoff(attempt, 0))
		r.c.retries.Add(1)
		r.publishAsync(it)
	}
}

// publishEvent publishes one event synchronously until acknowledged or
// --retry-for has passed (the probe's path on NATS).
func (r *runner) publishEvent(ev outEvent) (outcome, time.Time) {
	res := r.bus.PublishUntil(workload.Message(ev.subject, ev.id, ev.body), r.cfg.retryFor, r.cfg.requestTimeout, r.c.fail)
	r.c.retries.Add(int64(res.Retries))
	if res.Outcome == workload.Unresolved {
		r.c.unresolved.Add(1)
	}
	return res.Outcome, res.At
}

// readBaseline reads every region's lobby list (before the run).
func (r *runner) readBaseline() error {
	r.baseline = map[string]map[int]int64{}
	for _, reg := range r.cat.Regions() {
		got, err := r.admin.Lobby(reg)
		if err != nil {
			return fmt.Errorf("baseline: %w", err)
		}
		r.baseline[reg] = got
	}
	return nil
}

// run executes one load generation run with cfg: baseline, send phase (until
// --duration, --events or ctx ends), drain, then verification. Progress goes
// to log; the summary is returned.
func run(ctx context.Context, cfg config, log io.Writer) (summary, error) {
	r, err := newRunner(cfg, log)
	if err != nil {
		return summary{}, err
	}
	defer r.close()
	if cfg.baseline || cfg.mode == modeRead {
		if err := r.readBaseline(); err != nil {
			return summary{}, err
		}
	}
	pr := r.newProbe()
	if r.ryw, err = r.newRYW(); err != nil {
		return summary{}, err
	}
	var cpu0 cpuReading
	if !cfg.cpu.empty() {
		if cpu0, err = cfg.cpu.read(); err != nil {
			return summary{}, err
		}
	}
	var eng0 engineReading
	if cfg.cpu.metricsURL != "" {
		if eng0, err = readEngine(metricsClient, cfg.cpu.metricsURL); err != nil {
			return summary{}, err
		}
	}
	r.pace = newPacer(cfg.rate, cfg.duration, cfg.events, ctx.Done())
	stopProgress := make(chan struct{})
	if cfg.progressEvery > 0 {
		go progress(log, cfg.progressEvery, r.pace.start, &r.c, r.post, r.get, stopProgress)
	}
	probeDone, rywDone := pr.start(), r.ryw.start()
	r.drive()
	elapsed := time.Since(r.pace.start)
	pr.stop()
	r.ryw.stop()
	<-probeDone
	<-rywDone
	close(stopProgress)
	var cpu1 cpuReading
	if !cfg.cpu.empty() {
		if cpu1, err = cfg.cpu.read(); err != nil {
			return summary{}, err
		}
	}
	var eng1 engineReading
	if cfg.cpu.metricsURL != "" {
		if eng1, err = readEngine(metricsClient, cfg.cpu.metricsURL); err != nil {
			return summary{}, err
		}
	}
	sum := r.summarize(elapsed, pr)
	if cfg.cpu.metricsURL != "" {
		eng := engineBetween(eng0, eng1, sum.EventsAcked)
		sum.Engine = &eng
	}
	sum.Verify = verifyReport{Result: "skipped"}
	if cfg.verify {
		sum.Verify = r.verify(pr)
	}
	if !cfg.cpu.empty() {
		cpu2, err := cfg.cpu.read()
		if err != nil {
			return summary{}, err
		}
		send, tail := cpuBetween(cpu0, cpu1, sum.EventsAcked), cpuBetween(cpu1, cpu2, sum.EventsAcked)
		sum.CPU, sum.CPUAfter = &send, &tail
	}
	return sum, nil
}
