package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/client"
	"github.com/nats-io/nats.go"
)

// startGameServerClient starts the single binary with the users
// configuration and a Go client connected as the game_server user, closed
// at the test's end.
func startGameServerClient(t *testing.T) (*proc, *client.Client) {
	t.Helper()
	p := startWithUsersConfig(t)
	nc, err := nats.Connect(p.natsURL, nats.UserInfo("game_server", "GAME_SERVER-test-secret"))
	if err != nil {
		t.Fatalf("game server connect: %v", err)
	}
	t.Cleanup(nc.Close)
	c, err := client.New(nc, client.WithRegions("US", "EU", "BR"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c.Close(ctx)
	})
	return p, c
}

// TestGoClientEventsReachTheLobby reports events with the Go client as the
// least-privileged game_server user of nats/config, synchronously and
// asynchronously, and waits for the lobby to show exactly the ground truth.
func TestGoClientEventsReachTheLobby(t *testing.T) {
	p, c := startGameServerClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

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

// TestGoClientSubscribeRegionFollowsThePublishedLists connects the Go
// client's SubscribeRegion, as the game_server user, to the lists the
// binary's live-list publisher sends: a subject or header drift between the
// two fails here. It reports events and waits for the list that matches
// them, then for the list after a change.
func TestGoClientSubscribeRegionFollowsThePublishedLists(t *testing.T) {
	_, c := startGameServerClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	lists := make(chan client.List, 1024)
	sub, err := c.SubscribeRegion("US", func(l client.List) { lists <- l })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	var last uint64
	waitList := func(want string) {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for {
			select {
			case l := <-lists:
				if l.Region != "US" || l.Version <= last {
					t.Fatalf("list of %q version %d after version %d", l.Region, l.Version, last)
				}
				last = l.Version
				if got := fmt.Sprint(l.GameModes); got == want {
					return
				}
			case <-deadline:
				t.Fatalf("no list %s on %s within 30s (last version %d)", want, client.PopularSubject("US"), last)
			}
		}
	}
	for _, e := range []struct {
		user string
		mode int
	}{{"a", 3}, {"b", 3}, {"c", 1}, {"d", 7}} {
		if _, err := c.Enter(ctx, e.user, "US", e.mode); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Enter(ctx, "e", "EU", 3); err != nil {
		t.Fatal(err)
	}
	waitList("[{3 2} {1 1} {7 1}]")
	if _, err := c.Leave(ctx, "a", "US", 3); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Enter(ctx, "c", "US", 7); err != nil {
		t.Fatal(err)
	}
	waitList("[{7 2} {3 1}]")
}
