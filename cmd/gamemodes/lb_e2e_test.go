package main

import (
	"context"
	"encoding/csv"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/cmd/internal/proctest"
	"github.com/gamemodes/gamemodes/nats/natstest"
	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// haproxy is deploy/haproxy/haproxy.cfg running in Debian's haproxy, its
// ports templated onto the loopback.
type haproxy struct {
	apiURL, statsURL string
}

// startHAProxy runs the repository's haproxy.cfg in front of edges (their
// HTTP ports, in the order of the cfg's servers edge1, edge2).
func startHAProxy(t *testing.T, edgePorts ...int) *haproxy {
	t.Helper()
	bin := proctest.Tool(t, "haproxy", "GAMEMODES_REQUIRE_HAPROXY")
	raw, err := os.ReadFile("../../deploy/haproxy/haproxy.cfg")
	if err != nil {
		t.Fatal(err)
	}
	api, stats := proctest.FreePort(t), proctest.FreePort(t)
	cfg := string(raw)
	for old, repl := range map[string]string{
		"bind :8080": fmt.Sprintf("bind 127.0.0.1:%d", api),
		"bind :8404": fmt.Sprintf("bind 127.0.0.1:%d", stats),
	} {
		if !strings.Contains(cfg, old) {
			t.Fatalf("haproxy.cfg has no %q to template", old)
		}
		cfg = strings.Replace(cfg, old, repl, 1)
	}
	for i, port := range edgePorts {
		old := fmt.Sprintf("server edge%d edge%d:8080", i+1, i+1)
		if !strings.Contains(cfg, old) {
			t.Fatalf("haproxy.cfg has no %q to template", old)
		}
		cfg = strings.Replace(cfg, old, fmt.Sprintf("server edge%d 127.0.0.1:%d", i+1, port), 1)
	}
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-c", "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c: %v\n%s", err, out)
	}
	h := &haproxy{apiURL: fmt.Sprintf("http://127.0.0.1:%d", api), statsURL: fmt.Sprintf("http://127.0.0.1:%d/stats;csv", stats)}
	proctest.Start(t, "haproxy", exec.Command(bin, "-db", "-f", path))
	return h
}

// lbServer is one row of HAProxy's CSV statistics.
type lbServer struct {
	Status, CheckStatus, CheckCode string
	Retries, Redispatches          int
}

// servers reads HAProxy's view of the edges backend (and its BACKEND row).
func (h *haproxy) servers(t *testing.T) map[string]lbServer {
	t.Helper()
	out, err := h.readServers()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (h *haproxy) readServers() (map[string]lbServer, error) {
	resp, err := http.Get(h.statsURL)
	if err != nil {
		return nil, fmt.Errorf("haproxy stats: %w", err)
	}
	defer resp.Body.Close()
	rows, err := csv.NewReader(resp.Body).ReadAll()
	if err != nil || len(rows) < 2 {
		return nil, fmt.Errorf("haproxy stats csv: %v (%d rows)", err, len(rows))
	}
	col := map[string]int{}
	for i, name := range rows[0] {
		col[strings.TrimPrefix(name, "# ")] = i
	}
	out := map[string]lbServer{}
	for _, r := range rows[1:] {
		if len(r) < len(rows[0]) || r[col["pxname"]] != "edges" {
			continue
		}
		retries, _ := strconv.Atoi(r[col["wretr"]])
		redis, _ := strconv.Atoi(r[col["wredis"]])
		out[r[col["svname"]]] = lbServer{Status: r[col["status"]], CheckStatus: r[col["check_status"]], CheckCode: r[col["check_code"]],
			Retries: retries, Redispatches: redis}
	}
	return out, nil
}

// waitServer waits until HAProxy reports server in a state accepted by ok,
// and returns that state.
func (h *haproxy) waitServer(t *testing.T, server string, within time.Duration, ok func(lbServer) bool) lbServer {
	t.Helper()
	var (
		last lbServer
		err  error
	)
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var all map[string]lbServer
		if all, err = h.readServers(); err == nil {
			if last = all[server]; ok(last) {
				return last
			}
		}
	}
	t.Fatalf("haproxy server %s not in the expected state within %s: %+v (%v)", server, within, last, err)
	return last
}

