package natstest

import (
	"testing"
	"time"
)

// WaitFor polls cond (every few milliseconds at first, then every 20 ms)
// until it holds, and fails the test naming what it waited for when within
// has passed first. It is the one wait-until helper of the tests.
func WaitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	pause := 2 * time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(pause)
		pause = min(2*pause, 20*time.Millisecond)
	}
}
