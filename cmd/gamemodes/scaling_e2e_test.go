package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/cmd/internal/proctest"
	"github.com/gamemodes/gamemodes/nats/natstest"
)

// scalePlan is the load and the durations of one scaling run.
type scalePlan struct {
	rate       int           // events/s the load generator publishes on NATS
	duration   time.Duration // how long it publishes
	players    int
	partitions int
}

// scalingPlan is the run of `go test` (outcomes only), or with
// GAMEMODES_SCALE_MEASURE=1 the measured run of the README: 10,000 events/s
// for 75 s (GAMEMODES_SCALE_RATE and GAMEMODES_SCALE_DURATION change them).
func scalingPlan(t *testing.T) (scalePlan, bool) {
	plan := scalePlan{rate: 1_500, duration: 25 * time.Second, players: 20_000, partitions: 32}
	measure := os.Getenv("GAMEMODES_SCALE_MEASURE") == "1"
	if measure {
		plan = scalePlan{rate: 10_000, duration: 75 * time.Second, players: 100_000, partitions: 32}
	}
	if v := os.Getenv("GAMEMODES_SCALE_RATE"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("GAMEMODES_SCALE_RATE=%q: want events per second", v)
		}
		plan.rate = n
	}
	if v := os.Getenv("GAMEMODES_SCALE_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 12*time.Second {
			t.Fatalf("GAMEMODES_SCALE_DURATION=%q: want a Go duration of at least 12s", v)
		}
		plan.duration = d
	}
	return plan, measure
}

var appliedLine = regexp.MustCompile(`(?m)^gamemodes_events_applied_total\{outcome="[a-z_]+"\} (\S+)$`)

// applied sums a worker's gamemodes_events_applied_total.
func applied(t *testing.T, p *proc) float64 {
	sum := 0.0
	for _, m := range appliedLine.FindAllStringSubmatch(scrape(t, p.httpURL), -1) {
		v, _ := strconv.ParseFloat(m[1], 64)
		sum += v
	}
	return sum
}

// lagSampler polls the edge's operations status for the largest partition
// lag (stream's last sequence minus the sequence the partition's count shard
// says is applied) until stopped.
type lagSampler struct {
	mu   sync.Mutex
	max  uint64
	last uint64
	stop chan struct{}
	done chan struct{}
}

func sampleLag(t *testing.T, edge *proc) *lagSampler {
	s := &lagSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			select {
			case <-s.stop:
				return
			case <-time.After(250 * time.Millisecond):
			}
			resp, err := http.Get(edge.httpURL + "/api/v1/ops/status")
			if err != nil {
				continue
			}
			var st struct {
				Cluster struct {
					Partitions struct {
						Items []struct {
							Lag uint64 `json:"lag"`
						} `json:"items"`
					} `json:"partitions"`
				} `json:"cluster"`
			}
			err = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if err != nil {
				continue
			}
			var worst uint64
			for _, it := range st.Cluster.Partitions.Items {
				worst = max(worst, it.Lag)
			}
			s.mu.Lock()
			s.max, s.last = max(s.max, worst), worst
			s.mu.Unlock()
		}
	}()
	return s
}

// take returns the largest lag seen since the last take, and resets it.
func (s *lagSampler) take() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.max
	s.max = s.last
	return m
}

