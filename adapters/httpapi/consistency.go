package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// QueryAfter is the query parameter of GET /api/v1/popular_game_modes that
// carries a consistency token (read-your-writes).
const QueryAfter = "after"

// Error codes of read-your-writes.
const (
	// CodeTimeout answers 504: the event named by the consistency token was
	// not reflected in the lobby lists within Config.ConsistencyWait.
	CodeTimeout = "timeout"
	// CodeNotImplemented answers 501: the server has no AppliedWaiter, so it
	// cannot honour a consistency token.
	CodeNotImplemented = "not_implemented"
)

// Defaults of read-your-writes.
const (
	// DefaultConsistencyWait is the default longest wait of a read given a consistency token.
	DefaultConsistencyWait = 2 * time.Second
	// DefaultMaxConsistencyWaiters is the default cap on reads waiting for a consistency token at once.
	DefaultMaxConsistencyWaiters = 4096
)

// AppliedWaiter tells when the events of a partition are reflected in the
// lobby lists, for reads given a consistency token (lobby.View is one).
type AppliedWaiter interface {
	// Applied returns the sequence up to which every event of partition is
	// reflected.
	Applied(partition int) uint64
	// WaitApplied returns nil once Applied(partition) >= seq, ctx.Err() when
	// ctx ends first, or a *domain.ValidationError for a partition that is
	// not the stream's.
	WaitApplied(ctx context.Context, partition int, seq uint64) error
}

var (
	errShuttingDown   = &apiError{status: fiber.StatusServiceUnavailable, code: CodeUnavailable, message: "the server is shutting down, retry later"}
	errReadCanceled   = &apiError{status: fiber.StatusServiceUnavailable, code: CodeUnavailable, message: "the read was canceled, retry"}
	errTooManyWaiters = &apiError{status: fiber.StatusServiceUnavailable, code: CodeOverloaded, message: "too many reads waiting for their consistency token, retry later"}
	errNoWaiter       = &apiError{status: fiber.StatusNotImplemented, code: CodeNotImplemented, message: "this server does not serve consistency tokens"}
)

// Results of gamemodes_consistency_reads_total.
const (
	waitImmediate = "immediate"
	waitWaited    = "waited"
	waitTimeout   = "timeout"
	waitRefused   = "refused"
	waitCanceled  = "canceled"
	waitInvalid   = "invalid"
)

// waitMetrics count the reads given a consistency token; a nil
// *waitMetrics counts nothing.
type waitMetrics struct {
	reads   *prometheus.CounterVec
	seconds prometheus.Histogram
}

func newWaitMetrics(reg prometheus.Registerer, s *Server) *waitMetrics {
	if reg == nil {
		return nil
	}
	m := &waitMetrics{
		reads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gamemodes_consistency_reads_total",
			Help: "Lobby reads given a consistency token (after=), by result: immediate (already reflected), waited, timeout (504), refused (too many waiting, 503), canceled (shutdown), invalid (400).",
		}, []string{"result"}),
		seconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "gamemodes_consistency_wait_seconds",
			Help:    "How long lobby reads given a consistency token waited for it (reads that waited, timeouts included).",
			Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5},
		}),
	}
	waiting := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "gamemodes_consistency_waiting",
		Help: "Lobby reads waiting for their consistency token now (capped by the consistency waiters limit).",
	}, func() float64 { return float64(s.waiting.Load()) })
	for _, c := range []prometheus.Collector{m.reads, m.seconds, waiting} {
		if err := reg.Register(c); err != nil {
			s.log.Error("httpapi: register metrics", "err", err)
		}
	}
	return m
}

func (m *waitMetrics) count(result string) {
	if m != nil {
		m.reads.WithLabelValues(result).Inc()
	}
}

func (m *waitMetrics) waited(result string, d time.Duration) {
	if m != nil {
		m.reads.WithLabelValues(result).Inc()
		m.seconds.Observe(d.Seconds())
	}
}

// awaitToken waits until the event named by a consistency token is
// reflected in the lobby lists: at once when it is already, else sleeping
// (no polling, no goroutine) until its partition's shard advances, for at
// most Config.ConsistencyWait (504 timeout), and never past the server's
// shutdown (503). At most Config.MaxConsistencyWaiters reads wait at once;
// beyond that the answer is 503 overloaded at once.
func (s *Server) awaitToken(c *fiber.Ctx, raw string) error {
	tok, err := domain.ParseConsistencyToken(raw)
	if err != nil {
		s.waitMetrics.count(waitInvalid)
		return err
	}
	if s.waiter == nil {
		return errNoWaiter
	}
	if s.waiter.Applied(tok.Partition) >= tok.Seq {
		s.waitMetrics.count(waitImmediate)
		return nil
	}
	n := s.waiting.Add(1)
	defer s.waiting.Add(-1)
	if s.cfg.MaxConsistencyWaiters > 0 && n > int64(s.cfg.MaxConsistencyWaiters) {
		s.waitMetrics.count(waitRefused)
		return errTooManyWaiters
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(c.UserContext(), s.cfg.ConsistencyWait)
	defer cancel()
	defer context.AfterFunc(s.base, cancel)()
	err = s.waiter.WaitApplied(ctx, tok.Partition, tok.Seq)
	waited := time.Since(start)
	if _, invalid := domain.AsValidationError(err); invalid {
		s.waitMetrics.count(waitInvalid)
		return err
	}
	switch {
	case err == nil:
		s.waitMetrics.waited(waitWaited, waited)
		return nil
	case s.base.Err() != nil:
		s.waitMetrics.count(waitCanceled)
		return errShuttingDown
	case errors.Is(err, context.DeadlineExceeded):
		s.waitMetrics.waited(waitTimeout, waited)
		s.log.Debug("consistency token not reflected in time", "partition", tok.Partition, "seq", tok.Seq,
			"applied", s.waiter.Applied(tok.Partition), slog.Duration("waited", waited))
		return &apiError{status: fiber.StatusGatewayTimeout, code: CodeTimeout,
			message: "the event is not reflected in the lobby lists yet (waited " + s.cfg.ConsistencyWait.String() + "); retry the read"}
	default:
		s.waitMetrics.count(waitCanceled)
		return errReadCanceled
	}
}
