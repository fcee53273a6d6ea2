package main

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/client"
	"github.com/gamemodes/gamemodes/nats/natstest"
	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/nats-io/nats.go"
)

// transcript is run's output as the test reads it: run prints whole lines,
// each handed over on a channel.
type transcript struct {
	lines chan string
	text  strings.Builder // what the test has read so far
}

func newTranscript() *transcript { return &transcript{lines: make(chan string, 1024)} }

// Write hands one line to the test.
func (tr *transcript) Write(p []byte) (int, error) {
	tr.lines <- string(p)
	return len(p), nil
}

// waitFor reads the output until it contains text.
func (tr *transcript) waitFor(t *testing.T, text string, done <-chan error) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for !strings.Contains(tr.text.String(), text) {
		select {
		case line := <-tr.lines:
			tr.text.WriteString(line)
		case err := <-done:
			t.Fatalf("run returned (%v) before printing %q:\n%s", err, text, tr.text.String())
		case <-timeout:
			t.Fatalf("no %q in the output:\n%s", text, tr.text.String())
		}
	}
}

// rest reads what run printed after it returned.
func (tr *transcript) rest() string {
	for {
		select {
		case line := <-tr.lines:
			tr.text.WriteString(line)
		default:
			return tr.text.String()
		}
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
	out := newTranscript()
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- run(runCtx, cfg, out) }()

	out.waitFor(t, "all 3 players left", done)
	// The service would publish the list; the test does, while the game server lingers.
	if err := nc.PublishMsg(&nats.Msg{Subject: client.PopularSubject("EU"), Header: nats.Header{client.VersionHeader: []string{"1"}},
		Data: []byte(`{"region":"EU","game_modes":[{"game_mode":2,"player_count":7},{"game_mode":5,"player_count":1}]}`)}); err != nil {
		t.Fatal(err)
	}
	out.waitFor(t, "live list EU v1: mode 2: 7 players, mode 5: 1 players\n", done)
	stop()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	printed := out.rest()
	for _, line := range []string{"subscribed to gamemodes.popular.EU\n", "example-1 entered mode", "example-2 left mode", "example-3 left mode"} {
		if !strings.Contains(printed, line) {
			t.Errorf("no %q in the output:\n%s", line, printed)
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
