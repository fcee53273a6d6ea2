package partition

import (
	"context"
	"log/slog"
	"time"

	"github.com/gamemodes/gamemodes/modules/domain"
	"go.uber.org/fx"
)

// Config is what Module needs to run this process's share of the
// partitions: how its owners run, and the assigner's member id, partition
// count and lease time.
type Config struct {
	Owner      OwnerConfig
	Member     string
	Partitions int
	LeaseTTL   time.Duration
}

// Params are the worker's dependencies in an fx graph: the Config, the
// catalog and the ports (Store, Feed, Coordinator: the JetStream adapters)
// come from the application, the Metrics from NewMetrics (counting into
// the shared *eventmetrics.Metrics); Logger is optional.
type Params struct {
	fx.In

	Config      Config
	Catalog     *domain.Catalog
	Store       Store
	Feed        Feed
	Coordinator Coordinator
	Metrics     *Metrics
	Logger      *slog.Logger `optional:"true"`
}

// NewFromParams returns the Worker and the Assigner that shares the
// partitions out to it.
func NewFromParams(p Params) (*Worker, *Assigner) {
	log := p.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "worker")
	w := NewWorker(p.Config.Owner, p.Catalog, p.Store, p.Feed, p.Metrics, log)
	return w, NewAssigner(p.Config.Member, p.Config.Partitions, p.Config.LeaseTTL, p.Coordinator, w, log)
}

// Module provides the *Metrics, *Worker and *Assigner and runs the
// assigner with the application: on stop it hands every partition over
// (owners finish their writes and flush, leases are released).
var Module = fx.Module("partition",
	fx.Provide(NewMetrics, NewFromParams),
	fx.Invoke(func(lc fx.Lifecycle, a *Assigner) {
		lc.Append(fx.Hook{
			OnStart: func(context.Context) error { a.Start(); return nil },
			OnStop:  a.Stop,
		})
	}),
)
