// Package netcluster runs a replicated gamemodes cluster of real processes
// on 127.0.0.1 whose every connection crosses a netem link (nats/netem):
// official nats-server nodes, whose routes cross one link per ordered pair
// of nodes and whose clients cross one link per node, and gamemodes
// processes (edges, workers, archivers) connected through those client
// links, with the players' Postgres behind a link too. Each process can be
// stopped, killed (kill -9), paused (SIGSTOP), resumed and restarted; each
// node's links can be delayed, cut and healed at run time. It is the harness
// of the replicated benchmark (cmd/netcluster bench) and of the chaos soak.
package netcluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gamemodes/gamemodes/nats/netem"
)

// Roles of gamemodes processes.
const (
	RoleEdge     = "edge"
	RoleWorker   = "worker"
	RoleArchiver = "archiver"
)

// Config describes a cluster.
type Config struct {
	// Dir holds the nodes' stores and configs and every process's log
	// (logs/<name>.log). It is created if missing.
	Dir string
	// NATSServer and Gamemodes are the binaries' paths (see Build).
	NATSServer, Gamemodes string
	// Nodes is the number of nats-server nodes (default 3).
	Nodes int
	// RouteDelay is the one-way delay of each route link (node-to-node
	// round trip: twice as much); ClientDelay that of each client link.
	RouteDelay, ClientDelay time.Duration
	// Replicas is passed to gamemodes as --replicas (default: Nodes).
	Replicas int
	// Edges, Workers and Archivers are how many gamemodes processes of
	// each role run (edge1, worker1, ...). The first edge starts first and
	// creates the topology.
	Edges, Workers, Archivers int
	// PostgresURL is the archivers' database; the archivers reach it through
	// a link (Cluster.Postgres). Empty: archivers run without one.
	PostgresURL string
	// Args are appended to every gamemodes serve command line.
	Args []string
	// JetStream is inserted into each node's jetstream { } block, e.g.
	// "limits { batch { max_msgs: 1000 } }".
	JetStream string
	// ReadyTimeout bounds each wait for a process to be ready (default 60 s).
	ReadyTimeout time.Duration
	// Log receives the harness's own lines (default: discarded).
	Log *slog.Logger
}

func (c *Config) defaults() {
	if c.Nodes == 0 {
		c.Nodes = 3
	}
	if c.Replicas == 0 {
		c.Replicas = c.Nodes
	}
	if c.ReadyTimeout == 0 {
		c.ReadyTimeout = 60 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// Cluster is a running cluster.
type Cluster struct {
	cfg Config
	// Net holds every link of the cluster.
	Net *netem.Network
	// Nodes are the nats-server nodes, Apps the gamemodes processes.
	Nodes []*Node
	Apps  []*App
	// Postgres is the archivers' link to PostgresURL's server, nil without.
	Postgres *netem.Link
}

// Node is one nats-server process.
type Node struct {
	*Process
	// Index is the node's position (0-based); its name is nats<Index+1>.
	Index int
	// ClientPort, RoutePort and MonitorPort are the node's own ports on
	// 127.0.0.1 (clients should use ClientLink instead).
	ClientPort, RoutePort, MonitorPort int
	// ClientLink is the link in front of the client port.
	ClientLink *netem.Link
	// RouteLinks[j] is the link this node dials to reach node j (nil for itself).
	RouteLinks []*netem.Link
}

// ClientURL is the node's client URL through its link.
func (n *Node) ClientURL() string { return "nats://" + n.ClientLink.Addr() }

// MonitorURL is the node's monitoring endpoint (not behind a link).
func (n *Node) MonitorURL() string { return fmt.Sprintf("http://127.0.0.1:%d", n.MonitorPort) }

// App is one gamemodes process.
type App struct {
	*Process
	// Role is edge, worker or archiver.
	Role string
	// HTTPAddr serves /readyz, /metrics (and the API on an edge).
	HTTPAddr string
}

// URL is the app's HTTP base URL.
func (a *App) URL() string { return "http://" + a.HTTPAddr }

// Start builds the cluster's links and configs in cfg.Dir and starts every
// node, then the first edge, then the other apps, waiting until each is
// ready. On error everything started is stopped again.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	cfg.defaults()
	if cfg.Nodes < 1 || cfg.Edges < 1 {
		return nil, errors.New("netcluster: need at least one node and one edge")
	}
	for _, d := range []string{cfg.Dir, filepath.Join(cfg.Dir, "logs")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("netcluster: %w", err)
		}
	}
	c := &Cluster{cfg: cfg, Net: netem.New()}
	ok := false
	defer func() {
		if !ok {
			stopCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c.Stop(stopCtx)
		}
	}()
	if err := c.makeNodes(); err != nil {
		return nil, err
	}
	for _, n := range c.Nodes {
		if err := n.Start(); err != nil {
			return nil, err
		}
	}
	for _, n := range c.Nodes {
		// /healthz answers 200 once the node runs JetStream with a meta leader.
		if err := c.waitHTTP(ctx, n.Process, n.MonitorURL()+"/healthz"); err != nil {
			return nil, err
		}
	}
	if err := c.waitRoutes(ctx); err != nil {
		return nil, err
	}
	c.cfg.Log.Info("nats nodes ready", "nodes", len(c.Nodes), "urls", c.ClientURLs())
	if err := c.makeApps(); err != nil {
		return nil, err
	}
	// The first edge creates the stream and buckets; the others wait for it.
	for i, a := range c.Apps {
		if err := a.Start(); err != nil {
			return nil, err
		}
		if i == 0 {
			if err := c.WaitReady(ctx, a); err != nil {
				return nil, err
			}
		}
	}
	for _, a := range c.Apps[1:] {
		if err := c.WaitReady(ctx, a); err != nil {
			return nil, err
		}
	}
	c.cfg.Log.Info("apps ready", "apps", len(c.Apps), "api", c.Edge().URL())
	ok = true
	return c, nil
}

