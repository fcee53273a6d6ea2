package httpapi

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"
)

// Params are the fx inputs of the HTTP server. Provide EventSubmitter and
// LobbyLists (for example with fx.Annotate(svc, fx.As(new(httpapi.EventSubmitter))))
// on an edge; without them only the operations routes are served. Config,
// Readiness, ConnectedFunc, the prometheus.Gatherer and Registerer and the
// *slog.Logger are optional.
type Params struct {
	fx.In

	Config    Config              `optional:"true"`
	Events    EventSubmitter      `optional:"true"`
	Lobby     LobbyLists          `optional:"true"`
	Streams   LobbyStreams        `optional:"true"`
	Readiness Readiness           `optional:"true"`
	Gatherer  prometheus.Gatherer `optional:"true"`
	Logger    *slog.Logger        `optional:"true"`
	// Connected becomes Deps.Connected (for example
	// fx.Supply(httpapi.ConnectedFunc(nc.IsConnected))).
	Connected  ConnectedFunc         `optional:"true"`
	Registerer prometheus.Registerer `optional:"true"`
	Lifecycle  fx.Lifecycle

	// Ops serves the operations page and its status when provided.
	Ops OpsStatus `optional:"true"`
}

// ConnectedFunc reports whether the events stream's client is connected; it
// is the fx-provided form of Deps.Connected.
type ConnectedFunc func() bool

// NewWithLifecycle builds the Server from fx params and ties it to the fx
// lifecycle: it listens on Config.Addr at start (returning at once, or with
// the bind error) and shuts down gracefully at stop. It fails when
// Config.Validate does.
func NewWithLifecycle(p Params) (*Server, error) {
	if err := p.Config.Validate(); err != nil {
		return nil, err
	}
	s := New(p.Config, Deps{
		Events:     p.Events,
		Lobby:      p.Lobby,
		Streams:    p.Streams,
		Readiness:  p.Readiness,
		Gatherer:   p.Gatherer,
		Logger:     p.Logger,
		Connected:  p.Connected,
		Registerer: p.Registerer,
		Ops:        p.Ops,
	})
	p.Lifecycle.Append(fx.Hook{
		OnStart: func(context.Context) error { return s.Listen(s.cfg.Addr) },
		OnStop:  s.Shutdown,
	})
	return s, nil
}

// Module provides the HTTP edge *Server and starts it with the application.
var Module = fx.Module("httpapi",
	fx.Provide(NewWithLifecycle),
	fx.Invoke(func(*Server) {}),
)
