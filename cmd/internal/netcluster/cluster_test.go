package netcluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/nats/netem"
)

// postEnter posts an ENTER to the edge and returns its consistency token.
func postEnter(t *testing.T, edge string, user int) string {
	t.Helper()
	// As a client is told to: a 503 (the edge's NATS reconnecting, a stream
	// leader being elected after a node restart) is retried under the same
	// event_id, so it is stored at most once.
	body := fmt.Sprintf(`{"event_id":"netcluster-test-%d","user_id":%d,"event_type":"ENTER_GAME_MODE","event_payload":{"game_mode":3,"region":"US"}}`, user, user)
	for attempt := 1; ; attempt++ {
		resp, err := http.Post(edge+"/api/v1/event", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		var ack struct {
			Token string `json:"consistency_token"`
		}
		err = json.NewDecoder(resp.Body).Decode(&ack)
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable && attempt < 50 {
			time.Sleep(200 * time.Millisecond) // a client's retry pause
			continue
		}
		if err != nil || resp.StatusCode != http.StatusAccepted {
			t.Fatalf("POST event: %s %v", resp.Status, err)
		}
		return ack.Token
	}
}

// readAfter reads US's lobby list once the event of token is reflected
// (retrying 504s a few times) and returns mode 3's count.
func readAfter(t *testing.T, edge, token string) int {
	t.Helper()
	for range 15 {
		resp, err := http.Get(edge + "/api/v1/popular_game_modes?region=US&after=" + url.QueryEscape(token))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusGatewayTimeout {
			continue
		}
		var list struct {
			GameModes []struct {
				GameMode    int `json:"game_mode"`
				PlayerCount int `json:"player_count"`
			} `json:"game_modes"`
		}
		if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &list) != nil {
			t.Fatalf("GET after: %s %s", resp.Status, b)
		}
		for _, m := range list.GameModes {
			if m.GameMode == 3 {
				return m.PlayerCount
			}
		}
		return 0
	}
	t.Fatal("read after the token timed out 15 times")
	return 0
}

// routeCount returns how many route connections node n has.
func routeCount(t *testing.T, n *Node) int {
	t.Helper()
	var rz struct {
		NumRoutes int `json:"num_routes"`
	}
	if err := getJSON(context.Background(), http.DefaultClient, n.MonitorURL()+"/routez", &rz); err != nil {
		t.Fatal(err)
	}
	return rz.NumRoutes
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The process cluster serves reads of its own writes across delayed links,
// and survives what the chaos soak will do to it: a worker paused and
// resumed, killed with -9 and restarted, a node partitioned and healed, a
// node killed and restarted.
func TestProcessClusterAcrossLinksSurvivesFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs nats-server and gamemodes processes")
	}
	natsServer, gamemodes, err := Build(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c, err := Start(ctx, Config{
		Dir: t.TempDir(), NATSServer: natsServer, Gamemodes: gamemodes,
		RouteDelay: 500 * time.Microsecond, ClientDelay: 500 * time.Microsecond,
		Edges: 1, Workers: 1, Args: []string{"--partitions", "8"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c.Stop(stopCtx)
		for _, a := range c.Apps {
			if a.Running() {
				t.Errorf("%s still runs after Stop", a.Name())
			}
		}
		for _, n := range c.Nodes {
			if n.Running() {
				t.Errorf("%s still runs after Stop", n.Name())
			}
		}
		if t.Failed() {
			t.Logf("logs in %s", c.cfg.Dir)
		}
	})
	edge, worker := c.Edge().URL(), c.Role(RoleWorker)[0]
	if got := readAfter(t, edge, postEnter(t, edge, 1)); got != 1 {
		t.Fatalf("mode 3 counts %d after one ENTER, want 1", got)
	}
	// Every node's clients and routes went through links.
	for _, n := range c.Nodes {
		var routed int64
		for _, l := range n.RouteLinks {
			if l != nil {
				routed += l.Conns()
			}
		}
		if routed == 0 {
			t.Errorf("%s dialed no route through its links", n.Name())
		}
	}
	// No route reaches a node's own route port (gossip would lead there).
	for _, n := range c.Nodes {
		var rz struct {
			Routes []struct {
				RemoteName string `json:"remote_name"`
				Port       int    `json:"port"`
			} `json:"routes"`
		}
		if err := getJSON(ctx, http.DefaultClient, n.MonitorURL()+"/routez", &rz); err != nil {
			t.Fatal(err)
		}
		for _, r := range rz.Routes {
			for _, other := range c.Nodes {
				if r.Port == other.RoutePort {
					t.Errorf("%s has a route to %s on its own route port %d, around the links", n.Name(), r.RemoteName, r.Port)
				}
			}
		}
	}
	var clients int64
	for _, n := range c.Nodes {
		clients += n.ClientLink.Conns()
	}
	if clients < int64(len(c.Apps)) {
		t.Errorf("%d connections through the client links, want at least one per app (%d)", clients, len(c.Apps))
	}

	if err := worker.Pause(); err != nil {
		t.Fatal(err)
	}
	if err := worker.Resume(); err != nil {
		t.Fatal(err)
	}
	if err := worker.Kill(); err != nil {
		t.Fatal(err)
	}
	if worker.Running() {
		t.Fatal("killed worker still runs")
	}
	if err := worker.Start(); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(ctx, worker); err != nil {
		t.Fatal(err)
	}

	if err := c.Partition(2, netem.Reset); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "nats3 cut off from the others", func() bool { return routeCount(t, c.Nodes[2]) == 0 })
	if err := c.HealPartition(2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "nats3 routed again", func() bool { return routeCount(t, c.Nodes[2]) > 0 })
	if err := c.WaitNodeReady(ctx, c.Nodes[2]); err != nil {
		t.Fatal(err)
	}

	if err := c.Nodes[1].Kill(); err != nil {
		t.Fatal(err)
	}
	if err := c.Nodes[1].Start(); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitNodeReady(ctx, c.Nodes[1]); err != nil {
		t.Fatal(err)
	}
	c.SetNodeDelay(0, 2*time.Millisecond)
	if got := readAfter(t, edge, postEnter(t, edge, 2)); got != 2 {
		t.Fatalf("mode 3 counts %d after two players entered, want 2", got)
	}
}