// makeNodes picks the nodes' ports, makes their links and writes their configs.
func (c *Cluster) makeNodes() error {
	n := c.cfg.Nodes
	for i := range n {
		node := &Node{Index: i, RouteLinks: make([]*netem.Link, n)}
		ports, err := freePorts(3)
		if err != nil {
			return err
		}
		node.ClientPort, node.RoutePort, node.MonitorPort = ports[0], ports[1], ports[2]
		if node.ClientLink, err = c.link(fmt.Sprintf("client-nats%d", i+1), node.ClientPort, c.cfg.ClientDelay); err != nil {
			return err
		}
		c.Nodes = append(c.Nodes, node)
	}
	for _, from := range c.Nodes {
		for _, to := range c.Nodes {
			if from == to {
				continue
			}
			l, err := c.link(fmt.Sprintf("route-nats%d-to-nats%d", from.Index+1, to.Index+1), to.RoutePort, c.cfg.RouteDelay)
			if err != nil {
				return err
			}
			from.RouteLinks[to.Index] = l
		}
	}
	for _, node := range c.Nodes {
		name := fmt.Sprintf("nats%d", node.Index+1)
		conf, err := c.nodeConfig(node, name)
		if err != nil {
			return err
		}
		path := filepath.Join(c.cfg.Dir, name+".conf")
		if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
			return fmt.Errorf("netcluster: %w", err)
		}
		node.Process = newProcess(name, c.cfg.NATSServer, c.logPath(name), "-c", path)
	}
	return nil
}

// nodeConfig is a node's nats-server configuration: it advertises its
// client link to clients and a dead route address to the other nodes (so
// route gossip cannot lead around the links), and routes to the others
// through its own route links only.
func (c *Cluster) nodeConfig(n *Node, name string) (string, error) {
	dead, err := c.Net.DeadAddr()
	if err != nil {
		return "", err
	}
	// Each pair's route is dialed by one of its nodes only (node i dials
	// the nodes up to half the ring after it: with 3 nodes 1->2, 2->3,
	// 3->1): when both dial, the pair drops one connection as a duplicate,
	// and a JetStream request crossing it at start can be lost (a topology
	// request then waited out its 30 s timeout). The links in the other
	// direction carry nothing, but are cut with the others.
	var routes []string
	size := len(n.RouteLinks)
	for j, l := range n.RouteLinks {
		if d := (j - n.Index + size) % size; d >= 1 && (d <= (size-1)/2 || 2*d == size) {
			routes = append(routes, "    nats-route://"+l.Addr())
		}
	}
	store, err := filepath.Abs(filepath.Join(c.cfg.Dir, name))
	if err != nil {
		return "", err
	}
	return fmt.Sprintf(`# Written by netcluster: node %[1]s, every connection through a netem link.
server_name: %[1]s
listen: 127.0.0.1:%[2]d
client_advertise: %[3]q
http: 127.0.0.1:%[4]d

jetstream {
  store_dir: %[5]q
  %[6]s
}

cluster {
  name: netcluster
  listen: 127.0.0.1:%[7]d
  advertise: %[8]q
  routes: [
%[9]s
  ]
}
`, name, n.ClientPort, n.ClientLink.Addr(), n.MonitorPort, store, c.cfg.JetStream, n.RoutePort, dead, strings.Join(routes, "\n")), nil
}