func isUp(s lbServer) bool   { return s.Status == "UP" }
func isDown(s lbServer) bool { return strings.HasPrefix(s.Status, "DOWN") }

// lbLoad posts events through the load balancer from several clients, each
// with its own users, retrying a failed post with the same event_id until it
// is acknowledged (as a client should), so the ground truth holds every
// event in each user's order.
type lbLoad struct {
	t      *testing.T
	url    string
	client *http.Client
	phase  atomic.Int32
	acked  atomic.Int64
	stop   chan struct{}
	wg     sync.WaitGroup

	mu       sync.Mutex
	truth    truth
	failures map[int32][]string // per phase: what the failed attempts got
}

func startLBLoad(t *testing.T, url string, clients int) *lbLoad {
	l := &lbLoad{t: t, url: url, client: &http.Client{Timeout: 10 * time.Second}, stop: make(chan struct{}),
		truth: truth{}, failures: map[int32][]string{}}
	regions := []string{"US", "EU", "BR"}
	for g := 0; g < clients; g++ {
		l.wg.Add(1)
		go func(g int) {
			defer l.wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 14))
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				user := strconv.Itoa(g + clients*rng.IntN(50))
				typ := "ENTER_GAME_MODE"
				if rng.IntN(3) == 0 {
					typ = "LEAVE_GAME_MODE"
				}
				region, mode := regions[rng.IntN(len(regions))], 1+rng.IntN(10)
				if !l.post(eventBody(fmt.Sprintf("lb-%d-%d", g, i), user, typ, region, mode)) {
					return
				}
				l.mu.Lock()
				l.truth.apply(user, typ, region, mode)
				l.mu.Unlock()
				l.acked.Add(1)
			}
		}(g)
	}
	return l
}

// post sends body until it is acknowledged; false if that takes too long.
func (l *lbLoad) post(body string) bool {
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		resp, err := l.client.Post(l.url+"/api/v1/event", "application/json", strings.NewReader(body))
		what := ""
		if err != nil {
			what = err.Error()
		} else {
			resp.Body.Close()
			if resp.StatusCode == http.StatusAccepted {
				return true
			}
			what = resp.Status
		}
		l.mu.Lock()
		l.failures[l.phase.Load()] = append(l.failures[l.phase.Load()], what)
		l.mu.Unlock()
	}
	l.t.Errorf("event not acknowledged within 30 s through the load balancer: %s", body)
	return false
}

// waitAcked waits until n more events are acknowledged.
func (l *lbLoad) waitAcked(n int64, within time.Duration) {
	l.t.Helper()
	want := l.acked.Load() + n
	for deadline := time.Now().Add(within); l.acked.Load() < want; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			l.t.Fatalf("only %d of %d events acknowledged within %s", l.acked.Load(), want, within)
		}
	}
}

func (l *lbLoad) finish() {
	close(l.stop)
	l.wg.Wait()
}

