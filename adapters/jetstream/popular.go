package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gamemodes/gamemodes/modules/lobby"
	"github.com/gamemodes/gamemodes/modules/partition"
	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Headers of the lobby lists published on gamemodes.popular.<REGION>.
const (
	// HeaderPopularVersion carries the list's version (decimal): it
	// increases with every change of the region's list and is the
	// counts-bucket revision as of which the list is exact, so it is
	// comparable across publishers. A subscriber drops a message whose
	// version is not above the last one it kept.
	HeaderPopularVersion = topology.HeaderPopularVersion
	// HeaderPopularPublisher names the edge that published the list.
	HeaderPopularPublisher = topology.HeaderPopularPublisher
)

// PopularSource is what the publisher follows: every region's lobby list
// (*lobby.Broadcaster implements it).
type PopularSource interface {
	// SubscribeAll follows every region: their current lists at once,
	// then each change.
	SubscribeAll() *lobby.Subscription
	// Synced reports whether the lists are complete (every count shard
	// loaded); a process does not compete to publish before.
	Synced() bool
	// Current returns every region's list as it is now, with its version.
	Current() []lobby.Update
}

// DefaultPopularRefresh is how often the binary's publisher sends every
// region's list again (PopularPublisherConfig.Refresh).
const DefaultPopularRefresh = 10 * time.Second

// PopularPublisherConfig configures a PopularPublisher.
type PopularPublisherConfig struct {
	// Member names this process in the lease and the publisher header.
	Member string
	// LeaseTTL is the leases bucket's TTL (topology.Topology.LeaseTTL;
	// default topology.DefaultLeaseTTL). The lease is renewed, and a
	// standby tries to take it, every LeaseTTL/3.
	LeaseTTL time.Duration
	// Refresh is how often the holder publishes every region's list again,
	// changed or not (same version), so that a subscriber that just joined
	// gets the lists within Refresh without waiting for a change; 0 means
	// never (only changes, and every list when publishing starts).
	Refresh time.Duration
}

// PopularPublisher publishes the lobby list of every region on core NATS,
// gamemodes.popular.<REGION>, when it changes (as often as the source sends
// changes: at most every 100 ms per region with the default broadcaster),
// every list when it starts publishing, and every list again each
// Refresh.
//
// When several edges run, exactly one publishes: the holder of the lease
// topology.PopularPublisherKey in the leases bucket, whose TTL bounds how
// long a dead holder keeps it. A process creates the key (kv.Create, which
// fails while anyone holds it), renews it every TTL/3 with a
// revision-checked kv.Update, and deletes it when it stops, so that a
// standby, trying every TTL/3, takes over. The holder publishes only until
// 2/3 TTL after sending its last successful renewal: the key cannot expire
// on the server before TTL after that, so an old holder that lost the
// server has stopped before anyone else can take the lease, and it
// publishes only while connected (core NATS would otherwise buffer
// messages during a reconnect and deliver them late).
type PopularPublisher struct {
	js    jetstream.JetStream
	src   PopularSource
	cfg   PopularPublisherConfig
	log   *slog.Logger
	lease kvLease // the publisher lease, set by Start

	leader    atomic.Bool
	published prometheus.Counter

	startOnce sync.Once
	stopOnce  sync.Once
	stop      chan struct{}
	done      chan struct{}
	lastErr   string // the last lease error logged (run goroutine only)
}

// NewPopularPublisher returns a publisher of src's lists on js's
// connection; nothing happens until Start. reg may be nil.
func NewPopularPublisher(js jetstream.JetStream, src PopularSource, cfg PopularPublisherConfig, log *slog.Logger, reg prometheus.Registerer) *PopularPublisher {
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = topology.DefaultLeaseTTL
	}
	p := &PopularPublisher{js: js, src: src, cfg: cfg, log: log,
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
				log.Error("popular publisher: register metrics", "err", err)
			}
		}
	}
	return p
}

// Start opens the leases bucket and runs the publisher in the background.
func (p *PopularPublisher) Start(ctx context.Context) error {
	kv, err := p.js.KeyValue(ctx, topology.LeasesBucket)
	if err != nil {
		return fmt.Errorf("popular publisher: leases bucket: %w", err)
	}
	p.lease = kvLease{kv: kv, key: topology.PopularPublisherKey}
	p.startOnce.Do(func() { go p.run() })
	return nil
}

