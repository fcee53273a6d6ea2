// Package httpapi is the HTTP edge of gamemodes on fiber: it accepts player
// events from game clients (POST /api/v1/event), serves the lobby lists
// (GET /api/v1/popular_game_modes) and their changes as Server-Sent Events
// (GET /api/v1/popular_game_modes/stream), and exposes /healthz, /readyz and
// /metrics. Every error answer is JSON {"error":{"code":"...","message":"..."}}.
//
// Read your writes: the answer to a stored event carries a consistency
// token; a lobby read given it (after=) answers once the event is reflected,
// waiting at most Config.ConsistencyWait (then 504 timeout).
//
// Protections, all configured by Config and off (or generous) by default:
// bearer JWT authentication of POST /api/v1/event (Config.Auth: 401
// unauthorized, 403 forbidden when a player reports for another user; GET
// stays public), rate limits per user and per client address (429
// rate_limited with Retry-After), a cap on events being stored at once (503
// overloaded), the body and header sizes and the read, write and idle
// timeouts. While the events stream's client is disconnected
// (Deps.Connected) an event is refused at once with 503 unavailable.
package httpapi

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"mime"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gamemodes/gamemodes/modules/ingest"
	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	fiberrecover "github.com/gofiber/fiber/v2/middleware/recover"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Routes of the HTTP contract.
const (
	// PathEvent accepts one player event (POST).
	PathEvent = "/api/v1/event"
	// PathPopular answers the lobby list of a region (GET, query parameter
	// region; with QueryAfter, once the token's event is reflected).
	PathPopular = "/api/v1/popular_game_modes"
	// PathHealthz answers 200 while the process is alive (GET).
	PathHealthz = "/healthz"
	// PathReadyz answers 200 when ready to serve, else 503 with the reason (GET).
	PathReadyz = "/readyz"
	// PathMetrics exposes the Prometheus metrics in text format (GET).
	PathMetrics = "/metrics"
)

// Defaults of Config.
const (
	// DefaultAddr is the default listen address.
	DefaultAddr = ":8080"
	// DefaultBodyLimit is the default largest request body: 64 KiB.
	DefaultBodyLimit = 64 << 10
	// DefaultReadTimeout is the default time to read a whole request.
	DefaultReadTimeout = 10 * time.Second
	// DefaultWriteTimeout is the default time to write a response.
	DefaultWriteTimeout = 10 * time.Second
	// DefaultIdleTimeout is the default keep-alive idle time.
	DefaultIdleTimeout = 60 * time.Second
	// DefaultReadBufferSize is the default per-connection read buffer, which bounds the headers: 16 KiB.
	DefaultReadBufferSize = 16 << 10
	// DefaultSubmitTimeout is the default time an event waits for the stream's acknowledgement.
	DefaultSubmitTimeout = 5 * time.Second
	// DefaultMaxInflight is the default cap on events being stored at once.
	DefaultMaxInflight = 4096
	// DefaultRateLimitKeys is the default number of users, and of client
	// addresses, whose rate limit state is kept (least recently seen dropped first).
	DefaultRateLimitKeys = 100_000
)

// EventSubmitter validates and durably stores one event body. It returns a
// *domain.ValidationError for an invalid body and an error wrapping
// ingest.ErrUnavailable when the stream could not store the event. The body
// is only valid during the call and must not be retained.
type EventSubmitter interface {
	Submit(ctx context.Context, body []byte) (ingest.Receipt, error)
}

// LobbyLists returns the encoded answer of GET /api/v1/popular_game_modes for
// a region, or a *domain.ValidationError for a missing or unknown region. The
// returned bytes are sent as they are and are never modified.
type LobbyLists interface {
	Popular(region string) ([]byte, error)
}

// Readiness reports whether the process can serve: a nil error means ready,
// otherwise the error's text explains why not.
type Readiness interface {
	Ready() error
}

// ReadinessFunc adapts a plain function to the Readiness interface.
type ReadinessFunc func() error

// Ready calls f.
func (f ReadinessFunc) Ready() error { return f() }

