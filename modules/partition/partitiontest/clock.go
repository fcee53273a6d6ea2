// Package partitiontest holds in-memory fakes of the partition module's
// ports (Store, Feed, Coordinator, Clock) and a contract suite that every
// implementation of those ports passes: the fakes here, and the JetStream
// adapters in adapters/jetstream's tests.
package partitiontest

import (
	"slices"
	"sync"
	"time"

	"github.com/gamemodes/gamemodes/modules/partition"
)

// Clock is a partition.Clock that moves only when told (Advance). Timers
// due run on goroutines of their own; a ticker whose reader has not taken
// the previous tick gets the latest one instead, so after Advance the next
// tick read carries the new time.
type Clock struct {
	mu      sync.Mutex
	now     time.Time
	timers  []*fakeTimer
	tickers []*fakeTicker
}

type fakeTimer struct {
	at time.Time
	f  func()
}

type fakeTicker struct {
	next    time.Time
	every   time.Duration
	c       chan time.Time
	stopped bool
}

var _ partition.Clock = (*Clock)(nil)

// NewClock returns a clock reading start.
func NewClock(start time.Time) *Clock { return &Clock{now: start} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc runs f once the clock has advanced by d (at once if d <= 0).
func (c *Clock) AfterFunc(d time.Duration, f func()) {
	if d <= 0 {
		go f()
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.timers = append(c.timers, &fakeTimer{at: c.now.Add(d), f: f})
}

// NewTicker ticks every d of the clock's time.
func (c *Clock) NewTicker(d time.Duration) (<-chan time.Time, func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTicker{next: c.now.Add(d), every: d, c: make(chan time.Time, 1)}
	c.tickers = append(c.tickers, t)
	return t.c, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		t.stopped = true
	}
}

// Advance moves the clock d forward, firing the timers and ticks due on
// the way in time order.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	end := c.now.Add(d)
	c.tickers = slices.DeleteFunc(c.tickers, func(t *fakeTicker) bool { return t.stopped })
	for _, t := range c.tickers {
		if !t.next.After(end) {
			// Every tick up to end collapses into the latest one.
			n := end.Sub(t.next) / t.every
			t.next = t.next.Add(n * t.every)
			tick := t.next
			t.next = t.next.Add(t.every)
			select {
			case <-t.c:
			default:
			}
			t.c <- tick
		}
	}
	slices.SortStableFunc(c.timers, func(a, b *fakeTimer) int { return a.at.Compare(b.at) })
	i := 0
	for ; i < len(c.timers) && !c.timers[i].at.After(end); i++ {
		go c.timers[i].f()
	}
	c.timers = slices.Delete(c.timers, 0, i)
	c.now = end
}

// Timers is how many timers wait to fire.
func (c *Clock) Timers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}