// Stop stops publishing and releases the lease, waiting for that or for
// ctx to end.
func (p *PopularPublisher) Stop(ctx context.Context) error {
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
		return fmt.Errorf("popular publisher: stop: %w", ctx.Err())
	}
}

// Leader reports whether this process holds the lease and publishes.
func (p *PopularPublisher) Leader() bool { return p.leader.Load() }

// popularLease is the held lease; sub is nil while not held.
type popularLease struct {
	sub        *lobby.Subscription
	rev        uint64
	validUntil time.Time // publish only before this
}

func (p *PopularPublisher) run() {
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
	var l popularLease
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
func (p *PopularPublisher) campaign(l *popularLease, every time.Duration) {
	if !p.src.Synced() || !p.js.Conn().IsConnected() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), every)
	defer cancel()
	sent := time.Now()
	rev, err := p.lease.acquire(ctx, p.cfg.Member)
	if err != nil {
		if !errors.Is(err, partition.ErrConflict) {
			p.logErr(err)
		}
		return
	}
	p.lastErr = ""
	l.rev, l.validUntil = rev, sent.Add(p.cfg.LeaseTTL-every)
	l.sub = p.src.SubscribeAll()
	p.leader.Store(true)
	p.log.Info("publishing the lobby lists on NATS", "subjects", topology.PopularSubjectPrefix+".>", "lease", topology.PopularPublisherKey)
}

// renew extends the lease; losing it (taken by another process, or not
// renewed in time) stops publishing.
func (p *PopularPublisher) renew(l *popularLease, every time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), every)
	defer cancel()
	sent := time.Now()
	rev, err := p.lease.renew(ctx, p.cfg.Member, l.rev)
	if err == nil {
		p.lastErr = ""
		l.rev, l.validUntil = rev, sent.Add(p.cfg.LeaseTTL-every)
		return
	}
	if errors.Is(err, partition.ErrConflict) || time.Now().After(l.validUntil) {
		p.log.Warn("stopped publishing the lobby lists on NATS: lease lost", "err", err)
		p.abdicate(l)
		return
	}
	p.logErr(err)
}

// resign stops publishing and deletes the lease so that a standby takes
// over at its next attempt.
func (p *PopularPublisher) resign(l *popularLease, every time.Duration) {
	if l.sub == nil {
		return
	}
	rev := l.rev
	p.abdicate(l)
	ctx, cancel := context.WithTimeout(context.Background(), every)
	defer cancel()
	if err := p.lease.release(ctx, p.cfg.Member, rev); err != nil {
		p.log.Warn("popular publisher lease not released (it expires by itself)", "err", err)
	}
}

func (p *PopularPublisher) abdicate(l *popularLease) {
	l.sub.Close()
	*l = popularLease{}
	p.leader.Store(false)
}

// publish sends the lists not sent yet while the lease is valid; otherwise
// they wait in the subscription (only the latest of each region).
func (p *PopularPublisher) publish(l *popularLease) {
	for p.mayPublish(l) {
		u, ok := l.sub.Next()
		if !ok {
			return
		}
		p.send(u)
	}
}

// republish sends every region's current list again (see Refresh).
func (p *PopularPublisher) republish(l *popularLease) {
	for _, u := range p.src.Current() {
		if !p.mayPublish(l) {
			return
		}
		p.send(u)
	}
}

// mayPublish reports whether the lease is still valid and the connection up.
func (p *PopularPublisher) mayPublish(l *popularLease) bool {
	return time.Now().Before(l.validUntil) && p.js.Conn().IsConnected()
}

func (p *PopularPublisher) send(u lobby.Update) {
	msg := nats.NewMsg(topology.PopularSubject(u.Region))
	msg.Data = u.List
	msg.Header.Set(HeaderPopularVersion, strconv.FormatUint(u.Version, 10))
	msg.Header.Set(HeaderPopularPublisher, p.cfg.Member)
	if err := p.js.Conn().PublishMsg(msg); err != nil {
		p.log.Warn("lobby list not published", "subject", msg.Subject, "err", err)
		return
	}
	p.published.Inc()
}

// logErr logs a lease error once until it changes or the lease works again.
func (p *PopularPublisher) logErr(err error) {
	if msg := err.Error(); msg != p.lastErr {
		p.lastErr = msg
		p.log.Warn("popular publisher lease", "err", err)
	}
}
