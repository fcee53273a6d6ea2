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
// restarts an owner (reloading its partition) after an error.
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
	return &Worker{cfg: cfg, catalog: catalog, store: store, feed: feed, metrics: metrics, log: log, running: map[int]*run{}}
}

// SetPartitions makes the worker own exactly ps: owners of other partitions
// are stopped (they finish their writes and flush), missing ones started.
func (w *Worker) SetPartitions(ps []int) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	var stopping []*run
	for p, r := range w.running {
		if !slices.Contains(ps, p) {
			r.cancel()
			stopping = append(stopping, r)
			delete(w.running, p)
		}
	}
	for _, p := range ps {
		if _, ok := w.running[p]; !ok {
			ctx, cancel := context.WithCancel(context.Background())
			r := &run{cancel: cancel, done: make(chan struct{})}
			w.running[p] = r
			go w.supervise(ctx, p, r)
		}
	}
	w.mu.Unlock()
	for _, r := range stopping {
		<-r.done
	}
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
			if err != nil {
				w.log.Error("partition stopped with error", "partition", p, "err", err)
			}
			return
		}
		w.metrics.restarts.Inc()
		level := slog.LevelWarn
		if !errors.Is(err, ErrFenced) {
			level = slog.LevelError
		}
		w.log.Log(ctx, level, "partition owner restarting", "partition", p, "err", err, "backoff", backoff)
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
	runs := make([]*run, 0, len(w.running))
	for p, r := range w.running {
		r.cancel()
		runs = append(runs, r)
		delete(w.running, p)
	}
	w.mu.Unlock()
	for _, r := range runs {
		select {
		case <-r.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
