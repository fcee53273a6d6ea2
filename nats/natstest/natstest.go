// Package natstest starts real embedded nats-servers for tests: a single
// JetStream node or a 3-node JetStream cluster, on random loopback ports with
// stores in the test's temp dir; a cluster's routes and client connections
// can cross delaying links (WithLinkDelay, package netem).
package natstest

import (
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/nats/embedded"
	"github.com/gamemodes/gamemodes/nats/netem"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// RunServer starts a single JetStream node and shuts it down at the end of the test.
func RunServer(t testing.TB) *server.Server {
	t.Helper()
	return RunServerInDir(t, t.TempDir(), -1)
}

// RunServerInDir starts a JetStream node storing in dir on port (-1 for a
// random one), so a test can restart a server on the same store.
func RunServerInDir(t testing.TB, dir string, port int) *server.Server {
	t.Helper()
	opts := &server.Options{
		ServerName: "test-" + strconv.Itoa(port),
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   dir,
		NoSigs:     true,
		NoLog:      true,
	}
	embedded.SetBatchLimits(opts)
	return RunServerWith(t, opts)
}

// RunServerWith starts a server with opts as given (a test's own limits,
// or JetStream off) and shuts it down at the end of the test.
func RunServerWith(t testing.TB, opts *server.Options) *server.Server {
	t.Helper()
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("nats server: %v", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatalf("nats server not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

// Connect opens a client connection and a JetStream context, closed at the end of the test.
func Connect(t testing.TB, url string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(50 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return nc, js
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Cluster is a JetStream cluster of embedded servers.
type Cluster struct {
	Servers []*server.Server
	// Net holds the cluster's links when it was started WithLinkDelay,
	// else it is nil.
	Net *netem.Network

	opts        []*server.Options
	clientLinks []*netem.Link   // by node, with links
	routeLinks  [][]*netem.Link // [from][to], with links; nil on the diagonal
	t           testing.TB
}

// ClusterOption changes how RunCluster builds a cluster.
type ClusterOption func(*clusterConfig)

type clusterConfig struct {
	links bool
	delay time.Duration
}

// WithLinkDelay puts every connection of the cluster behind a netem link
// with one-way delay d on both directions: each route between two nodes
// (so the round trip between nodes is 2*d) and each client connection to
// a node (URLs and ClientURL give the links' addresses, and the nodes
// advertise those to clients). Each node advertises a dead route address,
// so no node can reach another around the links through route gossip;
// the nodes find each other only through their configured routes, one link
// per ordered pair of nodes (RouteLink). A delay of 0 gives links without
// delay, to cut and heal.
func WithLinkDelay(d time.Duration) ClusterOption {
	return func(c *clusterConfig) { c.links, c.delay = true, d }
}

// RunCluster starts an n-node JetStream cluster on loopback and waits for a
// meta leader.
func RunCluster(t testing.TB, n int, options ...ClusterOption) *Cluster {
	t.Helper()
	var cfg clusterConfig
	for _, o := range options {
		o(&cfg)
	}
	routePorts := make([]int, n)
	for i := range routePorts {
		routePorts[i] = FreePort(t)
	}
	routes := ""
	for i, p := range routePorts {
		if i > 0 {
			routes += ","
		}
		routes += fmt.Sprintf("nats-route://127.0.0.1:%d", p)
	}
	c := &Cluster{t: t}
	if cfg.links {
		c.link(n, routePorts, cfg.delay)
	}
	for i := 0; i < n; i++ {
		o := &server.Options{
			ServerName: fmt.Sprintf("node-%d", i+1),
			Host:       "127.0.0.1",
			Port:       -1,
			JetStream:  true,
			StoreDir:   t.TempDir(),
			NoSigs:     true,
			NoLog:      true,
			Cluster:    server.ClusterOpts{Name: "gamemodes-test", Host: "127.0.0.1", Port: routePorts[i]},
			Routes:     server.RoutesFromStr(routes),
		}
		embedded.SetBatchLimits(o)
		if cfg.links {
			c.routeThroughLinks(i, o)
		}
		ns := c.start(o)
		o.Port = ns.Addr().(*net.TCPAddr).Port // keep the port for Restart
		c.opts = append(c.opts, o)
		c.Servers = append(c.Servers, ns)
	}
	t.Cleanup(func() {
		for _, s := range c.Servers {
			if s != nil {
				s.Shutdown()
			}
		}
	})
	c.WaitJetStreamReady()
	return c
}

// link makes the links of an n-node cluster: one per node for its clients
// and one per ordered pair of nodes for the routes.
func (c *Cluster) link(n int, routePorts []int, delay time.Duration) {
	c.t.Helper()
	c.Net = netem.New()
	c.t.Cleanup(c.Net.Close) // after the servers' shutdown
	add := func(name string, port int) *netem.Link {
		l, err := c.Net.Link(name, fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			c.t.Fatalf("cluster link: %v", err)
		}
		l.SetDelay(delay)
		return l
	}
	c.routeLinks = make([][]*netem.Link, n)
	for i := range n {
		c.clientLinks = append(c.clientLinks, add(fmt.Sprintf("client-node-%d", i+1), FreePort(c.t)))
		c.routeLinks[i] = make([]*netem.Link, n)
		for j := range n {
			if i != j {
				c.routeLinks[i][j] = add(fmt.Sprintf("route-node-%d-to-%d", i+1, j+1), routePorts[j])
			}
		}
	}
}

// routeThroughLinks points node i's options at its links: its client port
// is the one its client link forwards to, it advertises that link to
// clients, it routes to the others through its route links only, and it
// advertises a dead route address.
func (c *Cluster) routeThroughLinks(i int, o *server.Options) {
	c.t.Helper()
	_, port, _ := net.SplitHostPort(c.clientLinks[i].Upstream())
	o.Port, _ = strconv.Atoi(port)
	o.ClientAdvertise = c.clientLinks[i].Addr()
	dead, err := c.Net.DeadAddr()
	if err != nil {
		c.t.Fatalf("cluster link: %v", err)
	}
	o.Cluster.Advertise = dead
	o.Routes = nil
	for _, l := range c.routeLinks[i] {
		if l != nil {
			o.Routes = append(o.Routes, server.RoutesFromStr("nats-route://"+l.Addr())...)
		}
	}
}

// ClientLink returns the link in front of node i's client port, nil
// without links.
func (c *Cluster) ClientLink(i int) *netem.Link {
	if c.clientLinks == nil {
		return nil
	}
	return c.clientLinks[i]
}

// RouteLink returns the link node from dials to reach node to, nil
// without links. A route between two nodes crosses one of the two links
// between them, whichever node's connection the pair kept.
func (c *Cluster) RouteLink(from, to int) *netem.Link {
	if c.routeLinks == nil {
		return nil
	}
	return c.routeLinks[from][to]
}

// RouteLinks returns the links of the routes between node i and the other
// nodes, both ways: cut them all to partition node i from the cluster.
func (c *Cluster) RouteLinks(i int) []*netem.Link {
	var out []*netem.Link
	for j := range c.routeLinks {
		if j != i {
			out = append(out, c.routeLinks[i][j], c.routeLinks[j][i])
		}
	}
	return out
}

func (c *Cluster) start(o *server.Options) *server.Server {
	c.t.Helper()
	ns, err := server.NewServer(o)
	if err != nil {
		c.t.Fatalf("cluster node %s: %v", o.ServerName, err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		c.t.Fatalf("cluster node %s not ready", o.ServerName)
	}
	return ns
}

// WaitJetStreamReady waits until the cluster has a JetStream meta leader
// that sees every running node as an online JetStream peer: before that, a
// replicated stream cannot be placed ("no suitable peers for placement").
func (c *Cluster) WaitJetStreamReady() {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		running := 0
		for _, s := range c.Servers {
			if s != nil && s.Running() {
				running++
			}
		}
		for _, s := range c.Servers {
			if s != nil && s.Running() && s.JetStreamIsLeader() && len(s.JetStreamClusterPeers()) == running {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("no JetStream meta leader seeing every running node")
}

// URLs returns the client URLs of the running nodes, comma separated
// (with links, the links' URLs).
func (c *Cluster) URLs() string {
	s := ""
	for i, ns := range c.Servers {
		if ns == nil || !ns.Running() {
			continue
		}
		if s != "" {
			s += ","
		}
		s += c.ClientURL(i)
	}
	return s
}

// ClientURL returns the client URL of node i (with links, its link's URL).
func (c *Cluster) ClientURL(i int) string {
	if c.clientLinks != nil {
		return "nats://" + c.clientLinks[i].Addr()
	}
	return c.Servers[i].ClientURL()
}

// StreamLeader returns the index of the node leading stream name, or -1.
func (c *Cluster) StreamLeader(account, name string) int {
	for i, s := range c.Servers {
		if s != nil && s.Running() && s.JetStreamIsStreamLeader(account, name) {
			return i
		}
	}
	return -1
}

// Stop shuts node i down.
func (c *Cluster) Stop(i int) {
	c.Servers[i].Shutdown()
	c.Servers[i].WaitForShutdown()
}

// Restart starts node i again on the same store and ports.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	c.Servers[i] = c.start(c.opts[i].Clone())
}