// makeApps declares the gamemodes processes (not started).
func (c *Cluster) makeApps() error {
	if c.cfg.PostgresURL != "" && c.cfg.Archivers > 0 {
		host, err := postgresHost(c.cfg.PostgresURL)
		if err != nil {
			return err
		}
		if c.Postgres, err = c.Net.Link("postgres", host); err != nil {
			return err
		}
	}
	roles := []struct {
		role string
		n    int
	}{{RoleEdge, c.cfg.Edges}, {RoleWorker, c.cfg.Workers}, {RoleArchiver, c.cfg.Archivers}}
	for _, r := range roles {
		for i := range r.n {
			name := fmt.Sprintf("%s%d", r.role, i+1)
			ports, err := freePorts(1)
			if err != nil {
				return err
			}
			addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
			args := []string{"serve", "--roles", r.role, "--nats-url", c.ClientURLs(),
				"--replicas", strconv.Itoa(c.cfg.Replicas), "--http-addr", addr, "--instance-id", name,
				"--data-dir", filepath.Join(c.cfg.Dir, name), "--log-format", "json"}
			if r.role == RoleArchiver && c.Postgres != nil {
				args = append(args, "--postgres-url", withHost(c.cfg.PostgresURL, c.Postgres.Addr()))
			}
			args = append(args, c.cfg.Args...)
			c.Apps = append(c.Apps, &App{Process: newProcess(name, c.cfg.Gamemodes, c.logPath(name), args...), Role: r.role, HTTPAddr: addr})
		}
	}
	return nil
}

func (c *Cluster) link(name string, port int, delay time.Duration) (*netem.Link, error) {
	l, err := c.Net.Link(name, fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return nil, err
	}
	l.SetDelay(delay)
	return l, nil
}

func (c *Cluster) logPath(name string) string { return filepath.Join(c.cfg.Dir, "logs", name+".log") }

// ClientURLs lists every node's client link URL, comma separated (the
// apps' --nats-url; the NATS client picks one at random).
func (c *Cluster) ClientURLs() string {
	var urls []string
	for _, n := range c.Nodes {
		urls = append(urls, n.ClientURL())
	}
	return strings.Join(urls, ",")
}

// Edge returns the first edge.
func (c *Cluster) Edge() *App { return c.Role(RoleEdge)[0] }

// Role returns the apps of a role.
func (c *Cluster) Role(role string) []*App {
	var out []*App
	for _, a := range c.Apps {
		if a.Role == role {
			out = append(out, a)
		}
	}
	return out
}

// WaitReady waits until app answers /readyz with 200 (or ctx ends, or
// Config.ReadyTimeout passes, or it exits).
func (c *Cluster) WaitReady(ctx context.Context, a *App) error {
	return c.waitHTTP(ctx, a.Process, a.URL()+"/readyz")
}

// WaitNodeReady waits until node n's /healthz answers 200 (JetStream up
// with a meta leader).
func (c *Cluster) WaitNodeReady(ctx context.Context, n *Node) error {
	return c.waitHTTP(ctx, n.Process, n.MonitorURL()+"/healthz")
}

func (c *Cluster) waitHTTP(ctx context.Context, p *Process, url string) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ReadyTimeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.Exited():
			return fmt.Errorf("netcluster: %s exited before it was ready; see %s", p.Name(), p.Log())
		case <-ctx.Done():
			return fmt.Errorf("netcluster: %s not ready (%s): %w; see %s", p.Name(), url, ctx.Err(), p.Log())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitRoutes waits until every node has routes to all the others and no
