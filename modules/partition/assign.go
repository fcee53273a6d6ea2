package partition

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/gamemodes/gamemodes/modules/lease"
)

// Assign spreads partitions over live members: each member gets the floor
// or the ceiling of partitions/members, and each partition prefers the
// members that rank it highest by rendezvous hashing, so a change of members
// moves few partitions. Every member computes the same answer from the same
// member set. The result maps a partition to its member.
func Assign(members []string, partitions int) []string {
	out := make([]string, partitions)
	if len(members) == 0 {
		return out
	}
	ms := slices.Clone(members)
	slices.Sort(ms)
	ms = slices.Compact(ms)
	n := len(ms)
	base, extra := partitions/n, partitions%n
	count := make([]int, n)
	atCeil := 0
	order := make([]int, n)
	for p := 0; p < partitions; p++ {
		for i := range order {
			order[i] = i
		}
		slices.SortFunc(order, func(a, b int) int {
			sa, sb := rendezvous(ms[a], p), rendezvous(ms[b], p)
			switch {
			case sa > sb:
				return -1
			case sa < sb:
				return 1
			}
			return a - b
		})
		for _, i := range order {
			if count[i] < base || (count[i] == base && atCeil < extra) {
				if count[i] == base {
					atCeil++
				}
				count[i]++
				out[p] = ms[i]
				break
			}
		}
	}
	return out
}

// rendezvous scores a (member, partition) pair: FNV-1a 64 of "member/p".
func rendezvous(member string, p int) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(member); i++ {
		h ^= uint64(member[i])
		h *= 1099511628211
	}
	h ^= '/'
	h *= 1099511628211
	for _, c := range strconv.Itoa(p) {
		h ^= uint64(c)
		h *= 1099511628211
	}
	// Final avalanche so near-identical inputs spread.
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	return h
}

// Coordinator is what the assigner needs to share partitions with other
// workers: memberships that expire without heartbeats, and partition leases
// that expire without renewal (their operations return an error wrapping
// lease.ErrConflict when another worker holds the lease).
type Coordinator interface {
	Heartbeat(ctx context.Context, member string) error
	Leave(ctx context.Context, member string) error
	Members(ctx context.Context) ([]string, error)
	// Lease is partition p's lease.
	Lease(p int) lease.Lease
	// Changed is signalled (without blocking) when memberships or leases change.
	Changed() <-chan struct{}
}

// Owners runs the owners of the partitions the assigner holds (*Worker).
type Owners interface {
	// Ensure runs owners for exactly ps; others stop in the background.
	Ensure(ps []int)
	// StopPartition stops p's owner; the channel closes once it has
	// finished its writes and flushed.
	StopPartition(p int) <-chan struct{}
	// Stop stops every owner, waiting for them or for ctx to end.
	Stop(ctx context.Context) error
}

// Assigner makes this process own its fair share of the partitions: it
// heartbeats, computes the assignment from the live members, acquires and
// renews the leases of its partitions, runs their owners, and hands a
// partition over (finish, flush, release) when another member should own it.
type Assigner struct {
	id         string
	partitions int
	coord      Coordinator
	worker     Owners
	interval   time.Duration
	log        *slog.Logger

	held        map[int]uint64 // partition -> lease revision
	leaving     map[int]chan struct{}
	failing     bool // the last round could not reach the coordinator
	lastMembers []string
	renewed     time.Time // when heartbeat and leases were last renewed
	stopped     sync.Once
	stop        chan struct{}
	done        chan struct{}
}

// NewAssigner returns an assigner for member id; leaseTTL sets the renewal
// interval (a third of it).
func NewAssigner(id string, partitions int, leaseTTL time.Duration, coord Coordinator, worker Owners, log *slog.Logger) *Assigner {
	return &Assigner{
		id: id, partitions: partitions, coord: coord, worker: worker,
		interval: max(100*time.Millisecond, leaseTTL/3), log: log,
		held: map[int]uint64{}, leaving: map[int]chan struct{}{},
	}
}

// Start runs the assignment loop in the background.
func (a *Assigner) Start() {
	a.stop, a.done = make(chan struct{}), make(chan struct{})
	go a.run()
}

func (a *Assigner) run() {
	defer close(a.done)
	tick := time.NewTicker(a.interval)
	defer tick.Stop()
	for {
		a.step()
		select {
		case <-a.stop:
			return
		case <-tick.C:
		case <-a.coord.Changed():
		}
	}
}