// Config holds the HTTP server settings; zero fields take the defaults.
type Config struct {
	// Addr is the listen address used by the fx lifecycle hook (default ":8080").
	Addr string
	// BodyLimit is the largest accepted request body in bytes (default 64 KiB).
	BodyLimit int
	// ReadTimeout bounds reading a whole request (default 10s).
	ReadTimeout time.Duration
	// WriteTimeout bounds writing a response (default 10s).
	WriteTimeout time.Duration
	// IdleTimeout bounds how long a keep-alive connection waits for its next request (default 60s).
	IdleTimeout time.Duration
	// ReadBufferSize is the per-connection read buffer, which also bounds the request headers (default 16 KiB).
	ReadBufferSize int
	// SubmitTimeout bounds how long an event waits for the stream's acknowledgement (default 5s);
	// when it passes the answer is 503 unavailable.
	SubmitTimeout time.Duration

	// Auth verifies the bearer token of every POST /api/v1/event (see
	// NewAuthenticator); nil, the default, turns authentication off. The
	// GET routes stay public.
	Auth *Authenticator

	// UserRateLimit is the events per second accepted for one user (the
	// canonical user_id of the body) on POST /api/v1/event, beyond which the
	// answer is 429 rate_limited with Retry-After; 0, the default, is unlimited.
	UserRateLimit float64
	// UserRateBurst is how many events a user may send at once above
	// UserRateLimit (default: UserRateLimit rounded up, at least 1).
	UserRateBurst int
	// AddrRateLimit is the requests per second accepted from one client
	// address on the /api/v1 routes (IPv6 clients are counted per /64),
	// beyond which the answer is 429 rate_limited with Retry-After; 0, the
	// default, is unlimited. The address is the TCP peer's: behind a load
	// balancer or reverse proxy that is the proxy's address, so every client
	// would share one budget, unless the proxy is listed in TrustedProxies.
	AddrRateLimit float64
	// AddrRateBurst is how many requests a client address may send at once
	// above AddrRateLimit (default: AddrRateLimit rounded up, at least 1).
	AddrRateBurst int
	// RateLimitKeys bounds the users, and separately the client addresses,
	// whose rate limit state is kept (default 100000); the least recently
	// seen are dropped first, and keys idle for a minute (or for twice the
	// time their bucket takes to refill, if longer) are dropped as well.
	RateLimitKeys int
	// TrustedProxies lists the addresses and CIDR ranges of the load
	// balancers or reverse proxies in front of the edge. A request from one
	// of them is attributed to the client named in its X-Forwarded-For
	// header: the rightmost entry that is not itself a trusted proxy (the
	// entries left of it are written by the client and can be forged).
	// Empty, the default, means the TCP peer is the client and
	// X-Forwarded-For is ignored.
	TrustedProxies []string

	// MaxInflight caps the events being stored at once (default 4096);
	// beyond it POST /api/v1/event answers 503 overloaded with Retry-After
	// at once, without queueing. A negative value means no cap.
	MaxInflight int

	// ConsistencyWait bounds how long GET /api/v1/popular_game_modes with a
	// consistency token (after=) waits for the event to be reflected
	// (default 2s); then the answer is 504 timeout.
	ConsistencyWait time.Duration
	// MaxConsistencyWaiters caps the reads waiting for a consistency token at
	// once (default 4096); beyond it such a read answers 503 overloaded with
	// Retry-After at once. A negative value means no cap.
	MaxConsistencyWaiters int
	// MaxStreams caps the open lobby streams (GET
	// /api/v1/popular_game_modes/stream, default 10000); beyond it the
	// answer is 503 overloaded with Retry-After. A negative value means no cap.
	MaxStreams int
	// TLSCertFile and TLSKeyFile, if set, make the server serve HTTPS with
	// this PEM certificate (chain) and key, reloaded when either file
	// changes (checked every TLSReloadInterval, default 1s) and on
	// Server.ReloadTLS, so a renewal needs no restart. A client sending
	// plain HTTP to the port gets 400 https_required. Empty: plain HTTP.
	TLSCertFile, TLSKeyFile string
	// TLSReloadInterval is how often the TLS files are checked for a change.
	TLSReloadInterval time.Duration
	// StreamPingInterval is how long a lobby stream may stay silent before
	// it sends a comment line, so that proxies keep it open (default 15s).
	// A stream whose client cannot take a write for WriteTimeout is closed.
	StreamPingInterval time.Duration

	// DrainDelay is how long Shutdown keeps serving after /readyz starts
	// answering 503 draining, before it closes the listener: the time a load
	// balancer needs to see the failed health check and stop sending new
	// requests (HAProxy: inter x fall; Kubernetes: the endpoint removal).
	// Meanwhile every answer carries Connection: close, so clients and
	// proxies open their next connection elsewhere. 0, the default, closes
	// the listener at once.
	DrainDelay time.Duration
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.BodyLimit <= 0 {
		c.BodyLimit = DefaultBodyLimit
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = DefaultReadTimeout
	}
	if c.DrainDelay < 0 {
		c.DrainDelay = 0
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.ReadBufferSize <= 0 {
		c.ReadBufferSize = DefaultReadBufferSize
	}
	if c.SubmitTimeout <= 0 {
		c.SubmitTimeout = DefaultSubmitTimeout
	}
	if c.UserRateLimit > 0 && c.UserRateBurst <= 0 {
		c.UserRateBurst = defaultBurst(c.UserRateLimit)
	}
	if c.AddrRateLimit > 0 && c.AddrRateBurst <= 0 {
		c.AddrRateBurst = defaultBurst(c.AddrRateLimit)
	}
	if c.RateLimitKeys <= 0 {
		c.RateLimitKeys = DefaultRateLimitKeys
	}
	if c.MaxInflight == 0 {
		c.MaxInflight = DefaultMaxInflight
	}
	if c.ConsistencyWait <= 0 {
		c.ConsistencyWait = DefaultConsistencyWait
	}
	if c.MaxConsistencyWaiters == 0 {
		c.MaxConsistencyWaiters = DefaultMaxConsistencyWaiters
	}
	if c.MaxStreams == 0 {
		c.MaxStreams = DefaultMaxStreams
	}
	if c.StreamPingInterval <= 0 {
		c.StreamPingInterval = DefaultStreamPingInterval
	}
	return c
}

func defaultBurst(perSecond float64) int {
	if perSecond >= math.MaxInt32 {
		return math.MaxInt32
	}
	return max(1, int(math.Ceil(perSecond)))
}

// Validate reports settings New cannot use: a negative, infinite or NaN
// rate limit, or a TrustedProxies entry that is neither an IP address nor
// a CIDR range. New ignores such settings (logging them): call Validate
// first to refuse them.
func (c Config) Validate() error {
	for _, r := range []struct {
		name string
		v    float64
	}{{"user rate limit", c.UserRateLimit}, {"address rate limit", c.AddrRateLimit}} {
		if r.v < 0 || math.IsNaN(r.v) || math.IsInf(r.v, 0) {
			return fmt.Errorf("httpapi: %s %v: must be a finite number >= 0 (0 = unlimited)", r.name, r.v)
		}
	}
	if c.UserRateBurst < 0 || c.AddrRateBurst < 0 {
		return errors.New("httpapi: a rate limit burst must be >= 0 (0 = default)")
	}
	if c.ConsistencyWait < 0 {
		return fmt.Errorf("httpapi: consistency wait %v: must be >= 0 (0 = default)", c.ConsistencyWait)
	}
	if _, err := parseProxies(c.TrustedProxies); err != nil {
		return fmt.Errorf("httpapi: trusted proxies: %w", err)
	}
	return nil
}

// Deps are the capabilities the HTTP edge serves.
type Deps struct {
	// Events stores posted events (required).
	Events EventSubmitter
	// Lobby answers lobby list reads (required).
	Lobby LobbyLists
	// Streams follows lobby lists for GET /api/v1/popular_game_modes/stream;
	// nil means that route is not served.
	Streams LobbyStreams
	// Readiness answers /readyz; nil means always ready.
	Readiness Readiness
	// Gatherer is exposed on /metrics; nil means prometheus.DefaultGatherer.
	Gatherer prometheus.Gatherer
	// Logger receives internal errors; nil means slog.Default().
	Logger *slog.Logger
	// Connected reports whether the events stream's client is connected
	// (for example nats.Conn.IsConnected); nil means always. While it
	// reports false, POST /api/v1/event answers 503 unavailable with
	// Retry-After at once instead of waiting SubmitTimeout for an
	// acknowledgement that cannot come, and /readyz answers 503.
	Connected func() bool
	// Registerer receives the edge's own metrics (requests refused by
	// authentication, limits and outages; events being stored); nil means
	// they are not registered.
	Registerer prometheus.Registerer
	// Applied serves reads given a consistency token; nil means Lobby when
	// it is an AppliedWaiter (as lobby.View is), else such reads answer 501.
	Applied AppliedWaiter
	// Ops assembles the operations status; when set, the operations page
	// is served at / with its status at /api/v1/ops/status.
	Ops OpsStatus
}

// Server is the fiber HTTP edge. Create it with New, start it with Listen
// and stop it with Shutdown; App gives the fiber app for in-process tests.
type Server struct {
	cfg       Config
	app       *fiber.App
	events    EventSubmitter
	lobby     LobbyLists
	readiness Readiness
	log       *slog.Logger
	connected func() bool
	auth      *Authenticator
	userLim   *keyedLimiter // nil: no per-user limit
	addrLim   *keyedLimiter // nil: no per-address limit
	proxies   proxySet
	inflight  atomic.Int64
	metrics   *metrics

	waiter      AppliedWaiter
	waiting     atomic.Int64 // reads waiting for a consistency token
	waitMetrics *waitMetrics
	base        context.Context // canceled at Shutdown: ends the waits
	cancelBase  context.CancelFunc
	streams     LobbyStreams
	openStreams *streamSet

	certs *certReloader // nil: plain HTTP

	mu       sync.Mutex
	ln       net.Listener
	served   chan struct{} // closed when the serve goroutine returns
	stopping atomic.Bool
	draining atomic.Bool // set at Shutdown: /readyz answers 503 while the listener still serves
}

// New builds a Server with its routes; it does not listen yet. Without
// deps.Events and deps.Lobby it serves only the operations routes (healthz,
// readyz, metrics): the server of a worker or archiver process.
func New(cfg Config, deps Deps) *Server {
	cfg = cfg.WithDefaults()
	s := &Server{
		cfg:       cfg,
		events:    deps.Events,
		lobby:     deps.Lobby,
		readiness: deps.Readiness,
		log:       deps.Logger,
		connected: deps.Connected,
		auth:      cfg.Auth,
		streams:   deps.Streams,
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.openStreams = newStreamSet(cfg.MaxStreams, deps.Registerer, s.log)
	s.metrics = newMetrics(deps.Registerer, &s.inflight, s.log)
	s.base, s.cancelBase = context.WithCancel(context.Background())
	s.waiter = deps.Applied
	if w, ok := deps.Lobby.(AppliedWaiter); ok && s.waiter == nil {
		s.waiter = w
	}
	s.waitMetrics = newWaitMetrics(deps.Registerer, s)
	gatherer := deps.Gatherer
	if gatherer == nil {
		gatherer = prometheus.DefaultGatherer
	}
	if err := cfg.Validate(); err != nil {
		s.log.Error("invalid HTTP settings ignored", "err", err)
	}
	if cfg.UserRateLimit > 0 && !math.IsInf(cfg.UserRateLimit, 0) {
		s.userLim = newKeyedLimiter(cfg.UserRateLimit, cfg.UserRateBurst, cfg.RateLimitKeys)
	}
	if cfg.AddrRateLimit > 0 && !math.IsInf(cfg.AddrRateLimit, 0) {
		s.addrLim = newKeyedLimiter(cfg.AddrRateLimit, cfg.AddrRateBurst, cfg.RateLimitKeys)
	}
	fcfg := fiber.Config{
		BodyLimit:             cfg.BodyLimit,
		ReadTimeout:           cfg.ReadTimeout,
		WriteTimeout:          cfg.WriteTimeout,
		IdleTimeout:           cfg.IdleTimeout,
		ReadBufferSize:        cfg.ReadBufferSize,
		ErrorHandler:          s.handleError,
		DisableStartupMessage: true,
		AppName:               "gamemodes",
	}
	if ps, err := parseProxies(cfg.TrustedProxies); err == nil && len(ps.prefixes) > 0 {
		s.proxies = ps
		// c.IP() then names the client too (its leftmost valid address);
		// the rate limits use clientAddr, which cannot be forged.
		fcfg.EnableTrustedProxyCheck = true
		fcfg.TrustedProxies = cfg.TrustedProxies
		fcfg.ProxyHeader = fiber.HeaderXForwardedFor
		fcfg.EnableIPValidation = true
	}
	s.app = fiber.New(fcfg)
	s.app.Use(fiberrecover.New(), s.closeWhileDraining, s.metrics.timeRequests)
	var api []fiber.Handler
	if s.addrLim != nil {
		api = append(api, s.limitAddr)
	}
	if deps.Events != nil {
		s.app.Post(PathEvent, append(api, s.postEvent)...)
	}
	if deps.Lobby != nil {
		s.app.Get(PathPopular, append(api, s.getPopular)...)
	}
	s.app.Get(PathOpenAPI, append(api, s.getOpenAPI)...)
	if deps.Streams != nil {
		s.app.Get(PathPopularStream, append(api, s.getPopularStream)...)
	}
	if deps.Ops != nil {
		s.routeOps(deps.Ops, api)
	}
	s.app.Get(PathHealthz, s.getHealthz)
	s.app.Get(PathReadyz, s.getReadyz)
	s.app.Get(PathMetrics, adaptor.HTTPHandler(promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{})))
	return s
}

// App returns the fiber app, for app.Test in tests.
func (s *Server) App() *fiber.App { return s.app }

// Config returns the effective settings, defaults applied.
func (s *Server) Config() Config { return s.cfg }

// ErrListen is wrapped by the error of a Listen that could not bind its
// address.
var ErrListen = errors.New("httpapi: cannot listen")

// Listen binds addr and serves in the background. It returns once the
// listener is bound, or the bind error (for example a busy port), which
// wraps ErrListen.
func (s *Server) Listen(addr string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return errors.New("httpapi: already listening on " + s.ln.Addr().String())
	}
	if s.stopping.Load() {
		return errors.New("httpapi: server is shut down")
	}
	var certs *certReloader
	if s.cfg.TLSCertFile != "" || s.cfg.TLSKeyFile != "" {
		var err error
		if certs, err = newCertReloader(s.cfg.TLSCertFile, s.cfg.TLSKeyFile, s.log); err != nil {
			return fmt.Errorf("httpapi: %w", err)
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%w on %s: %w", ErrListen, addr, err)
	}
	if certs != nil {
		s.certs = certs
		ln = httpsListener{Listener: ln, config: &tls.Config{
			MinVersion: tls.VersionTLS12, GetCertificate: certs.getCertificate, NextProtos: []string{"http/1.1"},
		}}
		every := s.cfg.TLSReloadInterval
		if every <= 0 {
			every = DefaultTLSReloadInterval
		}
		go certs.watch(s.base, every)
	}
	s.ln = ln
	s.served = make(chan struct{})
	go func(served chan struct{}) {
		defer close(served)
		if err := s.app.Listener(ln); err != nil && !s.stopping.Load() {
			s.log.Error("http server stopped", "addr", ln.Addr().String(), "err", err)
		}
	}(s.served)
	return nil
}

// ReloadTLS loads the TLS certificate and key files again now (on SIGHUP,
// say); new connections get the new certificate. It fails,
// keeping the previous certificate, when the files do not load, and does
// nothing on a plain HTTP server.
func (s *Server) ReloadTLS() error {
	s.mu.Lock()
	certs := s.certs
	s.mu.Unlock()
	if certs == nil {
		return nil
	}
	return certs.reload(true)
}

// Addr returns the bound address (useful after listening on port 0), or ""
// before Listen and after Shutdown.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Shutdown stops accepting connections and waits for in-flight requests to
// finish, or for ctx to end. It is safe to call when not listening and more
// than once; a shut down Server cannot listen again.
//
// With Config.DrainDelay it first drains: /readyz answers 503 draining at
// once and every answer carries Connection: close, while the listener goes
// on serving for DrainDelay (or until ctx ends), so a load balancer takes the
// edge out of rotation before any connection is refused.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	listening := s.ln != nil
	s.mu.Unlock()
	if listening && !s.draining.Swap(true) && s.cfg.DrainDelay > 0 {
		s.log.Info("draining: /readyz answers 503 while the listener serves on", "drain_delay", s.cfg.DrainDelay)
		t := time.NewTimer(s.cfg.DrainDelay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	s.stopping.Store(true)
	s.cancelBase() // reads waiting for a consistency token answer at once
	s.mu.Lock()
	ln, served := s.ln, s.served
	s.ln = nil
	s.mu.Unlock()
	if ln == nil {
		return nil
	}
	// Open lobby streams never finish by themselves: end them first.
	s.openStreams.shutdown()
	err := s.app.ShutdownWithContext(ctx)
	// If the serve goroutine had not registered the listener yet, the server
	// did not close it: closing it here makes that goroutine return at once.
	_ = ln.Close()
	select {
	case <-served:
	case <-ctx.Done():
		if err == nil {
			err = ctx.Err()
		}
	}
	if err != nil {
		return fmt.Errorf("httpapi: shutdown: %w", err)
	}
	return nil
}

// postEvent checks, in order: the bearer token (401, before anything about
// the body is said), the media type and size, the token's right to report
// for the body's user_id (403), the user's rate limit (429), the stream's
// connection (503 unavailable) and the in-flight cap (503 overloaded); then
// it stores the event. A refused request stores nothing.
func (s *Server) postEvent(c *fiber.Ctx) error {
	var claims *Claims
	if s.auth != nil {
		var err error
		if claims, err = s.authenticate(c); err != nil {
			return err
		}
	}
	if !isJSON(c.Get(fiber.HeaderContentType)) {
		return &apiError{status: fiber.StatusUnsupportedMediaType, code: CodeUnsupportedMediaType, message: "Content-Type must be application/json"}
	}
	if enc := strings.TrimSpace(c.Get(fiber.HeaderContentEncoding)); enc != "" && !strings.EqualFold(enc, "identity") {
		return &apiError{status: fiber.StatusUnsupportedMediaType, code: CodeUnsupportedMediaType, message: "Content-Encoding is not supported"}
	}
	// The raw body: fiber's Ctx.Body would decompress without a size bound.
	body := c.Request().Body()
	if len(body) > s.cfg.BodyLimit {
		return errBodyTooLarge
	}
	if claims != nil || s.userLim != nil {
		userID, err := bodyUserID(body)
		if err != nil {
			s.metrics.refuse(reasonInvalidBody)
			return err
		}
		if claims != nil && !claims.MayReportFor(userID) {
			s.metrics.refuse(reasonForbidden)
			return errForbidden
		}
		if s.userLim != nil {
			if ok, wait := s.userLim.allow(userID, time.Now()); !ok {
				s.metrics.refuse(reasonUserRate)
				return rateLimited(wait, "too many events for this user_id")
			}
		}
	}
	if s.connected != nil && !s.connected() {
		s.metrics.refuse(reasonDisconnected)
		return errDisconnected
	}
	if !s.acquire() {
		s.metrics.refuse(reasonOverloaded)
		return errOverloaded
	}
	defer s.inflight.Add(-1)
	ctx, cancel := context.WithTimeout(c.UserContext(), s.cfg.SubmitTimeout)
	defer cancel()
	receipt, err := s.events.Submit(ctx, body)
	if err != nil {
		return err
	}
	return c.Status(fiber.StatusAccepted).JSON(receipt)
}

// getPopular answers a region's lobby list; given a consistency token
// (after=), only once the token's event is reflected in it.
func (s *Server) getPopular(c *fiber.Ctx) error {
	region := c.Query("region")
	b, err := s.lobby.Popular(region)
	if err != nil {
		return err
	}
	if c.Context().QueryArgs().Has(QueryAfter) {
		if err := s.awaitToken(c, c.Query(QueryAfter)); err != nil {
			return err
		}
		if b, err = s.lobby.Popular(region); err != nil {
			return err
		}
	}
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Send(b)
}

var (
	bodyOK    = []byte(`{"status":"ok"}`)
	bodyReady = []byte(`{"status":"ready"}`)
)

func (s *Server) getHealthz(c *fiber.Ctx) error {
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Send(bodyOK)
}

type notReady struct {
	Status string `json:"status"`
	Reason string `json:"reason"`
}

func (s *Server) getReadyz(c *fiber.Ctx) error {
	if s.draining.Load() {
		return c.Status(fiber.StatusServiceUnavailable).JSON(notReady{Status: "draining", Reason: "shutting down: the listener closes after the drain delay"})
	}
	if s.readiness != nil {
		if err := s.readiness.Ready(); err != nil {
			return c.Status(fiber.StatusServiceUnavailable).JSON(notReady{Status: "not_ready", Reason: err.Error()})
		}
	}
	if s.connected != nil && !s.connected() {
		return c.Status(fiber.StatusServiceUnavailable).JSON(notReady{Status: "not_ready", Reason: "the events stream (NATS) is not connected"})
	}
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Send(bodyReady)
}

// closeWhileDraining asks the client to close its connection after the
// answer once Shutdown has begun, so its next request opens a connection
// that the load balancer sends to another edge.
func (s *Server) closeWhileDraining(c *fiber.Ctx) error {
	if s.draining.Load() {
		c.Context().SetConnectionClose()
	}
	return c.Next()
}

// isJSON reports whether a Content-Type header names application/json,
// parameters such as charset allowed.
func isJSON(contentType string) bool {
	if contentType == "" {
		return false
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil && !errors.Is(err, mime.ErrInvalidMediaParameter) {
		return false
	}
	return mt == fiber.MIMEApplicationJSON
}
