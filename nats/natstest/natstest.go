// Package natstest starts real embedded nats-servers for tests: a single
// JetStream node or a 3-node JetStream cluster, on random loopback ports with
// stores in the test's temp dir.
package natstest

import (
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/nats/embedded"
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
	opts    []*server.Options
	t       testing.TB
}

// RunCluster starts an n-node JetStream cluster on loopback and waits for a
// meta leader.
func RunCluster(t testing.TB, n int) *Cluster {
	t.Helper()
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

// URLs returns the client URLs of the running nodes, comma separated.
func (c *Cluster) URLs() string {
	s := ""
	for _, ns := range c.Servers {
		if ns == nil || !ns.Running() {
			continue
		}
		if s != "" {
			s += ","
		}
		s += ns.ClientURL()
	}
	return s
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
