package main

import (
	"fmt"
	"io"
	"maps"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram range: 1 us to 60 s at 3 significant digits.
const (
	histMinMicros = 1
	histMaxMicros = 60_000_000
	histSigFigs   = 3
)

// histogram is an HDR latency histogram split in shards (one per worker) so
// recording does not contend; merged reads combine the shards.
type histogram struct{ shards []histShard }

type histShard struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram
	_  [40]byte // keep shards' locks on separate cache lines
}

// newHistogram returns a histogram with n shards.
func newHistogram(n int) *histogram {
	h := &histogram{shards: make([]histShard, max(n, 1))}
	for i := range h.shards {
		h.shards[i].h = hdrhistogram.New(histMinMicros, histMaxMicros, histSigFigs)
	}
	return h
}

// record adds one duration to shard s.
func (h *histogram) record(s int, d time.Duration) {
	us := min(max(d.Microseconds(), histMinMicros), histMaxMicros)
	sh := &h.shards[s%len(h.shards)]
	sh.mu.Lock()
	_ = sh.h.RecordValue(us)
	sh.mu.Unlock()
}

// merged returns one histogram of all shards.
func (h *histogram) merged() *hdrhistogram.Histogram {
	out := hdrhistogram.New(histMinMicros, histMaxMicros, histSigFigs)
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		out.Merge(sh.h)
		sh.mu.Unlock()
	}
	return out
}

// latency is the summary of a histogram in milliseconds.
type latency struct {
	Count int64   `json:"count"` // samples recorded
	P50   float64 `json:"p50"`   // median
	P90   float64 `json:"p90"`   // 90th percentile
	P99   float64 `json:"p99"`   // 99th percentile
	P999  float64 `json:"p99_9"` // 99.9th percentile
	Max   float64 `json:"max"`   // largest sample
}

// summarize returns the percentiles of a histogram recorded in microseconds.
func summarize(h *hdrhistogram.Histogram) latency {
	ms := func(us int64) float64 { return math.Round(float64(us)) / 1000 }
	if h.TotalCount() == 0 {
		return latency{}
	}
	return latency{
		Count: h.TotalCount(),
		P50:   ms(h.ValueAtQuantile(50)),
		P90:   ms(h.ValueAtQuantile(90)),
		P99:   ms(h.ValueAtQuantile(99)),
		P999:  ms(h.ValueAtQuantile(99.9)),
		Max:   ms(h.Max()),
	}
}

// counters are the run's event and request counts.
type counters struct {
	sent       atomic.Int64 // events sent (first attempts)
	acked      atomic.Int64 // events acknowledged (202 or PubAck)
	duplicates atomic.Int64 // acknowledgements saying the event was stored before
	retries    atomic.Int64 // attempts after the first
	rejected   atomic.Int64 // events refused for good (4xx): nothing stored
	unresolved atomic.Int64 // events never acknowledged within --retry-for
	gets       atomic.Int64 // successful lobby GETs
	late       atomic.Int64 // open loop: tickets taken more than lateAfter after they were due
	failures   atomic.Int64 // failed attempts, all kinds

	mu   sync.Mutex
	errs map[string]int64
}

// lateAfter is how late an open-loop ticket must be to count as a late send.
const lateAfter = 10 * time.Millisecond

// fail counts a failed attempt under key, e.g. "post:503" or "nats:timeout".
func (c *counters) fail(key string) {
	c.failures.Add(1)
	c.mu.Lock()
	if c.errs == nil {
		c.errs = map[string]int64{}
	}
	c.errs[key]++
	c.mu.Unlock()
}

// errors returns a copy of the failures by key.
func (c *counters) errors() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := maps.Clone(c.errs)
	if out == nil {
		out = map[string]int64{}
	}
	return out
}

// progress prints one line per interval to w until stop is closed.
func progress(w io.Writer, every time.Duration, start time.Time, c *counters, post, get *histogram, stop <-chan struct{}) {
	t := time.NewTicker(every)
	defer t.Stop()
	var lastAcked, lastGets int64
	last := start
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			acked, gets := c.acked.Load(), c.gets.Load()
			dt := now.Sub(last).Seconds()
			fmt.Fprintf(w, "loadgen %5.0fs sent=%d acked=%d rate=%.0f/s gets=%d get_rate=%.0f/s errors=%d post_p99=%.2fms get_p99=%.2fms\n",
				now.Sub(start).Seconds(), c.sent.Load(), acked, float64(acked-lastAcked)/dt, gets, float64(gets-lastGets)/dt,
				c.failures.Load(), summarize(post.merged()).P99, summarize(get.merged()).P99)
			lastAcked, lastGets, last = acked, gets, now
		}
	}
}
