package main

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/cmd/internal/proctest"

	"github.com/gamemodes/gamemodes/nats/natstest"
)

// startRole runs a gamemodes process with some roles against an external NATS.
func startRole(t *testing.T, natsURL string, extra ...string) *proc {
	t.Helper()
	port := proctest.FreePort(t)
	args := append([]string{"--nats-url", natsURL}, extra...)
	// startProc's --nats-listen and --data-dir are unused with --nats-url.
	p := startProc(t, port, proctest.FreePort(t), t.TempDir(), args...)
	p.natsURL = natsURL
	return p
}

var ownedLine = regexp.MustCompile(`(?m)^gamemodes_partition_owned\{partition="(\d+)"\} 1$`)

// owned scrapes the partitions a worker process owns.
func owned(t *testing.T, p *proc) []int {
	var out []int
	for _, m := range ownedLine.FindAllStringSubmatch(scrape(t, p.httpURL), -1) {
		n, _ := strconv.Atoi(m[1])
		out = append(out, n)
	}
	return out
}

// waitShared waits until the workers own every partition once, fairly.
func waitShared(t *testing.T, partitions int, within time.Duration, workers ...*proc) time.Duration {
	t.Helper()
	start := time.Now()
	var last string
	for time.Since(start) < within {
		seen := map[int]int{}
		fair := true
		last = ""
		for _, w := range workers {
			ps := owned(t, w)
			last += fmt.Sprintf(" %v", ps)
			if len(ps) < partitions/len(workers) || len(ps) > (partitions+len(workers)-1)/len(workers) {
				fair = false
			}
			for _, p := range ps {
				seen[p]++
			}
		}
		ok := fair && len(seen) == partitions
		for _, n := range seen {
			ok = ok && n == 1
		}
		if ok {
			return time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("partitions not shared fairly within %s:%s", within, last)
	return 0
}

func TestSeparateRolesFailOverAndRebalance(t *testing.T) {
	ns := natstest.RunServer(t)
	url := ns.ClientURL()
	edge := startRole(t, url, "--roles", "edge")
	edge.waitReady()
	var workers []*proc
	for i := 0; i < 3; i++ {
		w := startRole(t, url, "--roles", "worker")
		w.waitReady()
		workers = append(workers, w)
	}
	waitShared(t, 8, 15*time.Second, workers...)

	// Load over HTTP on the edge while a worker dies.
	d := newDriver(t, edge)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	sent := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(5, 6))
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := d.send(2*i, strconv.Itoa(rng.IntN(300)), rng); err != nil { // even: over HTTP
				t.Errorf("send: %v", err)
				return
			}
			sent++
		}
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		d.mu.Lock()
		n := len(d.accepted)
		d.mu.Unlock()
		if n >= 200 || time.Now().After(deadline) {
			break // load is running
		}
	}
	if err := workers[1].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-workers[1].exited
	took := waitShared(t, 8, 15*time.Second, workers[0], workers[2])
	t.Logf("partitions of the killed worker taken over in %s", took)

	w4 := startRole(t, url, "--roles", "worker")
	w4.waitReady()
	took = waitShared(t, 8, 15*time.Second, workers[0], workers[2], w4)
	t.Logf("rebalanced onto a fourth worker in %s", took)
	close(stop)
	wg.Wait()
	t.Logf("%d events acknowledged during the test", sent)
	edge.waitPopular(d.truth.counts(), 10*time.Second)
}
