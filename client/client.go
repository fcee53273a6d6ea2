// Package client is the Go client of gamemodes for game servers: it reports
// player events straight to the service's NATS JetStream stream and follows
// the live lobby lists of a region.
//
// Publishing follows the service's NATS contract: an event goes to the
// subject gamemodes.events.<REGION>.<user token> with the same JSON as the
// HTTP body of POST /api/v1/event and the header Nats-Msg-Id set to its
// event_id (generated with nuid when the caller gives none), and a publish
// returns once the stream has acknowledged it. Events are validated before
// anything is sent, with the service's own rules and error codes (a
// *ValidationError such as invalid_region); an invalid event is never
// published. Timeouts, "no responders" and a connection being re-established
// are retried with exponential backoff, always with the same event_id, so the
// stream stores the event once even when an earlier attempt was stored but
// its acknowledgement was lost (within the stream's deduplication window, two
// minutes by default).
//
// Client.Enter, Client.Leave and Client.Heartbeat publish one event and wait
// for its acknowledgement. At high rates, Client.PublishAsync keeps up to
// WithMaxPending events in flight and reports each outcome on a Pending;
// Client.Flush waits for all of them.
//
// Client.SubscribeRegion delivers the lobby list of a region, the same JSON
// as GET /api/v1/popular_game_modes, each time the service publishes it on
// the core NATS subject gamemodes.popular.<REGION>, in version order.
//
// The Client uses a *nats.Conn the caller connects (with its credentials,
// for example the game_server user of nats/config) and never closes it.
package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// EventType is the kind of a player event: EventEnter, EventLeave or
// EventHeartbeat.
type EventType = domain.EventType

// The event types of the contract.
const (
	// EventEnter reports that a player entered a game mode ("ENTER_GAME_MODE").
	EventEnter = domain.EventEnter
	// EventLeave reports that a player left a game mode ("LEAVE_GAME_MODE").
	EventLeave = domain.EventLeave
	// EventHeartbeat reports that a player is still in a game mode
	// ("HEARTBEAT_GAME_MODE"): it keeps the player from expiring.
	EventHeartbeat = domain.EventHeartbeat
)

// ValidationError is the error of an event, region or game mode the service
// would refuse. Its Code is the service's error code, such as
// "invalid_region", "invalid_game_mode", "invalid_user_id" or
// "invalid_event_id"; use errors.As to get it.
type ValidationError = domain.ValidationError

// ModeCount is one line of a lobby list: a game mode and its live players.
type ModeCount = domain.ModeCount

// Defaults of the options.
const (
	// DefaultAckTimeout is how long one publish attempt waits for the stream's acknowledgement.
	DefaultAckTimeout = 5 * time.Second
	// DefaultMaxAttempts is how many times an event is sent at most.
	DefaultMaxAttempts = 10
	// DefaultMinBackoff is the wait before the first retry; it doubles at each retry.
	DefaultMinBackoff = 50 * time.Millisecond
	// DefaultMaxBackoff caps the wait between two attempts.
	DefaultMaxBackoff = 2 * time.Second
	// DefaultMaxPending is how many events may be in flight at once.
	DefaultMaxPending = 1024
)

// ErrClosed is returned by the methods of a Client after Close.
var ErrClosed = errors.New("client: closed")

// Option configures a Client.
type Option func(*config)

type config struct {
	regions     []string
	modes       []int
	ackTimeout  time.Duration
	maxAttempts int
	minBackoff  time.Duration
	maxBackoff  time.Duration
	maxPending  int
	logger      *slog.Logger
	retryHook   func(eventID string, attempt int, err error)
	now         func() time.Time
}

// WithRegions sets the regions the service is configured with (its
// --regions); the default is the service's default list (US, EU, ... ID).
// An event or subscription for another region is refused with
// invalid_region before anything is sent.
func WithRegions(regions ...string) Option {
	return func(c *config) { c.regions = append([]string(nil), regions...) }
}

// WithGameModes sets the game modes the service is configured with (its
// --game-modes); the default is 1 to 10. An event for another mode is refused
// with invalid_game_mode before anything is sent.
func WithGameModes(modes ...int) Option {
	return func(c *config) { c.modes = append([]int(nil), modes...) }
}

// WithAckTimeout sets how long one attempt waits for the stream's
// acknowledgement before it is retried (default DefaultAckTimeout).
func WithAckTimeout(d time.Duration) Option {
	return func(c *config) { c.ackTimeout = d }
}

// WithMaxAttempts sets how many times an event is sent at most before the
// publish fails with the last error (default DefaultMaxAttempts; 1 means no
// retry). The context of the publish bounds the attempts too.
func WithMaxAttempts(n int) Option {
	return func(c *config) { c.maxAttempts = n }
}

// WithBackoff sets the wait before the first retry and the cap of the wait
// between attempts (defaults DefaultMinBackoff and DefaultMaxBackoff). The
// wait doubles at each retry and varies by up to 20% at random. Keep the
// total under the stream's deduplication window (two minutes by default):
// only within it is a retried event stored once.
func WithBackoff(minWait, maxWait time.Duration) Option {
	return func(c *config) { c.minBackoff, c.maxBackoff = minWait, maxWait }
}

