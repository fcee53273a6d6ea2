package livelist

import (
	"context"
	"log/slog"

	"github.com/gamemodes/gamemodes/modules/lease"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"
)

// LeaseName names, in an fx graph, the lease.Lease the publisher holds
// (fx.ResultTags(`name:"livelist"`)).
const LeaseName = "livelist"

// Params are the publisher's dependencies in an fx graph: the Config, the
// Source (the lobby broadcaster), the Sender and the lease (from an
// adapter) come from the application; Logger and Registerer are optional.
type Params struct {
	fx.In

	Config     Config
	Lease      lease.Lease `name:"livelist"`
	Source     Source
	Sender     Sender
	Logger     *slog.Logger          `optional:"true"`
	Registerer prometheus.Registerer `optional:"true"`
}

// NewFromParams is New for fx.
func NewFromParams(p Params) *Publisher {
	log := p.Logger
	if log == nil {
		log = slog.Default()
	}
	return New(p.Lease, p.Source, p.Sender, p.Config, log.With("component", "popular"), p.Registerer)
}

// Module provides the *Publisher and runs it with the application: it
// campaigns from start and releases the lease on stop.
var Module = fx.Module("livelist",
	fx.Provide(NewFromParams),
	fx.Invoke(func(lc fx.Lifecycle, p *Publisher) {
		lc.Append(fx.Hook{
			OnStart: func(context.Context) error { p.Start(); return nil },
			OnStop:  p.Stop,
		})
	}),
)
