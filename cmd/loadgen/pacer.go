package main

import (
	"math"
	"sync/atomic"
	"time"
)

// pacer hands out operation tickets to the workers. Open loop (rate > 0):
// ticket k is due at start + k/rate, whether or not earlier operations have
// finished, so a slow service shows up as lag (a ticket taken after its due
// time) instead of a lower offered rate. Closed loop (rate 0): tickets are
// handed out as fast as workers ask. Either way it stops after the limit of
// tickets or at the end time.
type pacer struct {
	start time.Time
	rate  float64         // tickets per second; 0 = closed loop
	end   time.Time       // zero: no time limit
	limit int64           // 0: no ticket limit
	stop  <-chan struct{} // closed to stop early
	next  atomic.Int64    // next ticket
	taken atomic.Int64    // tickets handed out
	ended atomic.Bool
	endAt atomic.Int64 // unix nanoseconds when the run was found over
}

// newPacer returns a pacer starting now.
func newPacer(rate float64, duration time.Duration, limit int64, stop <-chan struct{}) *pacer {
	p := &pacer{start: time.Now(), rate: rate, limit: limit, stop: stop}
	if duration > 0 {
		p.end = p.start.Add(duration)
	}
	return p
}

// due returns the scheduled time of ticket k (open loop).
func (p *pacer) due(k int64) time.Time {
	return p.start.Add(time.Duration(math.Round(float64(k) * 1e9 / p.rate)))
}

// take claims the next ticket and, open loop, waits until it is due, using
// the caller's timer. It returns the ticket, how late it was taken, and false
// when the run is over.
func (p *pacer) take(timer *time.Timer) (k int64, lag time.Duration, ok bool) {
	if p.ended.Load() {
		return 0, 0, false
	}
	k = p.next.Add(1) - 1
	if p.limit > 0 && k >= p.limit {
		return p.finish()
	}
	if p.rate <= 0 {
		if p.stopped() || (!p.end.IsZero() && !time.Now().Before(p.end)) {
			return p.finish()
		}
		p.taken.Add(1)
		return k, 0, true
	}
	due := p.due(k)
	if !p.end.IsZero() && !due.Before(p.end) {
		return p.finish()
	}
	if d := time.Until(due); d > 0 {
		timer.Reset(d)
		select {
		case <-p.stop:
			timer.Stop()
			return p.finish()
		case <-timer.C:
		}
	}
	if p.stopped() {
		return p.finish()
	}
	p.taken.Add(1)
	return k, time.Since(due), true
}

// finish marks the run over.
func (p *pacer) finish() (int64, time.Duration, bool) {
	if p.ended.CompareAndSwap(false, true) {
		p.endAt.Store(time.Now().UnixNano())
	}
	return 0, 0, false
}

// missed returns how many open-loop tickets were due before the run ended
// but never handed out (the service or the workers could not keep up).
func (p *pacer) missed() int64 {
	end := time.Now()
	if p.ended.Load() {
		end = time.Unix(0, p.endAt.Load())
	}
	return max(0, p.scheduled(end)-p.taken.Load())
}

// stopped reports whether the stop channel is closed.
func (p *pacer) stopped() bool {
	select {
	case <-p.stop:
		return true
	default:
		return false
	}
}

// scheduled returns how many tickets were due by time t (open loop).
func (p *pacer) scheduled(t time.Time) int64 {
	if p.rate <= 0 {
		return 0
	}
	if !p.end.IsZero() && t.After(p.end) {
		t = p.end
	}
	n := int64(math.Ceil(t.Sub(p.start).Seconds() * p.rate))
	if p.limit > 0 && n > p.limit {
		n = p.limit
	}
	return max(n, 0)
}

// newStoppedTimer returns a timer for take.
func newStoppedTimer() *time.Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}

// opIsRead reports whether ticket k is a GET in mixed mode: with r GETs per
// POST, exactly one ticket in every 1+r is a POST, spread evenly.
func opIsRead(k int64, readRatio float64) bool {
	f := 1 / (1 + readRatio)
	return math.Floor(float64(k+1)*f) == math.Floor(float64(k)*f)
}
