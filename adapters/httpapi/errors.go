package httpapi

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/modules/ingest"
	"github.com/gofiber/fiber/v2"
)

// Error codes the HTTP edge adds to the domain's validation codes (those,
// such as domain.CodeInvalidRegion, are answered with status 400).
const (
	// CodeBodyTooLarge answers 413: the body exceeds Config.BodyLimit.
	CodeBodyTooLarge = "body_too_large"
	// CodeUnsupportedMediaType answers 415: the body is not declared application/json, or is encoded.
	CodeUnsupportedMediaType = "unsupported_media_type"
	// CodeUnavailable answers 503 with Retry-After: the events stream could not store the event.
	CodeUnavailable = "unavailable"
	// CodeNotFound answers 404: no such route.
	CodeNotFound = "not_found"
	// CodeMethodNotAllowed answers 405: the route exists for other methods.
	CodeMethodNotAllowed = "method_not_allowed"
	// CodeBadRequest answers 400: the HTTP request itself could not be parsed.
	CodeBadRequest = "bad_request"
	// CodeRequestTimeout answers 408: the request was not read in time.
	CodeRequestTimeout = "request_timeout"
	// CodeHeadersTooLarge answers 431: the headers exceed the read buffer.
	CodeHeadersTooLarge = "headers_too_large"
	// CodeInternal answers 500: an unexpected failure, logged and not detailed.
	CodeInternal = "internal"
	// CodeUnauthorized answers 401 with WWW-Authenticate: Bearer: the bearer
	// token is missing, malformed, expired, badly signed or of an algorithm
	// not accepted.
	CodeUnauthorized = "unauthorized"
	// CodeForbidden answers 403: a valid player token whose sub is not the
	// event's user_id.
	CodeForbidden = "forbidden"
	// CodeRateLimited answers 429 with Retry-After: the user or the client
	// address sends faster than its rate limit.
	CodeRateLimited = "rate_limited"
	// CodeOverloaded answers 503 with Retry-After: Config.MaxInflight events
	// are being stored already.
	CodeOverloaded = "overloaded"
	// CodeHTTPSRequired answers 400 on a port serving HTTPS (Config.TLSCertFile)
	// to a client that sent plain HTTP; the connection is then closed.
	CodeHTTPSRequired = "https_required"
)

// RetryAfterSeconds is the Retry-After value of a 503 unavailable answer.
const RetryAfterSeconds = 1

// ErrorBody is the JSON shape of every error answer.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the machine code and human message of an error answer.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// apiError is an error answer decided by a handler.
type apiError struct {
	status     int
	code       string
	message    string
	retryAfter int // seconds for Retry-After; 0: RetryAfterSeconds on a 503, none otherwise
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

var (
	errBodyTooLarge = &apiError{status: fiber.StatusRequestEntityTooLarge, code: CodeBodyTooLarge, message: "request body is too large"}
	errNoToken      = &apiError{status: fiber.StatusUnauthorized, code: CodeUnauthorized, message: "a bearer token is required (Authorization: Bearer <token>)"}
	errBadToken     = &apiError{status: fiber.StatusUnauthorized, code: CodeUnauthorized, message: "the bearer token is invalid"}
	errExpiredToken = &apiError{status: fiber.StatusUnauthorized, code: CodeUnauthorized, message: "the bearer token has expired"}
	errForbidden    = &apiError{status: fiber.StatusForbidden, code: CodeForbidden, message: "the token may not report events for this user_id"}
	errDisconnected = &apiError{status: fiber.StatusServiceUnavailable, code: CodeUnavailable, message: "the event stream is unavailable, retry later"}
	errOverloaded   = &apiError{status: fiber.StatusServiceUnavailable, code: CodeOverloaded, message: "too many events in flight, retry later"}
)

// rateLimited is the 429 answer for a wait of d before the next request.
func rateLimited(d time.Duration, message string) *apiError {
	return &apiError{status: fiber.StatusTooManyRequests, code: CodeRateLimited, message: message, retryAfter: retryAfterSeconds(d)}
}

// handleError turns any error of a handler, of routing or of the HTTP
// server itself (such as fasthttp's body limit) into the JSON error answer.
func (s *Server) handleError(c *fiber.Ctx, err error) error {
	status, code, message := s.classify(c, err)
	var ae *apiError
	switch {
	case errors.As(err, &ae) && ae.retryAfter > 0:
		c.Set(fiber.HeaderRetryAfter, strconv.Itoa(ae.retryAfter))
	case status == fiber.StatusServiceUnavailable:
		c.Set(fiber.HeaderRetryAfter, strconv.Itoa(RetryAfterSeconds))
	}
	if status == fiber.StatusUnauthorized {
		c.Set(fiber.HeaderWWWAuthenticate, "Bearer")
	}
	return c.Status(status).JSON(ErrorBody{Error: ErrorDetail{Code: code, Message: message}})
}

func (s *Server) classify(c *fiber.Ctx, err error) (status int, code, message string) {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.status, ae.code, ae.message
	}
	if v, ok := domain.AsValidationError(err); ok {
		return fiber.StatusBadRequest, v.Code, v.Message
	}
	if errors.Is(err, ingest.ErrUnavailable) {
		s.log.Warn("event stream unavailable", "path", c.Path(), "err", err)
		return fiber.StatusServiceUnavailable, CodeUnavailable, "the event stream is unavailable, retry later"
	}
	var fe *fiber.Error
	if errors.As(err, &fe) {
		switch fe.Code {
		case fiber.StatusNotFound:
			return fe.Code, CodeNotFound, "no such route"
		case fiber.StatusMethodNotAllowed:
			return fe.Code, CodeMethodNotAllowed, "method not allowed on this route"
		case fiber.StatusRequestEntityTooLarge:
			return errBodyTooLarge.status, errBodyTooLarge.code, errBodyTooLarge.message
		case fiber.StatusUnsupportedMediaType:
			return fe.Code, CodeUnsupportedMediaType, "unsupported media type"
		case fiber.StatusBadRequest:
			// Raised by the HTTP parser: its text may echo request bytes.
			return fe.Code, CodeBadRequest, "malformed HTTP request"
		case fiber.StatusRequestTimeout:
			return fe.Code, CodeRequestTimeout, "request timed out"
		case fiber.StatusRequestHeaderFieldsTooLarge:
			return fe.Code, CodeHeadersTooLarge, "request headers are too large"
		}
		if fe.Code >= 400 && fe.Code < 500 {
			return fe.Code, statusCode(fe.Code), http.StatusText(fe.Code)
		}
	}
	s.log.Error("http request failed", "method", c.Method(), "path", c.Path(), "err", err)
	return fiber.StatusInternalServerError, CodeInternal, "internal error"
}

// statusCode derives a snake_case code from a status text.
func statusCode(status int) string {
	text := http.StatusText(status)
	if text == "" {
		return "http_" + strconv.Itoa(status)
	}
	return strings.ReplaceAll(strings.ToLower(strings.ReplaceAll(text, "'", "")), " ", "_")
}
