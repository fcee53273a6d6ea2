// Package httpapi is the HTTP edge of gamemodes on fiber: it accepts player
// events from game clients (POST /api/v1/event), serves the lobby lists
// (GET /api/v1/popular_game_modes), and exposes /healthz, /readyz and
// /metrics. Every error answer is JSON {"error":{"code":"...","message":"..."}}.
package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	// PathPopular answers the lobby list of a region (GET, query parameter region).
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
	return c
}

// Deps are the capabilities the HTTP edge serves.
type Deps struct {
	// Events stores posted events (required).
	Events EventSubmitter
	// Lobby answers lobby list reads (required).
	Lobby LobbyLists
	// Readiness answers /readyz; nil means always ready.
	Readiness Readiness
	// Gatherer is exposed on /metrics; nil means prometheus.DefaultGatherer.
	Gatherer prometheus.Gatherer
	// Logger receives internal errors; nil means slog.Default().
	Logger *slog.Logger
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

	mu       sync.Mutex
	ln       net.Listener
	served   chan struct{} // closed when the serve goroutine returns
	stopping atomic.Bool
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
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	gatherer := deps.Gatherer
	if gatherer == nil {
		gatherer = prometheus.DefaultGatherer
	}
	s.app = fiber.New(fiber.Config{
		BodyLimit:             cfg.BodyLimit,
		ReadTimeout:           cfg.ReadTimeout,
		WriteTimeout:          cfg.WriteTimeout,
		IdleTimeout:           cfg.IdleTimeout,
		ReadBufferSize:        cfg.ReadBufferSize,
		ErrorHandler:          s.handleError,
		DisableStartupMessage: true,
		AppName:               "gamemodes",
	})
	s.app.Use(fiberrecover.New())
	if deps.Events != nil {
		s.app.Post(PathEvent, s.postEvent)
	}
	if deps.Lobby != nil {
		s.app.Get(PathPopular, s.getPopular)
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

// Listen binds addr and serves in the background. It returns once the
// listener is bound, or the bind error (for example a busy port).
func (s *Server) Listen(addr string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return errors.New("httpapi: already listening on " + s.ln.Addr().String())
	}
	if s.stopping.Load() {
		return errors.New("httpapi: server is shut down")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("httpapi: listen %s: %w", addr, err)
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
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopping.Store(true)
	s.mu.Lock()
	ln, served := s.ln, s.served
	s.ln = nil
	s.mu.Unlock()
	if ln == nil {
		return nil
	}
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

func (s *Server) postEvent(c *fiber.Ctx) error {
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
	ctx, cancel := context.WithTimeout(c.UserContext(), s.cfg.SubmitTimeout)
	defer cancel()
	receipt, err := s.events.Submit(ctx, body)
	if err != nil {
		return err
	}
	return c.Status(fiber.StatusAccepted).JSON(receipt)
}

func (s *Server) getPopular(c *fiber.Ctx) error {
	b, err := s.lobby.Popular(c.Query("region"))
	if err != nil {
		return err
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
	if s.readiness != nil {
		if err := s.readiness.Ready(); err != nil {
			return c.Status(fiber.StatusServiceUnavailable).JSON(notReady{Status: "not_ready", Reason: err.Error()})
		}
	}
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Send(bodyReady)
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
