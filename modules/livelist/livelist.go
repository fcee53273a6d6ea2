// Package livelist publishes the lobby list of every region to game
// servers, from one process at a time: the holder of a lease. It decides
// when to publish (a lease campaign with a validity window, the lists that
// changed, every list again each Refresh); an adapter stores the lease
// (lease.Lease) and sends a list (Sender).
package livelist

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gamemodes/gamemodes/modules/lease"
	"github.com/gamemodes/gamemodes/modules/lobby"
	"github.com/prometheus/client_golang/prometheus"
)

// Source is what the publisher follows: every region's lobby list
// (*lobby.Broadcaster implements it).
type Source interface {
	// SubscribeAll follows every region: their current lists at once,
	// then each change.
	SubscribeAll() *lobby.Subscription
	// Synced reports whether the lists are complete (every count shard
	// loaded); a process does not compete to publish before.
	Synced() bool
	// Current returns every region's list as it is now, with its version.
	Current() []lobby.Update
}

// Sender sends one region's list to the game servers.
type Sender interface {
	// Connected reports whether a list sent now reaches the servers at
	// once (a sender that buffers while disconnected would deliver it late).
	Connected() bool
	Send(u lobby.Update) error
}

// DefaultRefresh is how often the binary's publisher sends every region's
// list again (Config.Refresh).
const DefaultRefresh = 10 * time.Second

// DefaultLeaseTTL is the lease time when Config.LeaseTTL is not set (the
// default TTL of the leases the binary keeps).
const DefaultLeaseTTL = 3 * time.Second

// Config configures a Publisher.
type Config struct {
	// Member names this process in the lease and to the servers.
	Member string
	// LeaseTTL is the lease's lifetime without renewal (default
	// DefaultLeaseTTL). The lease is renewed, and a standby tries to take
	// it, every LeaseTTL/3.
	LeaseTTL time.Duration
	// Refresh is how often the holder publishes every region's list again,
	// changed or not (same version), so that a subscriber that just joined
	// gets the lists within Refresh without waiting for a change; 0 means
	// never (only changes, and every list when publishing starts).
	Refresh time.Duration
}

// Publisher publishes the lobby list of every region when it changes (as
// often as the source sends changes: at most every 100 ms per region with
// the default broadcaster), every list when it starts publishing, and
// every list again each Refresh.
//
// When several edges run, exactly one publishes: the holder of the lease,
// whose TTL bounds how long a dead holder keeps it. A process acquires the
// lease (which fails while anyone holds it), renews it every TTL/3, and
// releases it when it stops, so that a standby, trying every TTL/3, takes
// over. The holder publishes only until 2/3 TTL after sending its last
// successful renewal: the lease cannot expire before TTL after that, so an
// old holder that lost the lease store has stopped before anyone else can
// take the lease, and it publishes only while the sender is connected.
type Publisher struct {
	lease lease.Lease
	src   Source
	send  Sender
	cfg   Config
	log   *slog.Logger

	leader    atomic.Bool
	published prometheus.Counter

	startOnce sync.Once
	stopOnce  sync.Once
	stop      chan struct{}
	done      chan struct{}
	lastErr   string // the last lease error logged (run goroutine only)
}

// New returns a publisher of src's lists through send, holding l while it
// publishes; nothing happens until Start. reg may be nil.
func New(l lease.Lease, src Source, send Sender, cfg Config, log *slog.Logger, reg prometheus.Registerer) *Publisher {
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = DefaultLeaseTTL
	}
	if log == nil {
		log = slog.Default()
	}
	p := &Publisher{lease: l, src: src, send: send, cfg: cfg, log: log,
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gamemodes_popular_published_total",
			Help: "Lobby lists this process published on gamemodes.popular.<REGION>.",
		}),
		stop: make(chan struct{}), done: make(chan struct{})}
	if reg != nil {
		leader := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gamemodes_popular_publisher",
			Help: "1 while this process holds the lease to publish the lobby lists on NATS.",
		}, func() float64 {
			if p.leader.Load() {
				return 1
			}
			return 0
		})
		for _, c := range []prometheus.Collector{p.published, leader} {
			if err := reg.Register(c); err != nil {
				log.Error("live-list publisher: register metrics", "err", err)
			}
		}
	}
	return p
}

// Start runs the publisher in the background.
func (p *Publisher) Start() { p.startOnce.Do(func() { go p.run() }) }

// Stop stops publishing and releases the lease, waiting for that or for
// ctx to end.
func (p *Publisher) Stop(ctx context.Context) error {
	p.stopOnce.Do(func() { close(p.stop) })
	started := true
	p.startOnce.Do(func() { started = false; close(p.done) })
	if !started {
		return nil
	}
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("live-list publisher: stop: %w", ctx.Err())
	}
}

