package lobby

import (
	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"
)

// Module provides the View of the catalog's regions and modes (its metrics
// on the Registerer) and the Broadcaster that follows it, started and
// stopped with the application. The count shards reach the View through
// an adapter the application wires to it (View.SetShard, View.DeleteShard,
// View.MarkSynced; View.SetPartitions for read-your-writes).
var Module = fx.Module("lobby",
	fx.Provide(
		func(c *domain.Catalog, reg prometheus.Registerer) *View { return NewView(c, reg) },
		func(lc fx.Lifecycle, v *View) *Broadcaster {
			b := NewBroadcaster(v, DefaultBroadcastInterval)
			lc.Append(fx.StartStopHook(b.Start, b.Stop))
			return b
		},
	),
)
