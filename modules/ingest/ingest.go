// Package ingest accepts player events from game clients: it validates them
// against the contract and stores them durably in the events stream.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"
)

// Publisher stores one event durably in the events stream under subject,
// deduplicated by msgID, and reports whether the stream had it already.
type Publisher interface {
	PublishEvent(ctx context.Context, subject, msgID string, payload []byte) (duplicate bool, err error)
}

// ErrUnavailable means the events stream could not store the event; the
// reporter should retry later.
var ErrUnavailable = errors.New("event stream unavailable")

// Receipt is the answer to an accepted event.
type Receipt struct {
	EventID   string `json:"event_id"`
	Duplicate bool   `json:"duplicate"`
}

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

// NewMetrics registers the ingest metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
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

// Service validates and stores events.
type Service struct {
	catalog *domain.Catalog
	pub     Publisher
	metrics *Metrics
	now     func() time.Time
}

// NewService returns a Service publishing through pub.
func NewService(catalog *domain.Catalog, pub Publisher, metrics *Metrics) *Service {
	return &Service{catalog: catalog, pub: pub, metrics: metrics, now: time.Now}
}

// Submit validates an event body and stores it. Invalid bodies return a
// *domain.ValidationError; a stream failure returns an error wrapping
// ErrUnavailable. Events without event_id get a generated one.
func (s *Service) Submit(ctx context.Context, body []byte) (Receipt, error) {
	ev, err := s.catalog.DecodeEvent(body, s.now())
	if err != nil {
		s.Reject(SourceHTTP, err)
		return Receipt{}, err
	}
	if ev.ID == "" {
		ev.ID = nuid.Next()
	}
	dup, err := s.pub.PublishEvent(ctx, domain.EventSubjectOf(ev), ev.ID, ev.MarshalCanonical())
	if err != nil {
		s.metrics.Rejected.WithLabelValues(SourceHTTP, "unavailable").Inc()
		return Receipt{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	s.metrics.Accepted.WithLabelValues(SourceHTTP).Inc()
	return Receipt{EventID: ev.ID, Duplicate: dup}, nil
}

// Reject counts a rejected event by the reason in err.
func (s *Service) Reject(source string, err error) {
	reason := "invalid"
	if v, ok := domain.AsValidationError(err); ok {
		reason = v.Code
	}
	s.metrics.Rejected.WithLabelValues(source, reason).Inc()
}

// Module provides the ingest Service; the Publisher comes from an adapter and
// the Metrics from NewMetrics (shared with the partition owners).
var Module = fx.Module("ingest",
	fx.Provide(NewService),
)
