package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gamemodes/gamemodes/cmd/internal/netcluster"
	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Names of the workers' durable-lag gauges (one child per partition).
const (
	lagSecondsMetric = "gamemodes_partition_durable_lag_seconds"
	lagEventsMetric  = "gamemodes_partition_durable_lag_events"
)

// sample is one observation of the cluster.
type sample struct {
	at      time.Time
	events  uint64  // events stream last sequence
	players uint64  // players stream last sequence
	lagS    float64 // max durable lag in seconds over partitions and workers; NaN when no worker exports it
	lagE    float64 // max durable lag in events; NaN likewise
}

// result is bench's JSON line.
type result struct {
	Label       string  `json:"label,omitempty"`
	RTTms       float64 `json:"rtt_ms"`        // node-to-node round trip emulated
	ClientRTTms float64 `json:"client_rtt_ms"` // client-to-node round trip emulated
	Nodes       int     `json:"nodes"`
	Edges       int     `json:"edges"`
	Workers     int     `json:"workers"`
	TargetRate  float64 `json:"target_rate"` // loadgen --rate (0: closed loop)

	EventsAckedPerS   float64         `json:"events_acked_per_s"`  // loadgen's rate
	LoadS             float64         `json:"load_s"`              // from the first to the last event stored (events stream)
	EventsStored      uint64          `json:"events_stored"`       // events stream growth during the run
	PlayerWritesPerS  float64         `json:"player_writes_per_s"` // players stream growth per second during the load
	PlayerWrites      uint64          `json:"player_writes"`       // players stream growth during the whole run
	DurableLag        *stats          `json:"durable_lag_s"`       // max over partitions and workers, sampled during the load; null without the metric
	DurableLagEvents  *stats          `json:"durable_lag_events"`  // likewise, in events
	CatchUpLagS       *float64        `json:"catch_up_lag_s"`      // from the load's end until no partition has durable lag; null without the metric or when not caught up
	CatchUpPlayersS   *float64        `json:"catch_up_players_s"`  // from the load's end until the players stream stopped growing; null when it did not
	CaughtUp          bool            `json:"caught_up"`           // both caught up within --catchup-timeout
	RYW               json.RawMessage `json:"ryw_ms"`              // loadgen's read-your-writes report
	Exact             bool            `json:"exact"`               // loadgen's verification passed with an exact truth
	Verify            string          `json:"verify"`              // loadgen's verification result
	HarnessCPUPercent float64         `json:"harness_cpu_percent"` // CPU of this process (the links) over the run, percent of one core
	LoadAvg           float64         `json:"load_avg_1m"`         // the machine's 1-minute load average at the load's end (others' work included)
	Samples           int             `json:"samples"`
	Loadgen           json.RawMessage `json:"loadgen"` // loadgen's whole summary
}

// stats are percentiles of samples.
type stats struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// loadgenSummary is the part of loadgen's JSON line bench reads.
type loadgenSummary struct {
	TargetRate float64         `json:"target_rate"`
	Rate       float64         `json:"rate"`
	RYW        json.RawMessage `json:"ryw_ms"`
	Verify     struct {
		Result string `json:"result"`
		Exact  bool   `json:"exact"`
	} `json:"verify"`
}

