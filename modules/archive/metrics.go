package archive

import "github.com/prometheus/client_golang/prometheus"

// Metrics of the archiver.
type Metrics struct {
	// Rows counts event rows in committed batches (including redeliveries
	// the store ignored as already archived).
	Rows prometheus.Counter
	// Batches counts committed batches.
	Batches prometheus.Counter
	// Errors counts failures by operation: write (claiming the archive or a
	// batch transaction), ack (acknowledging a committed batch), source
	// (reading or positioning the stream).
	Errors *prometheus.CounterVec
	// Lag is the consumer's unacknowledged messages (pending + ack pending).
	Lag prometheus.Gauge
	// Rejected counts invalid messages archived as rejected, by reason.
	Rejected *prometheus.CounterVec
	// StoreUp is 1 while batches commit, 0 while the store fails.
	StoreUp prometheus.Gauge
	// WriteSeconds is the time of successful batch transactions.
	WriteSeconds prometheus.Histogram
	// Active is 1 while this archiver holds the archive, 0 while it waits
	// as a standby (or is stopped).
	Active prometheus.Gauge
}

// NewMetrics registers the archiver metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Rows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gamemodes_archive_rows_total",
			Help: "Event rows in batches committed to the archive (rows already archived count again but are not duplicated).",
		}),
		Batches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gamemodes_archive_batches_total",
			Help: "Batches committed to the archive.",
		}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gamemodes_archive_errors_total",
			Help: "Archiver failures by operation: write (claiming the archive or a batch transaction; resumed after the checkpoint), ack (stream acknowledgement), source (reading or positioning the stream).",
		}, []string{"op"}),
		Lag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gamemodes_archive_lag_messages",
			Help: "Events stream messages not yet archived and acknowledged by the archiver's consumer.",
		}),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gamemodes_archive_rejected_total",
			Help: "Invalid stream messages archived in rejected_event, by reason.",
		}, []string{"reason"}),
		StoreUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gamemodes_archive_store_up",
			Help: "1 while archive batches commit, 0 while Postgres fails.",
		}),
		WriteSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "gamemodes_archive_write_seconds",
			Help:    "Duration of committed archive batch transactions.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		Active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gamemodes_archive_active",
			Help: "1 while this archiver holds the archive (the one active archiver), 0 while it is a standby.",
		}),
	}
	for _, op := range []string{opWrite, opAck, opSource} {
		m.Errors.WithLabelValues(op)
	}
	m.StoreUp.Set(1)
	reg.MustRegister(m.Rows, m.Batches, m.Errors, m.Lag, m.Rejected, m.StoreUp, m.WriteSeconds, m.Active)
	return m
}

const (
	opWrite  = "write"
	opAck    = "ack"
	opSource = "source"
)
