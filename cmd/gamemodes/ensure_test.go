package main

import (
	"io"
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
// JetStream does not answer yet (here: not enabled at first) is asked again
// until it does, instead of the process giving up at the first attempt; a
// server that never answers is given up after the wait.
func TestEnsureTopologyAsksAgainUntilJetStreamAnswers(t *testing.T) {
	attempt, wait := ensureAttempt, ensureWait
	t.Cleanup(func() { ensureAttempt, ensureWait = attempt, wait })
	ensureAttempt, ensureWait = 200*time.Millisecond, time.Minute

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
	// Enable JetStream once the first attempt has failed and been logged.
	deadline := time.Now().Add(20 * time.Second)
	for logs.count() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no failed attempt logged")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := ns.EnableJetStream(&server.JetStreamConfig{StoreDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("ensure after JetStream came up: %v", err)
	}
	if topo.Partitions != 4 {
		t.Fatalf("topology %+v", topo)
	}

	// A server that never answers is given up after ensureWait.
	ensureWait = 500 * time.Millisecond
	_, qjs := serverWithoutJetStream(t)
	if _, err := ensureTopology(qjs, topology.Config{Partitions: 4}, slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil || !strings.Contains(err.Error(), "did not answer") {
		t.Fatalf("ensure against a server without JetStream: %v, want gave up", err)
	}
}