// bench runs loadgen against the cluster while sampling it, then waits for
// the catch-up and summarizes.
func bench(ctx context.Context, c *netcluster.Cluster, o options, loadgenArgs []string, log *slog.Logger) (result, error) {
	res := result{Label: o.label, RTTms: ms(o.rtt), ClientRTTms: ms(o.clientRTT), Nodes: len(c.Nodes),
		Edges: len(c.Role(netcluster.RoleEdge)), Workers: len(c.Role(netcluster.RoleWorker))}
	bin := o.loadgen
	if bin == "" {
		bin = filepath.Join(o.binDir, "loadgen")
		if o.build {
			build := exec.Command("go", "build", "-o", bin, "./cmd/loadgen")
			if out, err := build.CombinedOutput(); err != nil {
				return res, fmt.Errorf("build loadgen: %w\n%s", err, out)
			}
		}
	}
	// Sample through the nodes' own ports: the harness's reads are not part
	// of the emulated network.
	var direct []string
	for _, n := range c.Nodes {
		direct = append(direct, fmt.Sprintf("nats://127.0.0.1:%d", n.ClientPort))
	}
	nc, err := nats.Connect(strings.Join(direct, ","), nats.MaxReconnects(-1))
	if err != nil {
		return res, fmt.Errorf("connect: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return res, err
	}
	var metrics []string
	for _, w := range c.Role(netcluster.RoleWorker) {
		metrics = append(metrics, w.URL()+"/metrics")
	}
	s := &sampler{js: js, metrics: metrics, http: &http.Client{Timeout: time.Second}}

	cpu0, wall0 := cpuTime(), time.Now()
	args := append([]string{"--mode", "nats", "--nats-url", c.ClientURLs(), "--http-url", c.Edge().URL()}, loadgenArgs...)
	errPath := filepath.Join(o.dir, "logs", "loadgen.log")
	errFile, err := os.Create(errPath)
	if err != nil {
		return res, err
	}
	defer errFile.Close()
	var out bytes.Buffer
	lg := exec.CommandContext(ctx, bin, args...)
	lg.Stdout, lg.Stderr = &out, errFile
	lg.Cancel = func() error { return lg.Process.Signal(syscall.SIGINT) }
	log.Info("load", "loadgen", strings.Join(args, " "), "log", errPath)
	if err := lg.Start(); err != nil {
		return res, fmt.Errorf("start loadgen: %w", err)
	}
	loadDone := make(chan error, 1)
	go func() { loadDone <- lg.Wait() }()

	var samples []sample
	tick := time.NewTicker(o.sampleEvery)
	defer tick.Stop()
	var loadErr error
	running := true
	var loadEnded time.Time
	for running || !s.caughtUp(samples, o.quiet) && time.Since(loadEnded) < o.catchupTimeout {
		select {
		case <-ctx.Done(): // loadgen got SIGINT: it ends its run; give it a moment
			select {
			case <-loadDone:
			case <-time.After(10 * time.Second):
				_ = lg.Process.Kill()
				<-loadDone
			}
			return res, ctx.Err()
		case loadErr = <-loadDone:
			running, loadEnded = false, time.Now()
			res.LoadAvg = loadAvg()
			log.Info("load ended; waiting for the catch-up", "exit", loadErr)
			continue
		case <-tick.C:
		}
		if sm, ok := s.sample(ctx); ok {
			samples = append(samples, sm)
		}
	}
	res.HarnessCPUPercent = math.Round(1000*(cpuTime()-cpu0).Seconds()/time.Since(wall0).Seconds()) / 10
	if o.samplesOut != "" {
		if err := writeSamples(o.samplesOut, samples); err != nil {
			return res, err
		}
	}
	lines := bytes.Split(bytes.TrimSpace(out.Bytes()), []byte("\n"))
	last := lines[len(lines)-1]
	var lsum loadgenSummary
	if err := json.Unmarshal(last, &lsum); err != nil {
		return res, fmt.Errorf("loadgen printed no summary (exit %v; see %s)", loadErr, errPath)
	}
	res.Loadgen, res.RYW = json.RawMessage(last), lsum.RYW
	res.TargetRate, res.EventsAckedPerS = lsum.TargetRate, lsum.Rate
	res.Verify, res.Exact = lsum.Verify.Result, lsum.Verify.Result == "pass" && lsum.Verify.Exact
	summarizeSamples(&res, samples, o.sampleEvery, o.quiet)
	return res, nil
}

// sampler reads the streams' last sequences and the workers' lag gauges.
type sampler struct {
	js      jetstream.JetStream
	metrics []string
	http    *http.Client
}

func (s *sampler) sample(ctx context.Context) (sample, bool) {
	sm := sample{at: time.Now(), lagS: math.NaN(), lagE: math.NaN()}
	for name, into := range map[string]*uint64{topology.EventsStream: &sm.events, topology.PlayersStream: &sm.players} {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := s.js.Stream(rctx, name)
		cancel()
		if err != nil {
			return sm, false
		}
		*into = st.CachedInfo().State.LastSeq
	}
	for _, u := range s.metrics {
		lagS, lagE, err := s.lag(ctx, u)
		if err != nil {
			continue // a worker restarting: the others still count
		}
		sm.lagS, sm.lagE = nanMax(sm.lagS, lagS), nanMax(sm.lagE, lagE)
	}
	return sm, true
}

// lag returns the largest durable-lag gauges of one worker's /metrics
// (NaN when it has none).
func (s *sampler) lag(ctx context.Context, url string) (seconds, events float64, err error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := s.http.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	seconds, events = maxGauges(resp.Body)
	return seconds, events, nil
}

// maxGauges scans a Prometheus text exposition for the durable-lag gauges
// and returns the largest value of each (NaN when absent).
func maxGauges(r io.Reader) (seconds, events float64) {
	seconds, events = math.NaN(), math.NaN()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		var into *float64
		switch {
		case strings.HasPrefix(line, lagSecondsMetric+"{") || strings.HasPrefix(line, lagSecondsMetric+" "):
			into = &seconds
		case strings.HasPrefix(line, lagEventsMetric+"{") || strings.HasPrefix(line, lagEventsMetric+" "):
			into = &events
		default:
			continue
		}
		f := strings.Fields(line[strings.LastIndexByte(line, '}')+1:])
		if len(f) == 0 {
			continue
		}
		if v, err := strconv.ParseFloat(f[0], 64); err == nil {
			*into = nanMax(*into, v)
		}
	}
	return seconds, events
}

