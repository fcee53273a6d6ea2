package partitiontest

import (
	"context"
	"sync"

	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/modules/partition"
)

// Feed is an in-memory partition.Feed over an events log that tests
// append to, as the events stream would store them.
type Feed struct {
	partitions int
	clock      partition.Clock

	mu     sync.Mutex
	log    []partition.EventMsg
	notify chan struct{} // closed and replaced on every append
}

var _ partition.Feed = (*Feed)(nil)

// NewFeed returns an empty log of a stream of partitions partitions,
// stamping events with clock's time (nil: the wall clock).
func NewFeed(partitions int, clock partition.Clock) *Feed {
	if clock == nil {
		clock = partition.SystemClock{}
	}
	return &Feed{partitions: partitions, clock: clock, notify: make(chan struct{})}
}

// Publish stores a game server's event published under region and user
// token (the partition is the token's, as the stream computes it) and
// returns its sequence.
func (f *Feed) Publish(region, token string, data []byte) uint64 {
	return f.Append(partition.EventMsg{Partition: domain.PartitionOf(token, f.partitions), Region: region, Data: data})
}

// Append stores m as it is, with the next sequence and, when m.Time is
// zero, the clock's time; it returns the sequence.
func (f *Feed) Append(m partition.EventMsg) uint64 {
	if m.Time.IsZero() {
		m.Time = f.clock.Now()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	m.Seq = uint64(len(f.log)) + 1
	f.log = append(f.log, m)
	close(f.notify)
	f.notify = make(chan struct{})
	return m.Seq
}

// LastSeq is the sequence of the last event stored.
func (f *Feed) LastSeq() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return uint64(len(f.log))
}

// Events delivers p's events from fromSeq on, in order, on a goroutine
// of its own, until stop (which does not wait for a delivery in progress).
func (f *Feed) Events(ctx context.Context, p int, fromSeq uint64, deliver func(partition.EventMsg)) (func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	stop := make(chan struct{})
	var once sync.Once
	go func() {
		next := max(fromSeq, 1)
		for {
			f.mu.Lock()
			tail := f.log[min(next-1, uint64(len(f.log))):]
			total := uint64(len(f.log))
			wait := f.notify
			f.mu.Unlock()
			for _, m := range tail {
				select {
				case <-stop:
					return
				case <-ctx.Done():
					return
				default:
				}
				next = m.Seq + 1
				if m.Partition != p {
					continue
				}
				m.Pending = total - m.Seq
				deliver(m)
			}
			select {
			case <-wait:
			case <-stop:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() { once.Do(func() { close(stop) }) }, nil
}