// TestScalingWorkersUnderSteadyLoad is what an autoscaler does to the
// workers, with real processes under a steady NATS load from cmd/loadgen
// (its ground truth checks the lists): 1 worker, then 4 (three added at
// once), then back to 1 by SIGTERM one at a time. After every step the
// partitions are shared fairly, a worker added applies events, a worker
// stopped exits cleanly having handed its partitions over, and at the end
// the load generator finds every event acknowledged and every lobby list
// exactly equal to its ground truth. With GAMEMODES_SCALE_MEASURE=1 it runs
// at 10,000 events/s and logs the figures of the README ("Running at
// scale"): go test ./cmd/gamemodes/ -run Scaling -v -timeout 20m.
func TestScalingWorkersUnderSteadyLoad(t *testing.T) {
	plan, measure := scalingPlan(t)
	loadgen, err := proctest.Build(t.TempDir(), "./cmd/loadgen")
	if err != nil {
		t.Fatal(err)
	}
	ns := natstest.RunServer(t)
	url := ns.ClientURL()
	parts := strconv.Itoa(plan.partitions)
	edge := startRole(t, url, "--roles", "edge", "--partitions", parts)
	edge.waitReady()
	startWorker := func() *proc {
		return startRole(t, url, "--roles", "worker", "--partitions", parts, "--log-level", "warn")
	}
	workers := []*proc{startWorker()}
	workers[0].waitReady()
	waitShared(t, plan.partitions, 30*time.Second, workers...)

	lg := exec.Command(loadgen, "--mode", "nats", "--nats-url", url, "--http-url", edge.httpURL,
		"--rate", strconv.Itoa(plan.rate), "--duration", plan.duration.String(), "--players", strconv.Itoa(plan.players),
		"--regions", "US,EU,BR", "--seed", "14", "--progress-every", "0", "--settle", "60s")
	lgOut := &proctest.Buffer{}
	lg.Stdout = lgOut // the JSON report; stderr goes to the test's log on failure
	lgErr := &proctest.Buffer{}
	lg.Stderr = lgErr
	if err := lg.Start(); err != nil {
		t.Fatal(err)
	}
	lgDone := make(chan error, 1)
	go func() { lgDone <- lg.Wait() }()
	t.Cleanup(func() {
		_ = lg.Process.Kill()
		if t.Failed() {
			t.Logf("loadgen stderr:\n%s", proctest.Tail(lgErr.String(), 8<<10))
		}
	})
	lag := sampleLag(t, edge)
	defer func() { close(lag.stop); <-lag.done }()

	var figures []string
	note := func(format string, a ...any) {
		line := fmt.Sprintf(format, a...)
		figures = append(figures, line)
		t.Log(line)
	}
	// rates measures each worker's applied events per second over a window.
	rates := func(ws []*proc, window time.Duration) []float64 {
		before := make([]float64, len(ws))
		for i, w := range ws {
			before[i] = applied(t, w)
		}
		time.Sleep(window)
		out := make([]float64, len(ws))
		for i, w := range ws {
			out[i] = (applied(t, w) - before[i]) / window.Seconds()
		}
		return out
	}
	step := plan.duration / 6

	// Steady on one worker.
	time.Sleep(step)
	note("1 worker: applied %.0f events/s; largest partition lag %d events", rates(workers, 2*time.Second)[0], lag.take())

	// 1 -> 4: three workers added at once, as an HPA scaling up does.
	var added []*proc
	for i := 0; i < 3; i++ {
		added = append(added, startWorker())
	}
	for _, w := range added {
		w.waitReady()
	}
	workers = append(workers, added...)
	took := waitShared(t, plan.partitions, 60*time.Second, workers...)
	r := rates(workers, 2*time.Second)
	note("1 -> 4 workers: partitions shared %s after the new workers were ready; applied events/s per worker %.0f; largest partition lag %d events",
		took.Round(10*time.Millisecond), r, lag.take())
	for i, w := range added {
		if r[i+1] <= 0 {
			t.Errorf("added worker %d applies nothing (%.0f events/s) though it owns %v", i+1, r[i+1], owned(t, w))
		}
	}
	time.Sleep(step)

	// 4 -> 1: SIGTERM one at a time, as an HPA scaling down does.
	for len(workers) > 1 {
		w := workers[len(workers)-1]
		workers = workers[:len(workers)-1]
		stopped := time.Now()
		exitedAfter := make(chan time.Duration, 1)
		go func() {
			<-w.exited
			exitedAfter <- time.Since(stopped)
		}()
		if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		took := waitShared(t, plan.partitions, 60*time.Second, workers...)
		var exited time.Duration
		select {
		case exited = <-exitedAfter:
			if w.exitCode != 0 {
				t.Errorf("worker exit code %d after SIGTERM", w.exitCode)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("worker did not exit 30 s after SIGTERM")
		}
		note("%d -> %d workers (SIGTERM): the process exited %s after the signal, its partitions were owned by the rest %s after it; largest partition lag %d events",
			len(workers)+1, len(workers), exited.Round(10*time.Millisecond), took.Round(10*time.Millisecond), lag.take())
		time.Sleep(step / 3)
	}
	note("back on 1 worker: applied %.0f events/s", rates(workers, 2*time.Second)[0])

	select {
	case err = <-lgDone:
	case <-time.After(plan.duration + 3*time.Minute):
		t.Fatal("loadgen did not finish")
	}
	var rep struct {
		EventsSent  int64            `json:"events_sent"`
		EventsAcked int64            `json:"events_acked"`
		Rejected    int64            `json:"rejected"`
		Unresolved  int64            `json:"unresolved"`
		Rate        float64          `json:"rate"`
		MissedSends int64            `json:"missed_sends"`
		Errors      map[string]int64 `json:"errors"`
		Freshness   struct {
			Count int64   `json:"count"`
			P50   float64 `json:"p50"`
			P99   float64 `json:"p99"`
			Max   float64 `json:"max"`
		} `json:"freshness_ms"`
		Verify struct {
			Result  string  `json:"result"`
			Exact   bool    `json:"exact"`
			WaitedS float64 `json:"waited_s"`
		} `json:"verify"`
	}
	if jerr := json.Unmarshal([]byte(lgOut.String()), &rep); jerr != nil {
		t.Fatalf("loadgen report %q: %v (exit: %v)", lgOut.String(), jerr, err)
	}
	if err != nil || rep.Verify.Result != "pass" || !rep.Verify.Exact {
		t.Errorf("loadgen: %v, verify %+v: the lists differ from its ground truth, or events were lost", err, rep.Verify)
	}
	if rep.Unresolved != 0 || rep.Rejected != 0 || rep.EventsAcked != rep.EventsSent {
		t.Errorf("clients saw the scaling: %d sent, %d acknowledged, %d rejected, %d unresolved", rep.EventsSent, rep.EventsAcked, rep.Rejected, rep.Unresolved)
	}
	note("clients (loadgen --mode nats --rate %d): %d events acknowledged of %d at %.0f/s, %d missed sends, errors %v; ack-to-visible p50 %.1f ms p99 %.1f ms max %.1f ms (%d probes); lists %s (exact %v) %.1f s after the last event",
		plan.rate, rep.EventsAcked, rep.EventsSent, rep.Rate, rep.MissedSends, rep.Errors, rep.Freshness.P50, rep.Freshness.P99, rep.Freshness.Max,
		rep.Freshness.Count, rep.Verify.Result, rep.Verify.Exact, rep.Verify.WaitedS)
	if measure {
		load, _ := os.ReadFile("/proc/loadavg")
		fmt.Printf("scaling figures (load average at the end: %s):\n", strings.TrimSpace(string(load)))
		for _, f := range figures {
			fmt.Println("  " + f)
		}
	}
}
