// Package ingest accepts player events from game clients: it validates them
// against the contract and stores them durably in the events stream.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/modules/eventmetrics"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"
)

// Publisher stores one event durably in the events stream, as reported for
// region by the user of token (domain.UserToken), deduplicated by msgID, and
// reports where the stream stored it. The adapter knows the subjects.
type Publisher interface {
	PublishEvent(ctx context.Context, region, token, msgID string, payload []byte) (PublishAck, error)
}

// PublishAck is the events stream's acknowledgement of a stored event.
type PublishAck struct {
	// Sequence is the event's sequence in the stream; for a duplicate, the
	// sequence of the copy stored first.
	Sequence uint64
	// Duplicate reports that the stream had stored this msgID already.
	Duplicate bool
}

// ErrUnavailable means the events stream could not store the event; the
// reporter should retry later.
var ErrUnavailable = errors.New("event stream unavailable")

// Receipt is the answer to an accepted event.
type Receipt struct {
	EventID   string `json:"event_id"`
	Duplicate bool   `json:"duplicate"`
	// ConsistencyToken names the stored event (for a duplicate, the copy
	// stored first) for read-your-writes: a lobby read given it answers once
	// the event is reflected (see domain.ConsistencyToken). Empty when the
	// Service does not know the stream's partitions (WithPartitions).
	ConsistencyToken string `json:"consistency_token,omitempty"`
}

// Source names where an event came from, for metrics.
const (
	SourceHTTP = eventmetrics.SourceHTTP
	SourceNATS = eventmetrics.SourceNATS
)

// Metrics counts accepted and rejected events by source and reason; the
// partition owners count into the same (see modules/eventmetrics).
type Metrics = eventmetrics.Metrics

// NewMetrics registers the event metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics { return eventmetrics.New(reg) }

// Service validates and stores events.
type Service struct {
	catalog    *domain.Catalog
	pub        Publisher
	metrics    *Metrics
	now        func() time.Time
	partitions int
}

// Option configures a Service.
type Option func(*Service)

// WithPartitions gives the events stream's partition count, with which the
// Service issues consistency tokens (Receipt.ConsistencyToken).
func WithPartitions(n int) Option { return func(s *Service) { s.partitions = n } }

// NewService returns a Service publishing through pub.
func NewService(catalog *domain.Catalog, pub Publisher, metrics *Metrics, opts ...Option) *Service {
	s := &Service{catalog: catalog, pub: pub, metrics: metrics, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	return s
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
	ack, err := s.pub.PublishEvent(ctx, ev.Region, ev.Token(), ev.ID, ev.MarshalCanonical())
	if err != nil {
		s.metrics.Rejected.WithLabelValues(SourceHTTP, "unavailable").Inc()
		return Receipt{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	s.metrics.Accepted.WithLabelValues(SourceHTTP).Inc()
	r := Receipt{EventID: ev.ID, Duplicate: ack.Duplicate}
	if s.partitions > 0 && ack.Sequence > 0 {
		r.ConsistencyToken = domain.ConsistencyToken{Partition: domain.PartitionOf(ev.Token(), s.partitions), Seq: ack.Sequence}.String()
	}
	return r, nil
}

// Reject counts a rejected event by the reason in err.
func (s *Service) Reject(source string, err error) {
	s.metrics.Reject(source, err)
}

// OptionsGroup is the fx value group whose Options configure the Service
// that Module provides, e.g. fx.Provide(fx.Annotate(func() ingest.Option {
// return ingest.WithPartitions(32) }, fx.ResultTags(`group:"ingest_options"`))).
const OptionsGroup = "ingest_options"

// Module provides the ingest Service; the Publisher comes from an adapter,
// the Metrics from NewMetrics (shared with the partition owners) and any
// Options from the value group OptionsGroup.
var Module = fx.Module("ingest",
	fx.Provide(fx.Annotate(NewService, fx.ParamTags(``, ``, ``, `group:"`+OptionsGroup+`"`))),
)
