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
	"log/slog"
	"math"
	"net"
	"sync"
	"sync/atomic"

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
// readyz, metrics): the server of a worker or archiver process. It does
// not check cfg: settings Config.Validate refuses are ignored.
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
	// Reads given a consistency token wait on Lobby when it is an
	// AppliedWaiter (as lobby.View is); else they answer 501.
	if w, ok := deps.Lobby.(AppliedWaiter); ok {
		s.waiter = w
	}
	s.waitMetrics = newWaitMetrics(deps.Registerer, s)
	gatherer := deps.Gatherer
	if gatherer == nil {
		gatherer = prometheus.DefaultGatherer
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
