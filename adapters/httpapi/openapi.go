package httpapi

import (
	"bytes"
	_ "embed"

	"github.com/gofiber/fiber/v2"
)

// PathOpenAPI serves the OpenAPI 3 document of the HTTP API (GET).
const PathOpenAPI = "/api/v1/openapi.json"

// openAPIDocument is the hand-written OpenAPI 3 document of every route,
// checked against the real handlers by openapi_test.go.
//
//go:embed openapi.json
var openAPIDocument []byte

// OpenAPIDocument returns the OpenAPI 3 document of the HTTP API, as JSON.
func OpenAPIDocument() []byte { return bytes.Clone(openAPIDocument) }

func (s *Server) getOpenAPI(c *fiber.Ctx) error {
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Send(openAPIDocument)
}