// WithMaxPending sets how many events may be in flight (sent, not yet
// acknowledged) at once, synchronous and asynchronous publishes together
// (default DefaultMaxPending). PublishAsync waits for room beyond it.
func WithMaxPending(n int) Option {
	return func(c *config) { c.maxPending = n }
}

// WithLogger sets the logger of retries and of dropped live-list messages,
// all at debug level (default slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) { c.logger = l }
}

// WithRetryHook sets a function called after every attempt that failed with
// a retryable error (a timeout, no responders, a lost connection), with the
// event's id, the attempt's number (from 1) and the error; for metrics. It
// must not block.
func WithRetryHook(f func(eventID string, attempt int, err error)) Option {
	return func(c *config) { c.retryHook = f }
}

// Client publishes player events to the gamemodes events stream and
// subscribes to live lobby lists. Create it with New; it is safe for
// concurrent use.
type Client struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	catalog *domain.Catalog
	cfg     config
	log     *slog.Logger

	window chan struct{} // one token per event in flight

	mu       sync.Mutex
	closed   bool
	inflight int           // publishes started and not finished
	idle     chan struct{} // closed when inflight drops to 0
	subs     map[*Subscription]struct{}
}

// New returns a Client publishing and subscribing on nc, which the caller
// connected and keeps ownership of. It fails on invalid options (an invalid
// region or game mode list, a non-positive timeout, attempt count or window).
func New(nc *nats.Conn, opts ...Option) (*Client, error) {
	if nc == nil {
		return nil, errors.New("client: nil NATS connection")
	}
	cfg := config{
		regions:     domain.DefaultRegions,
		modes:       domain.DefaultGameModes,
		ackTimeout:  DefaultAckTimeout,
		maxAttempts: DefaultMaxAttempts,
		minBackoff:  DefaultMinBackoff,
		maxBackoff:  DefaultMaxBackoff,
		maxPending:  DefaultMaxPending,
		now:         time.Now,
	}
	for _, o := range opts {
		o(&cfg)
	}
	switch {
	case cfg.ackTimeout <= 0:
		return nil, fmt.Errorf("client: ack timeout %s: must be positive", cfg.ackTimeout)
	case cfg.maxAttempts < 1:
		return nil, fmt.Errorf("client: max attempts %d: must be at least 1", cfg.maxAttempts)
	case cfg.minBackoff <= 0 || cfg.maxBackoff < cfg.minBackoff:
		return nil, fmt.Errorf("client: backoff %s to %s: want 0 < min <= max", cfg.minBackoff, cfg.maxBackoff)
	case cfg.maxPending < 1:
		return nil, fmt.Errorf("client: max pending %d: must be at least 1", cfg.maxPending)
	}
	catalog, err := domain.NewCatalog(cfg.regions, cfg.modes)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	js, err := jetstream.New(nc,
		// Our window bounds what is in flight; the library must never stall below it.
		jetstream.WithPublishAsyncMaxPending(cfg.maxPending+1),
		jetstream.WithPublishAsyncTimeout(cfg.ackTimeout),
	)
	if err != nil {
		return nil, fmt.Errorf("client: jetstream: %w", err)
	}
	log := cfg.logger
	if log == nil {
		log = slog.Default()
	}
	return &Client{
		nc:      nc,
		js:      js,
		catalog: catalog,
		cfg:     cfg,
		log:     log,
		window:  make(chan struct{}, cfg.maxPending),
		subs:    make(map[*Subscription]struct{}),
	}, nil
}

// Close refuses new publishes and subscriptions, waits until every pending
// publish has finished (or ctx ends) and unsubscribes every subscription.
// It does not close the NATS connection. Calling it again is harmless.
func (c *Client) Close(ctx context.Context) error {
	c.mu.Lock()
	c.closed = true
	subs := c.subs
	c.subs = make(map[*Subscription]struct{})
	c.mu.Unlock()
	var errs []error
	for s := range subs {
		if err := s.sub.Unsubscribe(); err != nil && !ignorableUnsubscribe(err) {
			errs = append(errs, fmt.Errorf("client: unsubscribe %s: %w", s.region, err))
		}
	}
	if err := c.Flush(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Flush waits until every publish in flight, synchronous or asynchronous,
// has finished, or until ctx ends.
func (c *Client) Flush(ctx context.Context) error {
	c.mu.Lock()
	if c.inflight == 0 {
		c.mu.Unlock()
		return nil
	}
	idle := c.idle
	c.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("client: flush: %w", ctx.Err())
	}
}

// begin counts a publish in flight, or returns ErrClosed.
func (c *Client) begin() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if c.inflight == 0 {
		c.idle = make(chan struct{})
	}
	c.inflight++
	return nil
}

// end counts a publish finished.
func (c *Client) end() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inflight--; c.inflight == 0 {
		close(c.idle)
	}
}
