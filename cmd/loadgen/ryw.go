package main

import (
	"fmt"
	"github.com/gamemodes/gamemodes/cmd/internal/workload"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/gamemodes/gamemodes/modules/domain"
)

// rywUsers is how many players the read-your-writes probe cycles through,
// so that its events land in many partitions.
const rywUsers = 64

// rywProbe measures read your writes: every --ryw-every it POSTs an ENTER of
// one of its players over HTTP (whatever --mode), then GETs that region's
// lobby list with after=<consistency_token> and records the time from the
// 202 to the answer. A 504 (the service waited its --consistency-wait for
// the event to be reflected) is a timeout; another failure of the GET is an
// error. Its players all enter one slot (the most popular region's most
// popular mode) and stay there, so each counts once from its first
// acknowledged event on; they are part of the ground truth.
type rywProbe struct {
	r       *runner
	t       *workload.HTTPTarget
	enabled bool
	note    string
	slot    domain.Slot
	region  string
	query   string // URL-escaped region
	hist    *histogram
	quit    chan struct{}

	mu       sync.Mutex // guards what follows (read by verification while the probe runs)
	players  [rywUsers]rywPlayer
	next     int
	tries    int64
	timeouts int64
	errs     int64
}

// rywPlayer is the ground truth of one probe player.
type rywPlayer struct {
	id        string
	acked     bool      // an ENTER was acknowledged: the player counts
	uncertain bool      // an ENTER was never acknowledged while not counted
	lastAck   time.Time // of the last acknowledged ENTER
}

// newRYW returns the run's read-your-writes probe, disabled when
// --ryw-every is 0.
func (r *runner) newRYW() (*rywProbe, error) {
	p := &rywProbe{r: r, hist: newHistogram(1), quit: make(chan struct{}), note: "off"}
	if r.cfg.rywEvery <= 0 {
		return p, nil
	}
	t, err := workload.NewHTTPTarget(r.cfg.httpURL, r.cfg.authToken, 2, r.cfg.requestTimeout)
	if err != nil {
		return nil, err
	}
	p.t, p.enabled, p.note = t, true, ""
	p.slot = domain.Slot{Region: 0, Mode: 0}
	p.region = r.cat.Region(0)
	p.query = url.QueryEscape(p.region)
	prefix := r.cfg.userPrefix
	if prefix == "" {
		prefix = "lg" + r.runID + "-"
	}
	for k := range p.players {
		p.players[k].id = prefix + "ryw" + strconv.Itoa(k)
	}
	return p, nil
}

// start runs the probe in the background until stop; the channel returned
// closes when it has ended.
func (p *rywProbe) start() <-chan struct{} {
	done := make(chan struct{})
	if !p.enabled {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		repeat(p.r.cfg.rywEvery, p.quit, p.cycle)
	}()
	return done
}

// stop ends the probe after its current cycle.
func (p *rywProbe) stop() { close(p.quit) }

// cycle posts one ENTER and reads with its token. It returns false when the
// probe must end (the service refused its event).
func (p *rywProbe) cycle() bool {
	p.mu.Lock()
	k := p.next
	p.next = (p.next + 1) % rywUsers
	id := p.players[k].id
	p.mu.Unlock()
	ev := p.r.newEvent(workload.Planned{Player: -1, Type: domain.EventEnter, Slot: p.slot}, id)
	var token string
	res, at := p.r.postEventToken(p.t, ev.body, &token)
	p.mu.Lock()
	switch res {
	case outcomeRejected:
		p.note = "stopped: the service refused a read-your-writes event"
		p.mu.Unlock()
		return false
	case outcomeUnresolved:
		if !p.players[k].acked {
			p.players[k].uncertain = true
		}
		p.mu.Unlock()
		return true
	}
	p.players[k].acked, p.players[k].lastAck = true, at
	p.tries++
	p.mu.Unlock()
	if token == "" {
		p.fail("ryw:no_token")
		return true
	}
	status, _, err := p.t.Get(p.query+"&after="+url.QueryEscape(token), false)
	switch {
	case err != nil:
		p.fail(workload.ErrorKey("ryw", err))
	case status == 200:
		p.hist.record(0, time.Since(at))
	case status == 504:
		p.mu.Lock()
		p.timeouts++
		p.mu.Unlock()
	default:
		p.fail("ryw:" + strconv.Itoa(status))
	}
	return true
}

// fail counts a failed read-your-writes read under key.
func (p *rywProbe) fail(key string) {
	p.mu.Lock()
	p.errs++
	p.mu.Unlock()
	p.r.c.fail(key)
}

// contribute adds the probe players to the expected counts.
func (p *rywProbe) contribute(b workload.Bounds, now time.Time, ttl time.Duration) {
	if !p.enabled {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pl := range p.players {
		switch {
		case pl.acked && (ttl <= 0 || now.Sub(pl.lastAck) < ttl):
			b.Lo.Add(p.slot, 1)
			b.Hi.Add(p.slot, 1)
		case pl.acked || pl.uncertain: // maybe expired, or maybe stored
			b.Hi.Add(p.slot, 1)
		}
	}
}

// rywReport is the probe's report: latency from the 202 to the answer of
// the read with its consistency token, for the reads answered 200.
type rywReport struct {
	latency
	Tries    int64  `json:"tries"`    // events acknowledged, each followed by a read
	Timeouts int64  `json:"timeouts"` // reads answered 504
	Errors   int64  `json:"errors"`   // reads that failed otherwise (see errors, "ryw:...")
	Slot     string `json:"slot,omitempty"`
	Note     string `json:"note,omitempty"` // why the probe is off or stopped
}

// report summarizes the probe; nil when it is off.
func (p *rywProbe) report() *rywReport {
	if !p.enabled {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return &rywReport{latency: summarize(p.hist.merged()), Tries: p.tries, Timeouts: p.timeouts, Errors: p.errs,
		Slot: fmt.Sprintf("%s/%d", p.region, p.r.cat.GameMode(int(p.slot.Mode))), Note: p.note}
}
