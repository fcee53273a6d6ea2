package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/cmd/internal/proctest"

	"github.com/gamemodes/gamemodes/adapters/postgres/pgtest"
	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gamemodes-e2e")
	if err != nil {
		panic(err)
	}
	if binPath, err = proctest.Build(dir, "./cmd/gamemodes"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := pgtest.Main(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running gamemodes binary.
type proc struct {
	t        *testing.T
	cmd      *exec.Cmd
	httpURL  string
	natsURL  string
	log      *proctest.Buffer
	exited   chan struct{}
	exitCode int
}

func startProc(t *testing.T, httpPort, natsPort int, dataDir string, extra ...string) *proc {
	t.Helper()
	args := append([]string{"serve",
		"--http-addr", fmt.Sprintf("127.0.0.1:%d", httpPort),
		"--nats-listen", fmt.Sprintf("127.0.0.1:%d", natsPort),
		"--data-dir", dataDir,
		"--regions", "US,EU,BR",
		"--partitions", "8",
		"--log-format", "json",
	}, extra...)
	p := &proc{t: t, cmd: exec.Command(binPath, args...), log: &proctest.Buffer{}, exited: make(chan struct{}),
		httpURL: fmt.Sprintf("http://127.0.0.1:%d", httpPort), natsURL: fmt.Sprintf("nats://127.0.0.1:%d", natsPort)}
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		p.exitCode = p.cmd.ProcessState.ExitCode()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("gamemodes log:\n%s", p.log.String())
		}
	})
	return p
}

func (p *proc) waitReady() {
	p.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			p.t.Fatalf("gamemodes exited with %d:\n%s", p.exitCode, p.log.String())
		default:
		}
		resp, err := http.Get(p.httpURL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.t.Fatalf("gamemodes not ready:\n%s", p.log.String())
}

