package main

import (
	"math/rand/v2"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/cmd/internal/proctest"

	"github.com/gamemodes/gamemodes/adapters/postgres/pgtest"
)

// TestSIGTERMUnderLoadLosesNothingAcknowledged stops the service with
// SIGTERM while clients post: it must exit 0, and after a restart every
// acknowledged event is counted and archived exactly once (events whose post
// failed are retried with the same event_id, as a client would).
func TestSIGTERMUnderLoadLosesNothingAcknowledged(t *testing.T) {
	pg := pgtest.Schema(t)
	httpPort, natsPort, dir := proctest.FreePort(t), proctest.FreePort(t), t.TempDir()
	p := startProc(t, httpPort, natsPort, dir, "--postgres-url", pg)
	p.waitReady()
	d := newDriver(t, p)

	type pending struct {
		i    int
		user string
		seed uint64
	}
	var (
		mu      sync.Mutex
		retries []pending
		wg      sync.WaitGroup
	)
	const workers = 16
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; ; i += workers {
				user := strconv.Itoa(w + workers*(i%97))
				seed := uint64(i)
				// Even i: over HTTP (the driver's rule), so a failure is a refused connection or a 503.
				if err := d.send(2*i, user, rand.New(rand.NewPCG(seed, 1))); err != nil {
					mu.Lock()
					retries = append(retries, pending{2 * i, user, seed})
					mu.Unlock()
					return
				}
			}
		}(w)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		d.mu.Lock()
		n := len(d.accepted)
		d.mu.Unlock()
		if n >= 3000 || time.Now().After(deadline) {
			break
		}
	}
	sigterm := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
		if p.exitCode != 0 {
			t.Fatalf("exit code %d after SIGTERM", p.exitCode)
		}
		t.Logf("drained and exited %s after SIGTERM", time.Since(sigterm))
	case <-time.After(30 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
	wg.Wait()

	p2 := startProc(t, httpPort, natsPort, dir, "--postgres-url", pg)
	p2.waitReady()
	d.p = p2
	for _, r := range retries { // the same event ids: stored at most once
		if err := d.send(r.i, r.user, rand.New(rand.NewPCG(r.seed, 1))); err != nil {
			t.Fatalf("retry: %v", err)
		}
	}
	t.Logf("%d events acknowledged, %d retried after the restart", len(d.accepted), len(retries))
	p2.waitPopular(d.truth.counts(), 30*time.Second)
	archiveCheck(t, pg, d.accepted, 60*time.Second)
}
