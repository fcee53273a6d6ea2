package archive

import (
	"context"
	"log/slog"

	"github.com/gamemodes/gamemodes/modules/domain"
	"go.uber.org/fx"
)

// Params are the archiver's dependencies in an fx graph: the Config, the
// catalog, a Source (the JetStream archive feed) and a Store (the Postgres
// archive) come from the application; Logger is optional.
type Params struct {
	fx.In

	Config  Config
	Catalog *domain.Catalog
	Source  Source
	Store   Store
	Metrics *Metrics
	Logger  *slog.Logger `optional:"true"`
}

// NewFromParams is New for fx.
func NewFromParams(p Params) (*Archiver, error) {
	return New(p.Config, p.Catalog, p.Source, p.Store, p.Metrics, p.Logger)
}

// Module provides the *Archiver and its *Metrics (registered on the
// application's prometheus.Registerer) and runs it with the application:
// started on start, stopped on stop after committing and acknowledging the
// batch in hand.
var Module = fx.Module("archive",
	fx.Provide(NewMetrics, NewFromParams),
	fx.Invoke(func(lc fx.Lifecycle, a *Archiver) {
		lc.Append(fx.Hook{
			OnStart: func(context.Context) error { a.Start(); return nil },
			OnStop:  a.Stop,
		})
	}),
)