func (p *proc) post(body string) (int, map[string]any) {
	p.t.Helper()
	resp, err := http.Post(p.httpURL+"/api/v1/event", "application/json", strings.NewReader(body))
	if err != nil {
		p.t.Fatalf("post: %v", err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func (p *proc) popular(region string) map[int]int64 {
	p.t.Helper()
	resp, err := http.Get(p.httpURL + "/api/v1/popular_game_modes?region=" + region)
	if err != nil {
		p.t.Fatalf("get: %v", err)
	}
	defer resp.Body.Close()
	var out struct {
		Region    string             `json:"region"`
		GameModes []domain.ModeCount `json:"game_modes"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 || out.Region != region {
		p.t.Fatalf("popular %s: status %d err %v", region, resp.StatusCode, err)
	}
	m := map[int]int64{}
	for i, mc := range out.GameModes {
		m[mc.GameMode] = mc.PlayerCount
		if i > 0 && (out.GameModes[i-1].PlayerCount < mc.PlayerCount ||
			out.GameModes[i-1].PlayerCount == mc.PlayerCount && out.GameModes[i-1].GameMode > mc.GameMode) {
			p.t.Fatalf("popular %s not sorted: %+v", region, out.GameModes)
		}
	}
	return m
}

// waitPopular waits until every region's lobby list equals want.
func (p *proc) waitPopular(want map[string]map[int]int64, within time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(within)
	var last string
	for time.Now().Before(deadline) {
		last = ""
		for _, r := range []string{"US", "EU", "BR"} {
			got := p.popular(r)
			if !equalCounts(got, want[r]) {
				last = fmt.Sprintf("%s: got %v want %v", r, got, want[r])
				break
			}
		}
		if last == "" {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.t.Fatalf("lobby lists differ from ground truth: %s", last)
}

func equalCounts(a, b map[int]int64) bool {
	n := 0
	for k, v := range b {
		if v == 0 {
			continue
		}
		n++
		if a[k] != v {
			return false
		}
	}
	return len(a) == n
}

// truth is the ground truth of the test: where each user is counted.
type truth map[string][2]any

func (tr truth) apply(user, typ, region string, mode int) {
	switch typ {
	case "ENTER_GAME_MODE", "HEARTBEAT_GAME_MODE":
		tr[user] = [2]any{region, mode}
	case "LEAVE_GAME_MODE":
		if cur, ok := tr[user]; ok && cur == [2]any{region, mode} {
			delete(tr, user)
		}
	}
}

func (tr truth) counts() map[string]map[int]int64 {
	out := map[string]map[int]int64{"US": {}, "EU": {}, "BR": {}}
	for _, at := range tr {
		out[at[0].(string)][at[1].(int)]++
	}
	return out
}

func eventBody(id, user, typ, region string, mode int) string {
	uid := strconv.Quote(user)
	if _, err := strconv.Atoi(user); err == nil {
		uid = user // numeric ids as JSON numbers
	}
	return fmt.Sprintf(`{"event_id":%q,"user_id":%s,"event_type":%q,"event_payload":{"game_mode":%d,"region":%q},"timestamp":%d}`,
		id, uid, typ, mode, region, time.Now().Unix())
}

func TestEndToEndHTTPAndNATSSurviveKill9(t *testing.T) {
	httpPort, natsPort, dir := proctest.FreePort(t), proctest.FreePort(t), t.TempDir()
	p := startProc(t, httpPort, natsPort, dir)
	p.waitReady()

	nc, err := nats.Connect(p.natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 8))
	tr := truth{}
	regions := []string{"US", "EU", "BR"}
	send := func(i int) {
		user := strconv.Itoa(rng.IntN(150))
		if i%4 == 0 {
			user = "game server user " + user
		}
		typ := "ENTER_GAME_MODE"
		if rng.IntN(3) == 0 {
			typ = "LEAVE_GAME_MODE"
		}
		region, mode := regions[rng.IntN(3)], 1+rng.IntN(10)
		id := "e2e-" + strconv.Itoa(i)
		body := eventBody(id, user, typ, region, mode)
		if i%2 == 0 {
			code, out := p.post(body)
			if code != http.StatusAccepted || out["event_id"] != id || out["duplicate"] != false {
				t.Fatalf("post %d: %d %v", i, code, out)
			}
			if i%10 == 0 { // a client retry
				if code, out := p.post(body); code != http.StatusAccepted || out["duplicate"] != true {
					t.Fatalf("retry %d: %d %v", i, code, out)
				}
			}
		} else {
			subject := topology.EventSubject(region, domain.UserToken(user))
			if _, err := js.Publish(context.Background(), subject, []byte(body), jetstream.WithMsgID(id)); err != nil {
				t.Fatalf("nats publish %d: %v", i, err)
			}
		}
		tr.apply(user, typ, region, mode)
	}
	for i := 0; i < 1500; i++ {
		send(i)
	}
	// An invalid NATS message changes nothing.
	if _, err := js.Publish(context.Background(), topology.EventSubject("US", "x"), []byte(`{"user_id":"x"}`)); err != nil {
		t.Fatal(err)
	}
	p.waitPopular(tr.counts(), 15*time.Second)

	// kill -9 right after a burst: every acknowledged event must be reflected after restart.
	for i := 1500; i < 2500; i++ {
		send(i)
	}
	nc.Close()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.exited

	p2 := startProc(t, httpPort, natsPort, dir)
	p2.waitReady()
	p2.waitPopular(tr.counts(), 20*time.Second)

	// It keeps working after the restart, and SIGTERM stops it cleanly.
	code, _ := p2.post(eventBody("after-restart", "newcomer", "ENTER_GAME_MODE", "EU", 3))
	if code != http.StatusAccepted {
		t.Fatalf("post after restart: %d", code)
	}
	tr.apply("newcomer", "ENTER_GAME_MODE", "EU", 3)
	p2.waitPopular(tr.counts(), 10*time.Second)
	if err := p2.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p2.exited:
		if p2.exitCode != 0 {
			t.Fatalf("exit code after SIGTERM: %d", p2.exitCode)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
}

func TestEndToEndExpiryWithinTTL(t *testing.T) {
	p := startProc(t, proctest.FreePort(t), proctest.FreePort(t), t.TempDir(), "--player-ttl", "4s")
	p.waitReady()
	for i := 0; i < 5; i++ {
		if code, _ := p.post(eventBody("x"+strconv.Itoa(i), strconv.Itoa(i), "ENTER_GAME_MODE", "BR", 7)); code != 202 {
			t.Fatalf("post: %d", code)
		}
	}
	p.waitPopular(map[string]map[int]int64{"BR": {7: 5}}, 5*time.Second)
	entered := time.Now()
	// Expiry within TTL + 3 s.
	p.waitPopular(map[string]map[int]int64{}, 4*time.Second+3*time.Second-time.Since(entered))
}

func TestBusyNATSPortExitsNamingTheFlag(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	p := startProc(t, proctest.FreePort(t), port, t.TempDir())
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		t.Fatal("still running with a busy NATS port")
	}
	if p.exitCode == 0 {
		t.Fatal("exit code 0 with a busy NATS port")
	}
	if !strings.Contains(p.log.String(), "--nats-listen") {
		t.Fatalf("error does not name --nats-listen:\n%s", p.log.String())
	}
}

func TestBadFlagsExitWithUsageError(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "--roles", "janitor"},
		{"serve", "--player-ttl", "soon"},
		{"serve", "--regions", "U S"},
		{"serve", "--game-modes", "x"},
		{"fly"},
	} {
		out, err := exec.Command(binPath, args...).CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 2 {
			t.Errorf("%v: want exit 2, got %v\n%s", args, err, out)
		}
		if len(bytes.TrimSpace(out)) == 0 {
			t.Errorf("%v: no message", args)
		}
	}
}

var _ = io.Discard

// TestNoOpsPageServesNoOperationsRoutes: with --no-ops-page an edge answers
// 404 on the operations page and its status, and serves the API as usual.
func TestNoOpsPageServesNoOperationsRoutes(t *testing.T) {
	p := startProc(t, proctest.FreePort(t), proctest.FreePort(t), t.TempDir(), "--no-ops-page")
	p.waitReady()
	for path, want := range map[string]int{
		"/": 404, "/index.html": 404, "/api/v1/ops/status": 404, "/ops/ops.js": 404,
		"/api/v1/popular_game_modes?region=US": 200, "/api/v1/openapi.json": 200,
	} {
		resp, err := http.Get(p.httpURL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
}
