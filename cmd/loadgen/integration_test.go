package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/cmd/internal/proctest"
)

// gamemodesBin is the service binary built by TestMain.
var gamemodesBin string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "loadgen-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if gamemodesBin, err = proctest.Build(dir, "./cmd/gamemodes"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// startService runs the gamemodes binary (all roles, embedded NATS) on
// random loopback ports and returns its HTTP and NATS URLs once ready.
func startService(t *testing.T, regions string) (httpURL, natsURL string) {
	t.Helper()
	httpPort, natsPort := proctest.FreePort(t), proctest.FreePort(t)
	httpURL = fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	natsURL = fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	log := &proctest.Buffer{}
	cmd := exec.Command(gamemodesBin, "serve",
		"--http-addr", fmt.Sprintf("127.0.0.1:%d", httpPort),
		"--nats-listen", fmt.Sprintf("127.0.0.1:%d", natsPort),
		"--data-dir", t.TempDir(),
		"--regions", regions,
		"--partitions", "8",
		"--log-format", "json")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("gamemodes log:\n%s", log.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			t.Fatalf("gamemodes exited:\n%s", log.String())
		default:
		}
		if resp, err := http.Get(httpURL + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return httpURL, natsURL
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("gamemodes not ready:\n%s", log.String())
	return "", ""
}

// runLoadgen runs the loadgen's main logic with args and returns its summary.
func runLoadgen(t *testing.T, args ...string) summary {
	t.Helper()
	cfg, err := parseConfig(args, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	log := &proctest.Buffer{}
	sum, err := run(context.Background(), cfg, log)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, log.String())
	}
	if sum.Verify.Result != "pass" || sum.EventsAcked == 0 || sum.Rejected != 0 || sum.Unresolved != 0 {
		t.Fatalf("%s: verify %s, acked %d, rejected %d, unresolved %d, errors %v\n%s",
			cfg.mode, sum.Verify.Result, sum.EventsAcked, sum.Rejected, sum.Unresolved, sum.Errors, log.String())
	}
	t.Logf("%s: %d events acked at %.0f/s, post p99 %.1f ms, freshness p99 %.1f ms (%d probes), verified in %.1fs",
		cfg.mode, sum.EventsAcked, sum.Rate, sum.Post.P99, sum.Freshness.P99, sum.Freshness.Count, sum.Verify.WaitedS)
	return sum
}

// The loadgen drives the real service over HTTP, then over NATS, then mixed
// open loop, and each time the lobby equals its ground truth.
func TestLoadgenAgainstTheService(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the service")
	}
	const regions = "US,EU,BR"
	httpURL, natsURL := startService(t, regions)
	common := []string{"--http-url", httpURL, "--regions", regions, "--players", "3000",
		"--settle", "20s", "--progress-every", "0", "--drop-ratio", "0.05", "--stale-leave-ratio", "0.05"}

	runLoadgen(t, append(common, "--mode", "http", "--concurrency", "16", "--duration", "3s")...)
	sum := runLoadgen(t, append(common, "--mode", "nats", "--nats-url", natsURL, "--concurrency", "8",
		"--max-pending", "256", "--duration", "3s", "--baseline", "--ryw-every", "100ms")...)
	if sum.Freshness.Count == 0 {
		t.Errorf("no freshness samples: %+v", sum.Freshness)
	}
	// Read-your-writes reads of the real service: each acknowledged event is
	// followed by a read that is answered or times out (its players are in
	// the truth that verification just passed).
	if r := sum.RYW; r == nil || r.Tries == 0 || r.Count+r.Timeouts != r.Tries || r.Errors != 0 {
		t.Errorf("read-your-writes probe: %+v", r)
	}
	sum = runLoadgen(t, append(common, "--mode", "mixed", "--rate", "600", "--concurrency", "8", "--duration", "1s", "--baseline")...)
	if sum.Gets == 0 || sum.Lag == nil {
		t.Errorf("mixed: %d gets, lag %v", sum.Gets, sum.Lag)
	}
}
