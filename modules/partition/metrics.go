package partition

import (
	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/modules/eventmetrics"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the partition owners' Prometheus metrics.
type Metrics struct {
	events            *eventmetrics.Metrics
	applied           *prometheus.CounterVec
	skipped           *prometheus.CounterVec
	staleLeaves       prometheus.Counter
	expiries          prometheus.Counter
	flushes           prometheus.Counter
	badStoredPlayers  prometheus.Counter
	pending           *prometheus.GaugeVec
	durableLagEvents  *prometheus.GaugeVec
	durableLagSeconds *prometheus.GaugeVec
	owned             *prometheus.GaugeVec
	players           *prometheus.GaugeVec
	loadSeconds       prometheus.Histogram
	restarts          prometheus.Counter
	busyRetries       prometheus.Counter

	// Children resolved once, for the per-event path.
	appliedBy    map[domain.Outcome]prometheus.Counter
	acceptedNATS prometheus.Counter
}

// appliedCounter is the applied counter of an outcome.
func (m *Metrics) appliedCounter(o domain.Outcome) prometheus.Counter {
	if c, ok := m.appliedBy[o]; ok {
		return c
	}
	return m.applied.WithLabelValues(o.String())
}

// ExpiriesCounter is the counter of players expired out of their mode.
func (m *Metrics) ExpiriesCounter() prometheus.Counter { return m.expiries }

// NewMetrics registers the owners' metrics; accepted and rejected NATS events
// are counted in the shared event metrics.
func NewMetrics(reg prometheus.Registerer, events *eventmetrics.Metrics) *Metrics {
	m := &Metrics{
		events: events,
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gamemodes_events_applied_total",
			Help: "Events applied to player states, by outcome (entered, moved, refreshed, left, stale_leave, duplicate; heartbeats: heartbeat when the player was there, heartbeat_entered when not counted, heartbeat_moved when elsewhere).",
		}, []string{"outcome"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gamemodes_events_skipped_total",
			Help: "Valid events not applied, by reason (older_than_ttl: every effect would have expired).",
		}, []string{"reason"}),
		staleLeaves: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gamemodes_stale_leaves_total",
			Help: "LEAVE events for a mode the player was not in; they change no count.",
		}),
		expiries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gamemodes_player_expiries_total",
			Help: "Players removed from their mode because their state expired.",
		}),
		flushes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gamemodes_shard_flushes_total",
			Help: "Count-shard writes acknowledged.",
		}),
		badStoredPlayers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gamemodes_stored_players_unreadable_total",
			Help: "Stored player states that could not be read at load (unknown region or mode, or corrupt); treated as absent.",
		}),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gamemodes_consumer_pending",
			Help: "Events stored but not yet delivered to the owner (the consumer is shared by a worker's partitions, so this is the worker's backlog, reported per partition).",
		}, []string{"partition"}),
		durableLagEvents: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gamemodes_partition_durable_lag_events",
			Help: "Events delivered to the partition's owner whose player writes are not yet persisted (counted already, not yet durable; 0 when caught up).",
		}, []string{"partition"}),
		durableLagSeconds: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gamemodes_partition_durable_lag_seconds",
			Help: "Age of the oldest event delivered to the partition's owner whose player write is not yet persisted (0 when caught up). Read-your-writes waits for it.",
		}, []string{"partition"}),
		owned: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gamemodes_partition_owned",
			Help: "1 for each partition this process owns.",
		}, []string{"partition"}),
		players: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gamemodes_partition_players",
			Help: "Player states held in memory per owned partition (counted and recently left).",
		}, []string{"partition"}),
		loadSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "gamemodes_partition_load_seconds",
			Help:    "Time to load a partition's players when taking it over.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}),
		busyRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gamemodes_write_busy_retries_total",
			Help: "Player batches and shard writes sent again: the replicated stream was still applying the previous revision-checked write, had too many batches open, or the outcome of a batch was unknown (a lost acknowledgement, a leader change).",
		}),
		restarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gamemodes_partition_restarts_total",
			Help: "Owner restarts after an error or a lost revision check (the partition is reloaded).",
		}),
	}
	m.appliedBy = map[domain.Outcome]prometheus.Counter{}
	for o := range domain.Outcome(domain.NumOutcomes) {
		m.appliedBy[o] = m.applied.WithLabelValues(o.String())
	}
	m.acceptedNATS = events.Accepted.WithLabelValues(eventmetrics.SourceNATS)
	reg.MustRegister(m.applied, m.skipped, m.staleLeaves, m.expiries, m.flushes, m.badStoredPlayers,
		m.pending, m.durableLagEvents, m.durableLagSeconds, m.owned, m.players, m.loadSeconds, m.restarts, m.busyRetries)
	return m
}