// caughtUp reports whether, at the last sample, the players stream has not
// grown for quiet and no partition had durable lag.
func (s *sampler) caughtUp(samples []sample, quiet time.Duration) bool {
	if len(samples) == 0 {
		return false
	}
	last := samples[len(samples)-1]
	if last.lagS > 0 || last.lagE > 0 {
		return false
	}
	for i := len(samples) - 1; i >= 0; i-- {
		if samples[i].players != last.players { // samples[i+1] has the last value first
			return last.at.Sub(samples[i+1].at) >= quiet
		}
	}
	return last.at.Sub(samples[0].at) >= quiet
}

// summarizeSamples fills the stream- and lag-based figures: the load is
// the span from the first sample with a stored event to the last sample at
// which the events stream grew.
func summarizeSamples(res *result, samples []sample, every, quiet time.Duration) {
	res.Samples = len(samples)
	if len(samples) < 2 {
		return
	}
	first, final := samples[0], samples[len(samples)-1]
	start, end := -1, -1
	for i := 1; i < len(samples); i++ {
		if samples[i].events != samples[i-1].events {
			if start < 0 {
				start = i - 1
			}
			end = i
		}
	}
	res.EventsStored = final.events - first.events
	res.PlayerWrites = final.players - first.players
	if start < 0 {
		return
	}
	loadS := samples[end].at.Sub(samples[start].at).Seconds()
	res.LoadS = round3(loadS)
	if loadS > 0 {
		res.PlayerWritesPerS = math.Round(float64(samples[end].players-samples[start].players) / loadS)
	}
	var lagS, lagE []float64
	for _, sm := range samples[start : end+1] {
		if !math.IsNaN(sm.lagS) {
			lagS = append(lagS, sm.lagS)
		}
		if !math.IsNaN(sm.lagE) {
			lagE = append(lagE, sm.lagE)
		}
	}
	res.DurableLag, res.DurableLagEvents = percentiles(lagS), percentiles(lagE)
	loadEnd := samples[end].at
	// Players stream: the last change after the load, if it then stayed
	// quiet until the end of sampling.
	lastChange := loadEnd
	for i := end + 1; i < len(samples); i++ {
		if samples[i].players != samples[i-1].players {
			lastChange = samples[i].at
		}
	}
	playersOK := final.at.Sub(lastChange) >= quiet
	if playersOK {
		v := round3(lastChange.Sub(loadEnd).Seconds())
		res.CatchUpPlayersS = &v
	}
	lagOK := false
	if res.DurableLag != nil {
		lastLag := -1
		for i := end; i < len(samples); i++ {
			if samples[i].lagS > 0 || samples[i].lagE > 0 {
				lastLag = i
			}
		}
		if lastLag < len(samples)-1 { // the last sample had none
			lagOK = true
			v := 0.0
			if lastLag >= 0 {
				v = round3(samples[lastLag+1].at.Sub(loadEnd).Seconds())
			}
			res.CatchUpLagS = &v
		}
	}
	res.CaughtUp = playersOK && (res.DurableLag == nil || lagOK)
}

// percentiles of values (nil when there are none), nearest rank.
func percentiles(values []float64) *stats {
	if len(values) == 0 {
		return nil
	}
	v := slices.Clone(values)
	slices.Sort(v)
	at := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(v)))) - 1
		return round3(v[max(0, min(i, len(v)-1))])
	}
	return &stats{P50: at(0.5), P99: at(0.99), Max: round3(v[len(v)-1])}
}

func writeSamples(path string, samples []sample) error {
	var b strings.Builder
	b.WriteString("unix_ms\tevents_last_seq\tplayers_last_seq\tdurable_lag_s\tdurable_lag_events\n")
	for _, s := range samples {
		fmt.Fprintf(&b, "%d\t%d\t%d\t%g\t%g\n", s.at.UnixMilli(), s.events, s.players, s.lagS, s.lagE)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func nanMax(a, b float64) float64 {
	switch {
	case math.IsNaN(a):
		return b
	case math.IsNaN(b):
		return a
	}
	return math.Max(a, b)
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// loadAvg is the machine's 1-minute load average (0 where unknown).
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// cpuTime is this process's user plus system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