// step is one round: heartbeat, renew, hand over, acquire. Its operations
// are bounded by the round interval, never cut short by Stop (a renewal
// whose answer is lost would leave the lease unreleasable until it expires).
func (a *Assigner) step() {
	opCtx, cancel := context.WithTimeout(context.Background(), a.interval*2)
	defer cancel()
	var firstErr error
	failures := 0
	changed := false
	renew := time.Since(a.renewed) >= a.interval
	if renew {
		a.renewed = time.Now()
		// The heartbeat and every renewal at once: one round trip for the
		// round, however many partitions are held.
		var wg sync.WaitGroup
		var heartbeatErr error
		wg.Go(func() { heartbeatErr = a.coord.Heartbeat(opCtx, a.id) })
		renewals := make([]renewal, 0, len(a.held))
		for p, rev := range a.held {
			if _, leaving := a.leaving[p]; !leaving {
				renewals = append(renewals, renewal{p: p, rev: rev})
			}
		}
		for i := range renewals {
			r := &renewals[i]
			wg.Go(func() { r.newRev, r.err = a.coord.Lease(r.p).Renew(opCtx, a.id, r.rev) })
		}
		wg.Wait()
		if heartbeatErr != nil {
			firstErr = heartbeatErr
			failures++
		}
		for _, r := range renewals {
			switch {
			case r.err == nil:
				a.held[r.p] = r.newRev
			case errors.Is(r.err, lease.ErrConflict):
				a.log.Warn("partition lease lost", "partition", r.p)
				delete(a.held, r.p)
				changed = true
			default:
				if firstErr == nil {
					firstErr = r.err
				}
				failures++
			}
		}
	}
	members, err := a.coord.Members(opCtx)
	if err != nil {
		if firstErr == nil {
			firstErr = err
		}
		failures++
		members = a.lastMembers
	}
	a.lastMembers = members
	if !slices.Contains(members, a.id) {
		members = append(members, a.id)
	}
	want := Assign(members, a.partitions)
	for p, rev := range a.held {
		if _, leaving := a.leaving[p]; leaving || want[p] == a.id {
			continue
		}
		// Another live member should own p: finish, flush, release.
		done := make(chan struct{})
		a.leaving[p] = done
		stopped := a.worker.StopPartition(p)
		go func(p int, rev uint64) {
			defer close(done)
			<-stopped
			rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := a.coord.Lease(p).Release(rctx, a.id, rev); err != nil {
				a.log.Warn("lease release failed", "partition", p, "err", err)
			}
		}(p, rev)
		changed = true
	}
	for p, done := range a.leaving {
		select {
		case <-done:
			delete(a.leaving, p)
			delete(a.held, p)
		default:
		}
	}
	var acquisitions []renewal
	for p := 0; p < a.partitions; p++ {
		if _, ok := a.held[p]; !ok && want[p] == a.id {
			acquisitions = append(acquisitions, renewal{p: p})
		}
	}
	var wg sync.WaitGroup
	for i := range acquisitions {
		r := &acquisitions[i]
		wg.Go(func() { r.newRev, r.err = a.coord.Lease(r.p).Acquire(opCtx, a.id) })
	}
	wg.Wait()
	for _, r := range acquisitions {
		if r.err != nil {
			if !errors.Is(r.err, lease.ErrConflict) {
				if firstErr == nil {
					firstErr = r.err
				}
				failures++
			}
			continue
		}
		a.held[r.p] = r.newRev
		changed = true
	}
	running := make([]int, 0, len(a.held))
	for p := range a.held {
		if _, leaving := a.leaving[p]; !leaving {
			running = append(running, p)
		}
	}
	slices.Sort(running)
	a.worker.Ensure(running)
	// Log coordination trouble once per change of state, not every round
	// (judged on rounds that renew: the others touch the coordinator little).
	if !renew {
		return
	}
	if failures > 0 && !a.failing {
		a.log.Warn("cannot reach the coordinator: heartbeat or lease operations failing", "failures", failures, "err", firstErr)
	} else if failures == 0 && a.failing {
		a.log.Info("coordinator reachable again")
	}
	a.failing = failures > 0
	if changed {
		a.log.Info("partitions owned", "member", a.id, "partitions", fmt.Sprint(running), "count", len(running), "members", len(members))
	}
}

// renewal is one lease operation of a round: partition p's lease at rev.
type renewal struct {
	p      int
	rev    uint64
	newRev uint64
	err    error
}

// Stop hands every partition over: owners finish and flush, leases are
// released, and the membership is removed, so other workers take over at once.
func (a *Assigner) Stop(ctx context.Context) error {
	if a.stop == nil {
		return nil
	}
	first := false
	a.stopped.Do(func() { close(a.stop); first = true })
	<-a.done
	if !first {
		return nil
	}
	err := a.worker.Stop(ctx)
	lctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if lerr := a.coord.Leave(lctx, a.id); lerr != nil {
		a.log.Warn("leave failed", "err", lerr)
	}
	for p, rev := range a.held {
		if done, leaving := a.leaving[p]; leaving {
			<-done
			continue
		}
		if rerr := a.coord.Lease(p).Release(lctx, a.id, rev); rerr != nil {
			a.log.Warn("lease release failed", "partition", p, "err", rerr)
		}
	}
	a.held = map[int]uint64{}
	return err
}
