package main

import (
	"fmt"
	"github.com/gamemodes/gamemodes/cmd/internal/workload"
	"time"

	"github.com/gamemodes/gamemodes/modules/domain"
)

// probeTimeout is how long a probe waits for its change to show in the lobby.
const probeTimeout = 5 * time.Second

// probePoll is how often a probe reads the lobby while waiting.
const probePoll = time.Millisecond

// probe measures freshness: one dedicated probe player alternately enters
// and leaves a slot that the workload never uses (the least popular region's
// least popular mode), every --freshness-every. After each acknowledged
// event it reads that region's lobby list every millisecond until the slot
// shows the expected count, and records the time from acknowledgement to
// the end of the first GET showing it. Only the probe changes that slot, so
// the expected count is exact whatever the load.
type probe struct {
	r       *runner
	enabled bool
	slot    domain.Slot
	region  string
	mode    int
	userID  string
	base    int64 // the slot's count before the probe's first event
	hist    *histogram
	quit    chan struct{}

	// Ground truth of the probe player; read after the probe goroutine ends.
	present   bool
	uncertain bool
	lastAck   time.Time
	events    int64
	timeouts  int64
	note      string
}

// newProbe returns the run's probe, disabled when --freshness-every is 0,
// without --http-url, or when the catalog has a single slot.
func (r *runner) newProbe() *probe {
	p := &probe{r: r, hist: newHistogram(1), quit: make(chan struct{})}
	switch {
	case r.cfg.freshnessEvery <= 0:
		p.note = "off"
	case r.admin == nil:
		p.note = "off: needs --http-url"
	case r.cat.NumRegions()*r.cat.NumModes() < 2:
		p.note = "off: needs two slots (one is reserved for the probe)"
	default:
		p.enabled = true
		p.slot = domain.Slot{Region: uint16(r.cat.NumRegions() - 1), Mode: uint16(r.cat.NumModes() - 1)}
		if r.pop != nil {
			p.slot, _ = r.pop.Probe()
		}
		p.region, p.mode = r.cat.Region(int(p.slot.Region)), r.cat.GameMode(int(p.slot.Mode))
		prefix := r.cfg.userPrefix
		if prefix == "" {
			prefix = "lg" + r.runID + "-"
		}
		p.userID = prefix + "probe"
	}
	return p
}

// start runs the probe in the background until stop; the channel returned
// closes when it has ended.
func (p *probe) start() <-chan struct{} {
	done := make(chan struct{})
	if !p.enabled {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		got, err := p.r.admin.Lobby(p.region)
		if err != nil {
			p.note = "off: " + err.Error()
			return
		}
		p.base = got[p.mode]
		repeat(p.r.cfg.freshnessEvery, p.quit, p.cycle)
	}()
	return done
}

// repeat calls cycle every interval until quit closes or cycle returns false.
func repeat(every time.Duration, quit <-chan struct{}, cycle func() bool) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-quit:
			return
		case <-t.C:
		}
		if !cycle() {
			return
		}
	}
}

// stop ends the probe after its current cycle.
func (p *probe) stop() { close(p.quit) }

// cycle toggles the probe player and measures when the lobby shows it. It
// returns false when the probe must end (its event was refused or lost).
func (p *probe) cycle() bool {
	typ := domain.EventEnter
	if p.present {
		typ = domain.EventLeave
	}
	ev := p.r.newEvent(workload.Planned{Player: -1, Type: typ, Slot: p.slot}, p.userID)
	var res outcome
	var at time.Time
	if p.r.bus != nil {
		res, at = p.r.publishEvent(ev)
	} else {
		res, at = p.r.postEvent(p.r.admin, nil, 0, ev.body)
	}
	switch res {
	case outcomeRejected:
		p.note = "stopped: the service refused a probe event"
		return false
	case outcomeUnresolved:
		p.uncertain = true
		p.note = "stopped: a probe event was never acknowledged"
		return false
	}
	p.present, p.lastAck = !p.present, at
	p.events++
	want := p.base
	if p.present {
		want++
	}
	p.await(want, at)
	return true
}

// await polls the lobby until the probe slot shows want, recording the time
// since the acknowledgement at.
func (p *probe) await(want int64, at time.Time) {
	for {
		got, err := p.r.admin.Lobby(p.region)
		now := time.Now()
		if err == nil && got[p.mode] == want {
			p.hist.record(0, now.Sub(at))
			return
		}
		if now.Sub(at) > probeTimeout {
			p.timeouts++
			return
		}
		select {
		case <-p.quit:
			return
		case <-time.After(probePoll):
		}
	}
}

// contribute adds the probe player to the expected counts.
func (p *probe) contribute(b workload.Bounds, now time.Time, ttl time.Duration) {
	switch {
	case !p.enabled:
	case p.uncertain: // present in exactly one of the two possible states
		b.Hi.Add(p.slot, 1)
	case !p.present:
	case ttl > 0 && now.Sub(p.lastAck) >= ttl:
		b.Hi.Add(p.slot, 1)
	default:
		b.Lo.Add(p.slot, 1)
		b.Hi.Add(p.slot, 1)
	}
}

// freshness is the probe's report.
type freshness struct {
	latency
	Timeouts int64  `json:"timeouts"`       // changes not visible within 5 s
	Slot     string `json:"slot,omitempty"` // the probe's region/game mode
	Note     string `json:"note,omitempty"` // why the probe is off or stopped
}

// report summarizes the probe.
func (p *probe) report() freshness {
	f := freshness{latency: summarize(p.hist.merged()), Timeouts: p.timeouts, Note: p.note}
	if p.enabled {
		f.Slot = fmt.Sprintf("%s/%d", p.region, p.mode)
	}
	return f
}
