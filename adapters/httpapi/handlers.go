package httpapi

import (
	"context"
	"errors"
	"mime"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
)

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
