package httpapi

import (
	"errors"
	"fmt"
	"math"
	"time"
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

// ConfigError is a setting Validate refuses. Field names the Config field
// (a program maps it to its own flag).
type ConfigError struct {
	Field string
	Err   error
}

func (e *ConfigError) Error() string { return e.Err.Error() }

func (e *ConfigError) Unwrap() error { return e.Err }

// Validate reports, as a *ConfigError, settings New cannot use: a negative,
// infinite or NaN rate limit, a negative burst or consistency wait, or a
// TrustedProxies entry that is neither an IP address nor a CIDR range. It
// is the one check of a Config: NewWithLifecycle refuses what it refuses,
// while New, given such settings, ignores them.
func (c Config) Validate() error {
	for _, r := range []struct {
		field, name string
		v           float64
	}{{"UserRateLimit", "user rate limit", c.UserRateLimit}, {"AddrRateLimit", "address rate limit", c.AddrRateLimit}} {
		if r.v < 0 || math.IsNaN(r.v) || math.IsInf(r.v, 0) {
			return &ConfigError{r.field, fmt.Errorf("httpapi: %s %v: must be a finite number >= 0 (0 = unlimited)", r.name, r.v)}
		}
	}
	if c.UserRateBurst < 0 {
		return &ConfigError{"UserRateBurst", errors.New("httpapi: a rate limit burst must be >= 0 (0 = default)")}
	}
	if c.AddrRateBurst < 0 {
		return &ConfigError{"AddrRateBurst", errors.New("httpapi: a rate limit burst must be >= 0 (0 = default)")}
	}
	if c.ConsistencyWait < 0 {
		return &ConfigError{"ConsistencyWait", fmt.Errorf("httpapi: consistency wait %v: must be >= 0 (0 = default)", c.ConsistencyWait)}
	}
	if _, err := parseProxies(c.TrustedProxies); err != nil {
		return &ConfigError{"TrustedProxies", fmt.Errorf("httpapi: trusted proxies: %w", err)}
	}
	return nil
}
