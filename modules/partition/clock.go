package partition

import "time"

// Clock is the owner's source of time: its expiry ticks, write retries,
// shard-flush pacing and drain deadline all go through it, so tests can
// drive an owner with a fake clock (partitiontest.Clock) in milliseconds.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f on a goroutine of its own once d has passed.
	AfterFunc(d time.Duration, f func())
	// NewTicker sends the time on c every d (dropping ticks a slow reader
	// misses) until stop is called.
	NewTicker(d time.Duration) (c <-chan time.Time, stop func())
}

// SystemClock is the wall clock.
type SystemClock struct{}

// Now is time.Now.
func (SystemClock) Now() time.Time { return time.Now() }

// AfterFunc is time.AfterFunc.
func (SystemClock) AfterFunc(d time.Duration, f func()) { time.AfterFunc(d, f) }

// NewTicker is time.NewTicker.
func (SystemClock) NewTicker(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTicker(d)
	return t.C, t.Stop
}
