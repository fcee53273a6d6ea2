package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gofiber/fiber/v2"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// authenticate verifies the request's bearer token.
func (s *Server) authenticate(c *fiber.Ctx) (*Claims, error) {
	token := bearerToken(c.Get(fiber.HeaderAuthorization))
	claims, err := s.auth.Verify(token)
	if err == nil {
		return claims, nil
	}
	s.metrics.refuse(reasonUnauthorized)
	s.log.Debug("bearer token refused", "addr", c.IP(), "err", err)
	switch {
	case errors.Is(err, ErrNoToken):
		return nil, errNoToken
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, errExpiredToken
	default:
		return nil, errBadToken
	}
}

// limitAddr applies the per-address rate limit, then the next handler.
func (s *Server) limitAddr(c *fiber.Ctx) error {
	remote, _ := netip.AddrFromSlice(c.Context().RemoteIP())
	var forwarded [][]byte
	if len(s.proxies.prefixes) > 0 {
		forwarded = c.Request().Header.PeekAll(fiber.HeaderXForwardedFor)
	}
	key := addrKey(s.proxies.clientAddr(remote, forwarded))
	if ok, wait := s.addrLim.allow(key, time.Now()); !ok {
		s.metrics.refuse(reasonAddrRate)
		return rateLimited(wait, "too many requests from this address")
	}
	return c.Next()
}

// acquire takes an in-flight slot; false when Config.MaxInflight are taken.
// A successful acquire is released with s.inflight.Add(-1).
func (s *Server) acquire() bool {
	n := s.inflight.Add(1)
	if s.cfg.MaxInflight > 0 && n > int64(s.cfg.MaxInflight) {
		s.inflight.Add(-1)
		return false
	}
	return true
}

// bodyUserID returns the canonical user_id of an event body, read exactly
// as domain.Catalog.DecodeEvent reads it (same JSON decoder and field
// matching), so that the user checked here is the user stored. A body
// DecodeEvent would refuse may be refused here already (400).
func bodyUserID(body []byte) (string, error) {
	malformed := func(msg string) error {
		return &domain.ValidationError{Code: domain.CodeMalformedJSON, Message: msg}
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return "", malformed("body is empty")
	}
	if trimmed[0] != '{' {
		return "", malformed("body must be a JSON object")
	}
	if !utf8.Valid(body) {
		return "", malformed("body is not valid UTF-8")
	}
	var w struct {
		UserID json.RawMessage `json:"user_id"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&w); err != nil {
		return "", malformed("body is not a JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return "", malformed("unexpected data after the JSON object")
	}
	userID, err := domain.DecodeUserID(w.UserID)
	if err != nil {
		return "", err
	}
	return userID, nil
}

// Reasons of gamemodes_http_refused_total.
const (
	reasonUnauthorized = "unauthorized"
	reasonForbidden    = "forbidden"
	reasonInvalidBody  = "invalid_body"
	reasonUserRate     = "rate_limited_user"
	reasonAddrRate     = "rate_limited_address"
	reasonDisconnected = "stream_disconnected"
	reasonOverloaded   = "overloaded"
	// reasonTooManyStreams: a lobby stream refused at Config.MaxStreams.
	reasonTooManyStreams = "too_many_streams"
)

// metrics are the edge's own metrics; a nil *metrics counts nothing.
type metrics struct {
	refused  *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// requestBuckets are the bounds of gamemodes_http_request_duration_seconds:
// 0.25 ms to about 4 s.
var requestBuckets = prometheus.ExponentialBuckets(0.00025, 2, 15)

func newMetrics(reg prometheus.Registerer, inflight *atomic.Int64, log *slog.Logger) *metrics {
	if reg == nil {
		return nil
	}
	m := &metrics{refused: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gamemodes_http_refused_total",
		Help: "Requests refused by the HTTP edge before storing, by reason (unauthorized, forbidden, invalid_body, rate_limited_user, rate_limited_address, stream_disconnected, overloaded, too_many_streams).",
	}, []string{"reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gamemodes_http_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by route (event, popular, healthz, readyz, metrics, other; lobby streams are not timed) and status code.",
			Buckets: requestBuckets,
		}, []string{"route", "code"}),
	}
	gauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "gamemodes_http_inflight_events",
		Help: "Events the HTTP edge is storing now (capped by the in-flight limit).",
	}, func() float64 { return float64(inflight.Load()) })
	for _, c := range []prometheus.Collector{m.refused, m.duration, gauge} {
		if err := reg.Register(c); err != nil {
			log.Error("httpapi: register metrics", "err", err)
		}
	}
	return m
}

// timeRequests is the middleware behind
// gamemodes_http_request_duration_seconds: it answers the request (errors
// through the app's error handler, so the status is final) and observes how
// long that took.
func (m *metrics) timeRequests(c *fiber.Ctx) error {
	if m == nil {
		return c.Next()
	}
	start := time.Now()
	if err := c.Next(); err != nil {
		if err := c.App().Config().ErrorHandler(c, err); err != nil {
			_ = c.SendStatus(fiber.StatusInternalServerError)
		}
	}
	var route string
	switch c.Route().Path {
	case PathPopularStream:
		return nil // a stream lasts as long as its client
	case PathEvent:
		route = "event"
	case PathPopular:
		route = "popular"
	case PathHealthz:
		route = "healthz"
	case PathReadyz:
		route = "readyz"
	case PathMetrics:
		route = "metrics"
	default:
		route = "other"
	}
	m.duration.WithLabelValues(route, strconv.Itoa(c.Response().StatusCode())).Observe(time.Since(start).Seconds())
	return nil
}

func (m *metrics) refuse(reason string) {
	if m != nil {
		m.refused.WithLabelValues(reason).Inc()
	}
}
