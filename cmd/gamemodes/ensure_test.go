package main

import (
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/nats/natstest"
	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// warnLog counts the warnings logged.
type warnLog struct {
	mu sync.Mutex
	n  int
}

func (w *warnLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n += strings.Count(string(p), "level=WARN")
	return len(p), nil
}

func (w *warnLog) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// serverWithoutJetStream starts a NATS server whose JetStream is off (its
// API has no responders) and connects to it.
func serverWithoutJetStream(t *testing.T) (*server.Server, jetstream.JetStream) {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(ns.Shutdown)
	_, js := natstest.Connect(t, ns.ClientURL())
	return ns, js
}

// TestEnsureTopologyAsksAgainUntilJetStreamAnswers: a server whose
// JetStream does not answer yet (here: not enabled at first) is asked again,
// after a pause, until it does, instead of the process giving up at the
// first attempt; a server that never answers is given up after the wait.
func TestEnsureTopologyAsksAgainUntilJetStreamAnswers(t *testing.T) {
	attempt, wait, sleep := ensureAttempt, ensureWait, ensureSleep
	t.Cleanup(func() { ensureAttempt, ensureWait, ensureSleep = attempt, wait, sleep })
	ensureAttempt, ensureWait = 200*time.Millisecond, time.Minute

	// The pause after a failed attempt tells the test and waits for it, so
	// JetStream is enabled between two attempts, never during one (a stream
	// created while nats-server enables JetStream fails with a store error).
	paused, resume := make(chan time.Duration), make(chan struct{})
	ensureSleep = func(d time.Duration) {
		paused <- d
		<-resume
	}

	ns, js := serverWithoutJetStream(t)
	logs := &warnLog{}
	log := slog.New(slog.NewTextHandler(logs, nil))

	done := make(chan error, 1)
	var topo topology.Topology
	go func() {
		var err error
		topo, err = ensureTopology(js, topology.Config{Partitions: 4}, log)
		done <- err
	}()
	var d time.Duration
	select {
	case d = <-paused:
	case err := <-done:
		t.Fatalf("ensure returned %v before JetStream was enabled, want it to wait", err)
	case <-time.After(20 * time.Second):
		t.Fatal("no failed attempt")
	}
	if d <= 0 || d > ensurePause {
		t.Fatalf("pause after a failed attempt %v, want within (0, %v]", d, ensurePause)
	}
	if n := logs.count(); n != 1 {
		t.Fatalf("%d warnings after the first failed attempt, want 1", n)
	}
	if err := ns.EnableJetStream(&server.JetStreamConfig{StoreDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	close(resume)
	if err := <-done; err != nil {
		t.Fatalf("ensure after JetStream came up: %v", err)
	}
	if topo.Partitions != 4 {
		t.Fatalf("topology %+v", topo)
	}

	// A server that never answers is given up after ensureWait, asked at
	// most once per ensurePause meanwhile.
	ensureWait, ensureSleep = 500*time.Millisecond, time.Sleep
	ensurePauseWas := ensurePause
	t.Cleanup(func() { ensurePause = ensurePauseWas })
	ensurePause = 100 * time.Millisecond
	_, qjs := serverWithoutJetStream(t)
	quiet := &warnLog{}
	if _, err := ensureTopology(qjs, topology.Config{Partitions: 4}, slog.New(slog.NewTextHandler(quiet, nil))); err == nil || !strings.Contains(err.Error(), "did not answer") {
		t.Fatalf("ensure against a server without JetStream: %v, want gave up", err)
	}
	if n := quiet.count(); n < 1 || n > 7 {
		t.Fatalf("%d attempts logged in 500 ms with a 100 ms pause, want 1 to 7 (no busy loop)", n)
	}
}
