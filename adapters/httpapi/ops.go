package httpapi

import (
	"context"
	"embed"
	"path"

	"github.com/gamemodes/gamemodes/modules/ops"
	"github.com/gofiber/fiber/v2"
)

// Routes of the operations page.
const (
	// PathOpsStatus answers the operations status as JSON (GET).
	PathOpsStatus = "/api/v1/ops/status"
	// PathOpsPage is the operations page (GET): HTML that polls PathOpsStatus.
	PathOpsPage = "/"
	// PathOpsAssets is the prefix of the page's script, style sheet and icon.
	PathOpsAssets = "/ops/"
)

// OpsStatus assembles the operations status (ops.Service).
type OpsStatus interface {
	Status(ctx context.Context) ops.Status
}

// ContentSecurityPolicy is sent with the operations page and its assets:
// everything from this origin only, no inline script or style, no frames.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

//go:embed static
var staticFiles embed.FS

// page is one embedded file of the operations page.
type page struct {
	body        []byte
	contentType string
}

// assetTypes are the content types of the files served, by extension
// (not left to the host's MIME tables); other files are not served.
var assetTypes = map[string]string{
	".html": fiber.MIMETextHTMLCharsetUTF8,
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
}

// opsPages maps request paths to the embedded files: the page at / and
// /index.html, its assets under /ops/.
func opsPages() map[string]page {
	out := map[string]page{}
	entries, err := staticFiles.ReadDir("static")
	if err != nil {
		panic("httpapi: embedded operations page: " + err.Error())
	}
	for _, e := range entries {
		body, err := staticFiles.ReadFile("static/" + e.Name())
		if err != nil {
			panic("httpapi: embedded operations page: " + err.Error())
		}
		ct, ok := assetTypes[path.Ext(e.Name())]
		if !ok {
			continue
		}
		if e.Name() == "index.html" {
			out[PathOpsPage] = page{body, ct}
			out["/index.html"] = page{body, ct}
			continue
		}
		out[PathOpsAssets+e.Name()] = page{body, ct}
	}
	return out
}

// routeOps serves the operations page and its status; api are the
// handlers every /api/v1 route runs first (the address rate limit).
func (s *Server) routeOps(st OpsStatus, api []fiber.Handler) {
	s.app.Get(PathOpsStatus, append(api, func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderCacheControl, "no-store")
		return c.JSON(st.Status(c.UserContext()))
	})...)
	for p, pg := range opsPages() {
		s.app.Get(p, func(c *fiber.Ctx) error {
			c.Set(fiber.HeaderContentType, pg.contentType)
			c.Set(fiber.HeaderContentSecurityPolicy, ContentSecurityPolicy)
			c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
			c.Set(fiber.HeaderReferrerPolicy, "no-referrer")
			c.Set(fiber.HeaderCacheControl, "no-cache")
			return c.Send(pg.body)
		})
	}
}
