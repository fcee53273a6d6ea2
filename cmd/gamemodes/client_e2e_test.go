package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/client"
	"github.com/nats-io/nats.go"
)

// TestGoClientEventsReachTheLobby reports events with the Go client as the
// least-privileged game_server user of nats/config, synchronously and
// asynchronously, and waits for the lobby to show exactly the ground truth.
func TestGoClientEventsReachTheLobby(t *testing.T) {
	p := startWithUsersConfig(t)
	nc, err := nats.Connect(p.natsURL, nats.UserInfo("game_server", "GAME_SERVER-test-secret"))
	if err != nil {
		t.Fatalf("game server connect: %v", err)
	}
	defer nc.Close()
	c, err := client.New(nc, client.WithRegions("US", "EU", "BR"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	defer c.Close(ctx)

	tr := truth{}
	do := func(f func(context.Context, string, string, int, ...client.EventOption) (client.Receipt, error), typ, user, region string, mode int) {
		t.Helper()
		if _, err := f(ctx, user, region, mode); err != nil {
			t.Fatalf("%s %s %s %d: %v", typ, user, region, mode, err)
		}
		tr.apply(user, typ, region, mode)
	}
	do(c.Enter, "ENTER_GAME_MODE", "1", "US", 1)
	do(c.Enter, "ENTER_GAME_MODE", "2", "US", 1)
	do(c.Enter, "ENTER_GAME_MODE", "3", "US", 2)
	do(c.Enter, "ENTER_GAME_MODE", "player@example.com", "EU", 2)
	do(c.Leave, "LEAVE_GAME_MODE", "1", "US", 1)
	do(c.Leave, "LEAVE_GAME_MODE", "2", "US", 9)                  // stale: changes nothing
	do(c.Heartbeat, "HEARTBEAT_GAME_MODE", "3", "US", 2)          // the player's own mode: changes nothing
	do(c.Enter, "ENTER_GAME_MODE", "player@example.com", "BR", 3) // moves

	var pending []*client.Pending
	for i := 0; i < 200; i++ {
		user, mode := fmt.Sprintf("async-%d", i), 1+i%10
		pd, err := c.PublishAsync(ctx, client.Event{UserID: user, Type: client.EventEnter, Region: "BR", GameMode: mode})
		if err != nil {
			t.Fatal(err)
		}
		pending = append(pending, pd)
		tr.apply(user, "ENTER_GAME_MODE", "BR", mode)
	}
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for _, pd := range pending {
		if _, err := pd.Result(); err != nil {
			t.Fatalf("async %s: %v", pd.EventID(), err)
		}
	}
	p.waitPopular(tr.counts(), 20*time.Second)
}