// TestLoadBalancerHAProxyKillAndDrain runs deploy/haproxy/haproxy.cfg in a
// real HAProxy in front of two edge processes on one NATS server (and a
// worker), under a checked workload:
//   - an edge killed with SIGKILL is taken out by the health check, and the
//     posts that failed meanwhile are retried and acknowledged;
//   - an edge stopped with SIGTERM (--drain-delay) is taken out because its
//     /readyz answers 503 while it still listens, and no request fails;
//   - every acknowledged event is stored once and counted.
func TestLoadBalancerHAProxyKillAndDrain(t *testing.T) {
	proctest.Tool(t, "haproxy", "GAMEMODES_REQUIRE_HAPROXY")
	ns := natstest.RunServer(t)
	url := ns.ClientURL()
	ports := []int{proctest.FreePort(t), proctest.FreePort(t)}
	startEdge := func(i int) *proc {
		p := startProc(t, ports[i], proctest.FreePort(t), t.TempDir(), "--nats-url", url, "--roles", "edge",
			"--instance-id", fmt.Sprintf("edge%d", i+1), "--drain-delay", "5s")
		p.natsURL = url
		p.waitReady()
		return p
	}
	edges := []*proc{startEdge(0), startEdge(1)}
	startRole(t, url, "--roles", "worker").waitReady()
	lb := startHAProxy(t, ports...)
	lb.waitServer(t, "edge1", 15*time.Second, isUp)
	lb.waitServer(t, "edge2", 15*time.Second, isUp)

	load := startLBLoad(t, lb.apiURL, 8)
	load.waitAcked(500, 60*time.Second)

	// 1. SIGKILL: the health check takes edge1 out; failed posts are retried.
	load.phase.Store(1)
	if err := edges[0].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-edges[0].exited
	down := lb.waitServer(t, "edge1", 15*time.Second, isDown)
	t.Logf("edge1 killed: haproxy says %s (%s)", down.Status, down.CheckStatus)
	load.waitAcked(300, 60*time.Second)
	killed := lb.servers(t)

	// edge1 comes back on its port and is taken in again.
	edges[0] = startEdge(0)
	lb.waitServer(t, "edge1", 15*time.Second, isUp)
	load.waitAcked(300, 60*time.Second)

	// 2. SIGTERM: edge2 drains. HAProxy must take it out on its /readyz
	// answering 503 (L7STS), i.e. while it still listens, not on a refused
	// connection (L4CON).
	load.phase.Store(2)
	if err := edges[1].cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	drained := lb.waitServer(t, "edge2", 15*time.Second, isDown)
	if drained.CheckStatus != "L7STS" || drained.CheckCode != "503" {
		t.Errorf("edge2 taken out by check %s %s, want L7STS 503 (readyz 503 before the listener closed)", drained.CheckStatus, drained.CheckCode)
	}
	select {
	case <-edges[1].exited:
		if edges[1].exitCode != 0 {
			t.Errorf("edge2 exit code %d after SIGTERM", edges[1].exitCode)
		}
	case <-time.After(45 * time.Second):
		t.Fatal("edge2 did not exit after SIGTERM")
	}
	load.waitAcked(300, 60*time.Second)
	load.finish()

	load.mu.Lock()
	failedKill, failedDrain := load.failures[1], load.failures[2]
	load.mu.Unlock()
	t.Logf("%d events acknowledged; SIGKILL: %d failed attempts retried %v, haproxy retries %d redispatches %d; SIGTERM: %d failed attempts",
		load.acked.Load(), len(failedKill), summarize(failedKill), killed["BACKEND"].Retries, killed["BACKEND"].Redispatches, len(failedDrain))
	if len(failedDrain) > 0 {
		t.Errorf("%d requests failed while edge2 drained: %v", len(failedDrain), summarize(failedDrain))
	}
	if len(failedKill)+killed["BACKEND"].Retries+killed["BACKEND"].Redispatches == 0 {
		t.Errorf("the SIGKILL under load was not felt: no failed post, no haproxy retry or redispatch")
	}

	// Every acknowledged event is stored once (retries carry the same
	// event_id) and counted.
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(context.Background(), topology.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().State.Msgs; got != uint64(load.acked.Load()) {
		t.Errorf("stream holds %d events, %d were acknowledged", got, load.acked.Load())
	}
	through := &proc{t: t, httpURL: lb.apiURL}
	through.waitPopular(load.truth.counts(), 30*time.Second)
}

// summarize counts the distinct failures.
func summarize(failures []string) map[string]int {
	out := map[string]int{}
	for _, f := range failures {
		out[f]++
	}
	return out
}
