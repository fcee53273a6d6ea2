package partition

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/gamemodes/gamemodes/modules/domain"
)

// Worker runs the owners of the partitions assigned to this process and
// restarts an owner (reloading its partition) after an error. An owner that
// was fenced is not restarted: the assigner decides whether this process
// still holds the partition.
type Worker struct {
	cfg     OwnerConfig
	catalog *domain.Catalog
	store   Store
	feed    Feed
	metrics *Metrics
	log     *slog.Logger

	mu      sync.Mutex
	running map[int]*run
	closed  bool
}

type run struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// NewWorker returns a worker owning no partition yet.
func NewWorker(cfg OwnerConfig, catalog *domain.Catalog, store Store, feed Feed, metrics *Metrics, log *slog.Logger) *Worker {
	return &Worker{cfg: cfg, catalog: catalog, store: store, feed: feed, metrics: metrics, log: log,
		running: map[int]*run{}}
}

// Ensure runs owners for exactly ps: missing ones start, others are asked
// to stop (they finish their writes and flush in the background).
func (w *Worker) Ensure(ps []int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	for p, r := range w.running {
		if !slices.Contains(ps, p) {
			r.cancel()
			delete(w.running, p)
		}
	}
	for _, p := range ps {
		if _, ok := w.running[p]; !ok {
			w.startLocked(p)
		}
	}
}

// SetPartitions runs owners for exactly ps and waits until the owners of
// other partitions have finished.
func (w *Worker) SetPartitions(ps []int) {
	var stopping []<-chan struct{}
	w.mu.Lock()
	for p := range w.running {
		if !slices.Contains(ps, p) {
			stopping = append(stopping, w.stopLocked(p))
		}
	}
	w.mu.Unlock()
	for _, done := range stopping {
		<-done
	}
	w.Ensure(ps)
}

// StopPartition stops partition p's owner; the channel closes once it has
// finished its writes and flushed.
func (w *Worker) StopPartition(p int) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stopLocked(p)
}

func (w *Worker) stopLocked(p int) <-chan struct{} {
	r, ok := w.running[p]
	if !ok {
		done := make(chan struct{})
		close(done)
		return done
	}
	r.cancel()
	delete(w.running, p)
	return r.done
}

func (w *Worker) startLocked(p int) {
	ctx, cancel := context.WithCancel(context.Background())
	r := &run{cancel: cancel, done: make(chan struct{})}
	w.running[p] = r
	go w.supervise(ctx, p, r)
}

// Owned returns the partitions this worker runs owners for, ascending.
func (w *Worker) Owned() []int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]int, 0, len(w.running))
	for p := range w.running {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

func (w *Worker) supervise(ctx context.Context, p int, r *run) {
	defer close(r.done)
	backoff := 100 * time.Millisecond
	for {
		o := NewOwner(p, w.cfg, w.catalog, w.store, w.feed, w.metrics, w.log)
		err := o.Run(ctx)
		if ctx.Err() != nil {
			switch {
			case errors.Is(err, context.Canceled):
				// Released while it claimed or loaded the partition (a rebalance or a stop):
				// nothing went wrong.
				w.log.Info("partition released before it was owned", "partition", p, "err", err)
			case err != nil:
				w.log.Error("partition stopped with error", "partition", p, "err", err)
			}
			return
		}
		w.metrics.restarts.Inc()
		if errors.Is(err, ErrFenced) {
			w.log.Warn("partition fenced: another owner claimed it", "partition", p, "err", err)
			w.mu.Lock()
			if w.running[p] == r {
				delete(w.running, p)
			}
			w.mu.Unlock()
			return
		}
		w.log.Error("partition owner restarting", "partition", p, "err", err, "backoff", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// Stop stops every owner, waiting until each has finished its writes and
// flushed its shard, or ctx ends.
func (w *Worker) Stop(ctx context.Context) error {
	w.mu.Lock()
	w.closed = true
	var runs []<-chan struct{}
	for p := range w.running {
		runs = append(runs, w.stopLocked(p))
	}
	w.mu.Unlock()
	for _, done := range runs {
		select {
		case <-done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
