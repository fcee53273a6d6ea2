package natstest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/nats/netem"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// routes returns node i's routes.
func routes(t *testing.T, c *Cluster, i int) []*server.RouteInfo {
	t.Helper()
	rz, err := c.Servers[i].Routez(nil)
	if err != nil {
		t.Fatal(err)
	}
	return rz.Routes
}

// remoteNames returns the distinct nodes node i has a route to.
func remoteNames(t *testing.T, c *Cluster, i int) []string {
	var names []string
	for _, r := range routes(t, c, i) {
		if !slices.Contains(names, r.RemoteName) {
			names = append(names, r.RemoteName)
		}
	}
	slices.Sort(names)
	return names
}

// Every route and client connection of a linked cluster crosses a link:
// no route connects to a node's real route port (which a node learning of
// another through gossip would dial), clients learn only the links'
// addresses, a replicated publish takes at least the delays on its way,
// and cutting a node's route links partitions it until healed.
func TestLinkedClusterConnectionsCrossTheLinks(t *testing.T) {
	c := RunCluster(t, 3, WithLinkDelay(0))
	realRoutePorts := make([]int, 3)
	for i, o := range c.opts {
		realRoutePorts[i] = o.Cluster.Port
	}
	all := []string{"node-1", "node-2", "node-3"}
	for i := range 3 {
		WaitFor(t, 20*time.Second, fmt.Sprintf("node %d routed to both others", i+1), func() bool {
			return slices.Equal(remoteNames(t, c, i), slices.DeleteFunc(slices.Clone(all), func(n string) bool { return n == all[i] }))
		})
	}

	const delay = 20 * time.Millisecond
	for _, l := range c.Net.Links() {
		l.SetDelay(delay)
	}
	nc, js := Connect(t, c.ClientURL(0)) // learns the other nodes from it
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "LINKED", Subjects: []string{"linked.>"}, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	// Client to node and back (2 delays), leader to followers and back
	// (2 more): a lower bound whatever node the client is on.
	for range 3 {
		start := time.Now()
		if _, err := js.Publish(ctx, "linked.x", []byte("x")); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took < 4*delay {
			t.Errorf("R3 publish took %v across links with a one-way delay of %v, want at least %v", took, delay, 4*delay)
		}
	}

	for i := range 3 {
		for _, r := range routes(t, c, i) {
			if slices.Contains(realRoutePorts, r.Port) {
				t.Errorf("node %d has a route to %s on its real route port %d, around the links", i+1, r.RemoteName, r.Port)
			}
		}
	}
	var routeConns int64
	for i := range 3 {
		for j := range 3 {
			if l := c.RouteLink(i, j); l != nil {
				routeConns += l.Conns()
			}
		}
	}
	if routeConns == 0 {
		t.Error("no connection crossed a route link")
	}
	clientAddrs := []string{c.ClientLink(0).Addr(), c.ClientLink(1).Addr(), c.ClientLink(2).Addr()}
	for _, s := range nc.Servers() {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(clientAddrs, u.Host) {
			t.Errorf("client knows server %s, not a client link (links %v)", s, clientAddrs)
		}
	}
	if got := len(nc.DiscoveredServers()); got != 2 {
		t.Errorf("the client discovered %d other nodes (through ClientAdvertise), want 2: %v", got, nc.Servers())
	}
	if _, port, _ := net.SplitHostPort(nc.ConnectedAddr()); slices.Contains(realPorts(c), port) {
		t.Errorf("client connected to a node's real client port %s", port)
	}

	// Partition node 1: once its routes are gone it has none (none can form
	// around the cut links); healing brings them back.
	for _, l := range c.RouteLinks(0) {
		l.SetDelay(0)
		if err := l.Cut(netem.Reset); err != nil {
			t.Fatal(err)
		}
	}
	WaitFor(t, 20*time.Second, "node 1 without routes", func() bool { return len(routes(t, c, 0)) == 0 })
	WaitFor(t, 20*time.Second, "nodes 2 and 3 routed only to each other", func() bool {
		return slices.Equal(remoteNames(t, c, 1), []string{"node-3"}) && slices.Equal(remoteNames(t, c, 2), []string{"node-2"})
	})
	for _, l := range c.RouteLinks(0) {
		if err := l.Heal(); err != nil {
			t.Fatal(err)
		}
	}
	WaitFor(t, 30*time.Second, "node 1 routed again", func() bool {
		return slices.Equal(remoteNames(t, c, 0), []string{"node-2", "node-3"})
	})
	c.WaitJetStreamReady()
}

// realPorts returns the nodes' own client ports.
func realPorts(c *Cluster) []string {
	var out []string
	for _, s := range c.Servers {
		out = append(out, strconv.Itoa(s.Addr().(*net.TCPAddr).Port))
	}
	return out
}

// A cluster without options keeps its plain, direct connections.
func TestClusterWithoutLinksIsDirect(t *testing.T) {
	c := RunCluster(t, 3)
	if c.Net != nil || c.ClientLink(0) != nil || c.RouteLink(0, 1) != nil {
		t.Fatal("a plain cluster has links")
	}
	if got, want := c.ClientURL(1), c.Servers[1].ClientURL(); got != want {
		t.Errorf("ClientURL(1) = %s, want the node's own %s", got, want)
	}
}