// Leader reports whether this process holds the lease and publishes.
func (p *Publisher) Leader() bool { return p.leader.Load() }

// held is the held lease; sub is nil while not held.
type held struct {
	sub        *lobby.Subscription
	rev        uint64
	validUntil time.Time // publish only before this
}

func (p *Publisher) run() {
	defer close(p.done)
	every := p.cfg.LeaseTTL / 3
	tick := time.NewTicker(every)
	defer tick.Stop()
	var refresh <-chan time.Time
	if p.cfg.Refresh > 0 {
		t := time.NewTicker(p.cfg.Refresh)
		defer t.Stop()
		refresh = t.C
	}
	var l held
	p.campaign(&l, every)
	for {
		var ready <-chan struct{}
		if l.sub != nil {
			ready = l.sub.Ready()
		}
		select {
		case <-p.stop:
			p.resign(&l, every)
			return
		case <-tick.C:
			if l.sub == nil {
				p.campaign(&l, every)
			} else {
				p.renew(&l, every)
			}
		case <-ready:
		case <-refresh:
			if l.sub != nil {
				p.publish(&l) // changes first: the lists sent next are at least as new
				p.republish(&l)
			}
		}
		if l.sub != nil {
			p.publish(&l)
		}
	}
}

// campaign takes the lease when nobody holds it.
func (p *Publisher) campaign(l *held, every time.Duration) {
	if !p.src.Synced() || !p.send.Connected() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), every)
	defer cancel()
	sent := time.Now()
	rev, err := p.lease.Acquire(ctx, p.cfg.Member)
	if err != nil {
		if !errors.Is(err, lease.ErrConflict) {
			p.logErr(err)
		}
		return
	}
	p.lastErr = ""
	l.rev, l.validUntil = rev, sent.Add(p.cfg.LeaseTTL-every)
	l.sub = p.src.SubscribeAll()
	p.leader.Store(true)
	p.log.Info("publishing the lobby lists", "member", p.cfg.Member)
}

// renew extends the lease; losing it (taken by another process, or not
// renewed in time) stops publishing.
func (p *Publisher) renew(l *held, every time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), every)
	defer cancel()
	sent := time.Now()
	rev, err := p.lease.Renew(ctx, p.cfg.Member, l.rev)
	if err == nil {
		p.lastErr = ""
		l.rev, l.validUntil = rev, sent.Add(p.cfg.LeaseTTL-every)
		return
	}
	if errors.Is(err, lease.ErrConflict) || time.Now().After(l.validUntil) {
		p.log.Warn("stopped publishing the lobby lists: lease lost", "err", err)
		p.abdicate(l)
		return
	}
	p.logErr(err)
}

// resign stops publishing and releases the lease so that a standby takes
// over at its next attempt.
func (p *Publisher) resign(l *held, every time.Duration) {
	if l.sub == nil {
		return
	}
	rev := l.rev
	p.abdicate(l)
	ctx, cancel := context.WithTimeout(context.Background(), every)
	defer cancel()
	if err := p.lease.Release(ctx, p.cfg.Member, rev); err != nil {
		p.log.Warn("live-list publisher lease not released (it expires by itself)", "err", err)
	}
}

func (p *Publisher) abdicate(l *held) {
	l.sub.Close()
	*l = held{}
	p.leader.Store(false)
}

// publish sends the lists not sent yet while the lease is valid; otherwise
// they wait in the subscription (only the latest of each region).
func (p *Publisher) publish(l *held) {
	for p.mayPublish(l) {
		u, ok := l.sub.Next()
		if !ok {
			return
		}
		p.sendOne(u)
	}
}

// republish sends every region's current list again (see Refresh).
func (p *Publisher) republish(l *held) {
	for _, u := range p.src.Current() {
		if !p.mayPublish(l) {
			return
		}
		p.sendOne(u)
	}
}

// mayPublish reports whether the lease is still valid and the sender connected.
func (p *Publisher) mayPublish(l *held) bool {
	return time.Now().Before(l.validUntil) && p.send.Connected()
}

func (p *Publisher) sendOne(u lobby.Update) {
	if err := p.send.Send(u); err != nil {
		p.log.Warn("lobby list not published", "region", u.Region, "err", err)
		return
	}
	p.published.Inc()
}

// logErr logs a lease error once until it changes or the lease works again.
func (p *Publisher) logErr(err error) {
	if msg := err.Error(); msg != p.lastErr {
		p.lastErr = msg
		p.log.Warn("live-list publisher lease", "err", err)
	}
}
