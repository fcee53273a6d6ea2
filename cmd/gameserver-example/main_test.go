package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/client"
	"github.com/gamemodes/gamemodes/nats/natstest"
	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/nats-io/nats.go"
)

// syncBuffer is an output the test reads while run writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor waits until the output contains text.
func waitFor(t *testing.T, out *syncBuffer, text string, done <-chan error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), text) {
		select {
		case err := <-done:
			t.Fatalf("run returned (%v) before printing %q:\n%s", err, text, out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the output:\n%s", text, out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSimulatedGameServerPublishesEveryPlayersSessionAndPrintsLists(t *testing.T) {
	ns := natstest.RunServer(t)
	nc, js := natstest.Connect(t, ns.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := topology.Ensure(ctx, js, topology.Config{}); err != nil {
		t.Fatal(err)
	}
	cfg, err := parseFlags([]string{"--nats-url", ns.ClientURL(), "--region", "EU", "--players", "3",
		"--session", "100ms", "--heartbeat", "20ms", "--linger", "1h"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- run(runCtx, cfg, out) }()

	waitFor(t, out, "all 3 players left", done)
	// The service would publish the list; the test does, while the game server lingers.
	if err := nc.PublishMsg(&nats.Msg{Subject: client.PopularSubject("EU"), Header: nats.Header{client.VersionHeader: []string{"1"}},
		Data: []byte(`{"region":"EU","game_modes":[{"game_mode":2,"player_count":7},{"game_mode":5,"player_count":1}]}`)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, out, "live list EU v1: mode 2: 7 players, mode 5: 1 players\n", done)
	stop()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	for _, line := range []string{"subscribed to gamemodes.popular.EU\n", "example-1 entered mode", "example-2 left mode", "example-3 left mode"} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("no %q in the output:\n%s", line, out)
		}
	}

	// The stream holds one ENTER and one LEAVE per player, in the same mode,
	// and heartbeats in between.
	stream, err := js.Stream(ctx, topology.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	type payload struct {
		UserID       string `json:"user_id"`
		EventType    string `json:"event_type"`
		EventPayload struct {
			GameMode int    `json:"game_mode"`
			Region   string `json:"region"`
		} `json:"event_payload"`
	}
	seen := map[string][]string{}
	modes := map[string]map[int]bool{}
	for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		var p payload
		if err := json.Unmarshal(m.Data, &p); err != nil || p.EventPayload.Region != "EU" {
			t.Fatalf("stored %s: %v", m.Data, err)
		}
		seen[p.UserID] = append(seen[p.UserID], p.EventType)
		if modes[p.UserID] == nil {
			modes[p.UserID] = map[int]bool{}
		}
		modes[p.UserID][p.EventPayload.GameMode] = true
	}
	if len(seen) != 3 {
		t.Fatalf("events of %d users, want 3: %v", len(seen), seen)
	}
	for user, types := range seen {
		last := len(types) - 1
		if types[0] != "ENTER_GAME_MODE" || types[last] != "LEAVE_GAME_MODE" || len(modes[user]) != 1 {
			t.Errorf("%s: %v in modes %v", user, types, modes[user])
		}
		for _, typ := range types[1:last] {
			if typ != "HEARTBEAT_GAME_MODE" {
				t.Errorf("%s: %v", user, types)
			}
		}
	}
}

func TestFlags(t *testing.T) {
	cfg, err := parseFlags(nil, io.Discard)
	if err != nil || cfg.natsURL != nats.DefaultURL || cfg.region != "US" || cfg.players != 10 {
		t.Fatalf("defaults %+v %v", cfg, err)
	}
	for _, args := range [][]string{{"--players", "0"}, {"--session", "0s"}, {"extra"}, {"--nope"}} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}