// node's number of route connections has changed for a second (the route
// pools are complete).
func (c *Cluster) waitRoutes(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ReadyTimeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	var last []int
	stableSince := time.Now()
	for {
		now, complete := make([]int, len(c.Nodes)), true
		for i, n := range c.Nodes {
			var rz struct {
				NumRoutes int `json:"num_routes"`
				Routes    []struct {
					RemoteName string `json:"remote_name"`
				} `json:"routes"`
			}
			if err := getJSON(ctx, client, n.MonitorURL()+"/routez", &rz); err != nil {
				complete = false
				continue
			}
			peers := map[string]bool{}
			for _, r := range rz.Routes {
				peers[r.RemoteName] = true
			}
			now[i] = rz.NumRoutes
			complete = complete && len(peers) == len(c.Nodes)-1
		}
		if !complete || !slices.Equal(now, last) {
			last, stableSince = now, time.Now()
		} else if time.Since(stableSince) >= time.Second {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("netcluster: routes between the nodes not complete and stable (route connections per node %v): %w", now, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func getJSON(ctx context.Context, client *http.Client, url string, into any) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(into)
}

// NodeLinks returns every link of node i: its client link and the route
// links between it and every other node, both ways.
func (c *Cluster) NodeLinks(i int) []*netem.Link {
	return append([]*netem.Link{c.Nodes[i].ClientLink}, c.routeLinks(i)...)
}

// routeLinks returns the route links between node i and the others, both ways.
func (c *Cluster) routeLinks(i int) []*netem.Link {
	var out []*netem.Link
	for j, other := range c.Nodes {
		if j != i {
			out = append(out, c.Nodes[i].RouteLinks[j], other.RouteLinks[i])
		}
	}
	return out
}

// SetNodeDelay sets the one-way delay of every link of node i (its client
// link and its routes): the chaos soak's "added latency on one node".
func (c *Cluster) SetNodeDelay(i int, d time.Duration) {
	for _, l := range c.NodeLinks(i) {
		l.SetDelay(d)
	}
}

// SetDelays sets the one-way delay of every route link and every client link.
func (c *Cluster) SetDelays(route, client time.Duration) {
	for i, n := range c.Nodes {
		n.ClientLink.SetDelay(client)
		for j, l := range n.RouteLinks {
			if j != i {
				l.SetDelay(route)
			}
		}
	}
}

// Partition cuts node i off from the other nodes (its route links, both
// ways; its clients still reach it) until HealPartition.
func (c *Cluster) Partition(i int, how netem.Cut) error {
	var errs []error
	for _, l := range c.routeLinks(i) {
		errs = append(errs, l.Cut(how))
	}
	return errors.Join(errs...)
}

// HealPartition heals node i's route links.
func (c *Cluster) HealPartition(i int) error {
	var errs []error
	for _, l := range c.routeLinks(i) {
		errs = append(errs, l.Heal())
	}
	return errors.Join(errs...)
}

// Stop stops the apps gracefully (in parallel), then the nodes, then the
// links; whatever has not exited when ctx ends is killed.
func (c *Cluster) Stop(ctx context.Context) {
	stopAll := func(ps []*Process) {
		done := make(chan struct{}, len(ps))
		for _, p := range ps {
			go func() {
				if err := p.Stop(ctx); err != nil {
					c.cfg.Log.Warn("stop", "process", p.Name(), "err", err)
				}
				done <- struct{}{}
			}()
		}
		for range ps {
			<-done
		}
	}
	var apps, nodes []*Process
	for _, a := range c.Apps {
		apps = append(apps, a.Process)
	}
	for _, n := range c.Nodes {
		if n.Process != nil {
			nodes = append(nodes, n.Process)
		}
	}
	stopAll(apps)
	stopAll(nodes)
	c.Net.Close()
}

// freePorts returns n distinct TCP ports free on 127.0.0.1 a moment ago.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("netcluster: free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// NodeIndex returns the index of the node named name (nats1 is 0), -1 when
// there is none.
func (c *Cluster) NodeIndex(name string) int {
	for _, n := range c.Nodes {
		if n.Name() == name {
			return n.Index
		}
	}
	return -1
}

// App returns the app named name, nil when there is none.
func (c *Cluster) App(name string) *App {
	for _, a := range c.Apps {
		if a.Name() == name {
			return a
		}
	}
	return nil
}

// StreamLeader returns the index of the node leading stream (in the global
// account, e.g. GAMEMODES_EVENTS or KV_gamemodes_players), as the running
// nodes' monitoring endpoints (/jsz) report it.
func (c *Cluster) StreamLeader(ctx context.Context, stream string) (int, error) {
	client := &http.Client{Timeout: 2 * time.Second}
	var errs []error
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		var jsz struct {
			Accounts []struct {
				Streams []struct {
					Name    string `json:"name"`
					Cluster struct {
						Leader string `json:"leader"`
					} `json:"cluster"`
				} `json:"stream_detail"`
			} `json:"account_details"`
		}
		if err := getJSON(ctx, client, n.MonitorURL()+"/jsz?accounts=true&streams=true", &jsz); err != nil {
			errs = append(errs, err)
			continue
		}
		for _, a := range jsz.Accounts {
			for _, s := range a.Streams {
				if s.Name != stream || s.Cluster.Leader == "" {
					continue
				}
				if i := c.NodeIndex(s.Cluster.Leader); i >= 0 {
					return i, nil
				}
			}
		}
	}
	return -1, fmt.Errorf("netcluster: no leader of stream %s reported: %w", stream, errors.Join(errs...))
}
