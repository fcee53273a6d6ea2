// Package netem emulates a network on 127.0.0.1 for tests, benchmarks and
// the chaos soak: each link is a TCP proxy (Toxiproxy's Go library, in
// process) that delays both directions by a one-way delay that can change at
// run time, and that can be cut and healed. NATS routes and client
// connections cross such links in natstest and in the process cluster of
// cmd/internal/netcluster; a Postgres connection can cross one too.
//
// Delays are applied per chunk read from the socket, from the moment it was
// read: a link adds latency without capping throughput (chunks in flight
// are not serialized behind one another). On Linux the wait uses a timerfd,
// because Go's timers sleep at least a millisecond when the process is idle,
// which would turn 0.5 ms into 1 ms.
package netem

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
)

// Cut is how a link is cut.
type Cut int

const (
	// Blackhole keeps the connections open but passes nothing either way
	// until Heal, losing nothing: what TCP shows during a network
	// partition (the peers only notice through their own timeouts). New
	// connections are accepted and then pass nothing either.
	Blackhole Cut = iota + 1
	// Reset closes every connection at once and refuses new ones until
	// Heal: what a peer that went away looks like.
	Reset
)

// String names the cut.
func (c Cut) String() string {
	switch c {
	case Blackhole:
		return "blackhole"
	case Reset:
		return "reset"
	}
	return fmt.Sprintf("cut(%d)", int(c))
}

// Network is a set of links; its zero value is not usable, call New.
type Network struct {
	server *toxiproxy.ApiServer

	mu     sync.Mutex
	links  []*Link
	dead   []deadAddr
	closed bool
}

// New returns an empty network.
func New() *Network {
	return &Network{server: toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())}
}

// Link starts a link named name (unique in the network) listening on a
// random port of 127.0.0.1 and forwarding every connection to upstream
// (host:port), with no delay.
func (n *Network) Link(name, upstream string) (*Link, error) {
	return n.LinkAt(name, "127.0.0.1:0", upstream)
}

// LinkAt is Link listening on listen (host:port) instead of a random port.
func (n *Network) LinkAt(name, listen, upstream string) (*Link, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, errors.New("netem: network closed")
	}
	l := &Link{name: name, upstream: upstream, proxy: toxiproxy.NewProxy(n.server, name, listen, upstream)}
	l.state.healed = closedChan()
	for _, stream := range []string{"upstream", "downstream"} {
		w, err := l.proxy.Toxics.AddToxicJson(strings.NewReader(
			fmt.Sprintf(`{"name":"delay_%s","type":%q,"stream":%q,"attributes":{}}`, stream, delayToxicType, stream)))
		if err != nil {
			return nil, fmt.Errorf("netem: link %s: delay toxic: %w", name, err)
		}
		t := w.Toxic.(*delayToxic)
		t.link = &l.state
		t.countConns = stream == "upstream"
	}
	if err := n.server.Collection.Add(l.proxy, true); err != nil {
		return nil, fmt.Errorf("netem: link %s to %s: %w", name, upstream, err)
	}
	l.addr = l.proxy.Listen
	n.links = append(n.links, l)
	return l, nil
}

// Links returns the network's links in the order they were made.
func (n *Network) Links() []*Link {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.links)
}

// Close stops every link, closing its connections, and releases the dead
// addresses.
func (n *Network) Close() {
	n.mu.Lock()
	links, dead := n.links, n.dead
	n.links, n.dead, n.closed = nil, nil, true
	n.mu.Unlock()
	for _, l := range links {
		l.Heal() // releases held chunks so the link's goroutines can end
		l.proxy.Stop()
	}
	for _, d := range dead {
		d.close()
	}
}

// DeadAddr returns a host:port on 127.0.0.1 that refuses every connection
// until the network is closed (the port stays reserved, so nothing else can
// take it). A NATS node advertises one as its route address so that a node
// learning of it through gossip cannot connect around the links.
func (n *Network) DeadAddr() (string, error) {
	d, err := newDeadAddr()
	if err != nil {
		return "", fmt.Errorf("netem: dead address: %w", err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		d.close()
		return "", errors.New("netem: network closed")
	}
	n.dead = append(n.dead, d)
	return d.addr, nil
}

// Link is one emulated connection path: a proxy listening on Addr and
// forwarding to Upstream. Its methods are safe for concurrent use.
type Link struct {
	name     string
	addr     string
	upstream string
	proxy    *toxiproxy.Proxy
	state    linkState

	mu  sync.Mutex
	cut Cut // 0 when not cut
}

// linkState is what the link's delay toxics read on every chunk.
type linkState struct {
	delay atomic.Int64 // one-way delay in nanoseconds
	conns atomic.Int64 // connections accepted

	mu     sync.Mutex
	healed chan struct{} // closed unless the link is blackholed
}

// heldUntil returns nil when chunks may pass, else a channel closed at Heal.
func (s *linkState) heldUntil() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.healed:
		return nil
	default:
		return s.healed
	}
}

func closedChan() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

// Name is the link's name.
func (l *Link) Name() string { return l.name }

// Addr is the host:port the link listens on: connect here instead of Upstream.
func (l *Link) Addr() string { return l.addr }

// Upstream is the host:port the link forwards to.
func (l *Link) Upstream() string { return l.upstream }

// SetDelay sets the one-way delay of both directions (a round trip across
// the link takes twice d more). It applies to data read from now on.
func (l *Link) SetDelay(d time.Duration) { l.state.delay.Store(int64(max(d, 0))) }

// Delay is the one-way delay.
func (l *Link) Delay() time.Duration { return time.Duration(l.state.delay.Load()) }

// Conns is the number of connections the link has accepted so far.
func (l *Link) Conns() int64 { return l.state.conns.Load() }

// Cutting reports how the link is cut, 0 when it is not.
func (l *Link) Cutting() Cut {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cut
}

// Cut cuts the link until Heal. Cutting a cut link again changes nothing,
// even with another kind of cut.
func (l *Link) Cut(how Cut) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cut != 0 {
		return nil
	}
	switch how {
	case Blackhole:
		l.state.mu.Lock()
		l.state.healed = make(chan struct{})
		l.state.mu.Unlock()
	case Reset:
		l.proxy.Stop()
	default:
		return fmt.Errorf("netem: link %s: unknown cut %v", l.name, how)
	}
	l.cut = how
	return nil
}

// Heal ends a cut: held data flows again (Blackhole), or the link accepts
// connections again on the same address (Reset).
func (l *Link) Heal() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch l.cut {
	case Blackhole:
		l.state.mu.Lock()
		close(l.state.healed)
		l.state.mu.Unlock()
	case Reset:
		if err := l.proxy.Start(); err != nil {
			return fmt.Errorf("netem: heal link %s on %s: %w", l.name, l.addr, err)
		}
	}
	l.cut = 0
	return nil
}

// Dial connects to the link (for tests).
func (l *Link) Dial() (net.Conn, error) { return net.Dial("tcp", l.addr) }
