package main

import (
	"math"
	"time"
)

// summary is the final machine-readable line on stdout.
type summary struct {
	Mode        string  `json:"mode"`        // --mode
	RunID       string  `json:"run_id"`      // names the run in user and event ids
	Seed        uint64  `json:"seed"`        // the workload's random seed (--seed to repeat it)
	TargetRate  float64 `json:"target_rate"` // --rate; 0 = closed loop
	Concurrency int     `json:"concurrency"` // --concurrency
	Players     int     `json:"players"`     // --players (0 in read mode)
	DurationS   float64 `json:"duration_s"`  // from the first send to the last event resolved
	EventsSent  int64   `json:"events_sent"` // events sent (first attempts)
	EventsAcked int64   `json:"events_acked"`
	Duplicates  int64   `json:"duplicates"` // acknowledgements saying an earlier attempt was stored
	Retries     int64   `json:"retries"`    // attempts after the first
	Rejected    int64   `json:"rejected"`   // events refused for good (4xx)
	Unresolved  int64   `json:"unresolved"` // events never acknowledged within --retry-for
	Rate        float64 `json:"rate"`       // events acknowledged per second
	Gets        int64   `json:"gets"`       // successful lobby GETs
	GetRate     float64 `json:"get_rate"`   // successful lobby GETs per second
	// Post is POST-to-202 latency; in nats mode publish-to-PubAck.
	Post latency `json:"post_latency_ms"`
	Get  latency `json:"get_latency_ms"`
	// Lag is how late open-loop operations started against their schedule.
	Lag         *latency         `json:"lag_ms,omitempty"`
	LateSends   int64            `json:"late_sends"`       // open-loop operations started over 10 ms late
	MissedSends int64            `json:"missed_sends"`     // open-loop operations due but never started
	Freshness   freshness        `json:"freshness_ms"`     // acknowledged-to-visible, from the probe
	RYW         *rywReport       `json:"ryw_ms,omitempty"` // read your writes (--ryw-every), from its probe
	Errors      map[string]int64 `json:"errors"`           // failed attempts by kind and status, e.g. "post:503"
	Verify      verifyReport     `json:"verify"`
	// CPU is the service side's CPU during the send phase (--cpu-pids,
	// --cpu-postgres), per acknowledged event; CPUAfter is the CPU from the
	// end of sending to the end of verification (the backlog the service
	// still worked through, plus the verification's reads), also divided by
	// the events acknowledged.
	CPU      *cpuReport `json:"cpu,omitempty"`
	CPUAfter *cpuReport `json:"cpu_after,omitempty"`
	// Engine is the service's own count of engine messages, bytes and
	// allocations per event during the send phase (--service-metrics).
	Engine *engineReport `json:"engine,omitempty"`
}

// summarize builds the summary of the send phase (elapsed long).
func (r *runner) summarize(elapsed time.Duration, pr *probe) summary {
	secs := elapsed.Seconds()
	per := func(n int64) float64 { return math.Round(float64(n)/secs*10) / 10 }
	s := summary{
		Mode: r.cfg.mode, RunID: r.runID, Seed: r.seed, TargetRate: r.cfg.rate, Concurrency: r.cfg.concurrency,
		DurationS:   math.Round(secs*1000) / 1000,
		EventsSent:  r.c.sent.Load(),
		EventsAcked: r.c.acked.Load(),
		Duplicates:  r.c.duplicates.Load(),
		Retries:     r.c.retries.Load(),
		Rejected:    r.c.rejected.Load(),
		Unresolved:  r.c.unresolved.Load(),
		Rate:        per(r.c.acked.Load()),
		Gets:        r.c.gets.Load(),
		GetRate:     per(r.c.gets.Load()),
		Post:        summarize(r.post.merged()),
		Get:         summarize(r.get.merged()),
		Freshness:   pr.report(),
		RYW:         r.ryw.report(),
		Errors:      r.c.errors(),
	}
	if r.pop != nil {
		s.Players = r.pop.Len()
	}
	if r.cfg.rate > 0 {
		lag := summarize(r.lag.merged())
		s.Lag = &lag
		s.LateSends = r.c.late.Load()
		s.MissedSends = r.pace.missed()
	}
	return s
}
