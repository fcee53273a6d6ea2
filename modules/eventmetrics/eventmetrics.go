// Package eventmetrics counts accepted and rejected events by source and
// reason. The edge (modules/ingest) counts what it stores or refuses, the
// partition owners (modules/partition) what game servers published directly
// and they applied or terminated; neither imports the other.
package eventmetrics

import (
	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/prometheus/client_golang/prometheus"
)

// Source names where an event came from, for metrics.
const (
	SourceHTTP = "http"
	SourceNATS = "nats"
)

// Metrics counts accepted and rejected events by source and reason.
type Metrics struct {
	Accepted *prometheus.CounterVec
	Rejected *prometheus.CounterVec
}

// New registers the event metrics.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gamemodes_events_accepted_total",
			Help: "Events accepted, by source (http: stored by an edge; nats: published directly and valid when applied).",
		}, []string{"source"}),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gamemodes_events_rejected_total",
			Help: "Events rejected, by source and reason (the contract's error code).",
		}, []string{"source", "reason"}),
	}
	reg.MustRegister(m.Accepted, m.Rejected)
	return m
}

// Reject counts an event from source rejected with err, by its reason
// (domain.RejectReason).
func (m *Metrics) Reject(source string, err error) {
	m.Rejected.WithLabelValues(source, domain.RejectReason(err)).Inc()
}
