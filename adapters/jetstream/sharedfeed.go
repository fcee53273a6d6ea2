package jetstream

import (
	"context"
	"fmt"
	"sync"

	"github.com/gamemodes/gamemodes/modules/partition"
	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/nats-io/nats.go/jetstream"
)

// SharedPartitionFeed implements partition.Feed with one ordered consumer
// for all the partitions a process owns, demultiplexed in the process. A
// consumer per partition makes the server scan the interleaved events
// stream once per partition; behind the head of the stream that scan was
// the bottleneck (41% of CPU at 10 million players). A multi-subject filter
// was no better (22% in the server's subject intersection), hence reading
// the whole stream when owning a quarter of the partitions or more.
//
// The consumer is recreated when a partition is added, starting at the
// lowest sequence any registration still needs; registrations skip what
// they already had. Deliveries are serialised, and a recreation waits for
// the delivery in progress, so each registration sees its events in order.
type SharedPartitionFeed struct {
	js         jetstream.JetStream
	partitions int

	deliverMu sync.Mutex // held while delivering and while recreating the consumer
	mu        sync.Mutex
	regs      map[int64]*feedReg
	nextID    int64
	gen       int64
	cc        jetstream.ConsumeContext
	cons      jetstream.Consumer // the consumer cc consumes from
}

type feedReg struct {
	p       int
	next    uint64 // the next sequence this registration needs
	deliver func(partition.EventMsg)
}

// NewSharedPartitionFeed returns a feed on js for a stream of partitions
// partitions. A process that owns at least a quarter of them reads the whole
// stream and drops what it does not own: a server-side filter on many
// partitions costs more (the server intersects each block's subjects with
// the filter) than delivering the rest.
func NewSharedPartitionFeed(js jetstream.JetStream, partitions int) *SharedPartitionFeed {
	return &SharedPartitionFeed{js: js, partitions: partitions, regs: map[int64]*feedReg{}}
}

// Events delivers partition p's stored events from fromSeq on, in order,
// until the returned stop is called.
func (f *SharedPartitionFeed) Events(ctx context.Context, p int, fromSeq uint64, deliver func(partition.EventMsg)) (func(), error) {
	f.deliverMu.Lock()
	defer f.deliverMu.Unlock()
	f.mu.Lock()
	f.nextID++
	id := f.nextID
	f.regs[id] = &feedReg{p: p, next: max(fromSeq, 1), deliver: deliver}
	f.mu.Unlock()
	if err := f.restart(ctx); err != nil {
		f.mu.Lock()
		delete(f.regs, id)
		f.mu.Unlock()
		return nil, err
	}
	stop := func() {
		f.mu.Lock()
		delete(f.regs, id)
		empty := len(f.regs) == 0
		cc, cons := f.cc, f.cons
		if empty {
			f.cc, f.cons = nil, nil
			f.gen++
		}
		f.mu.Unlock()
		if empty && cc != nil {
			stopOrdered(f.js, topology.EventsStream, cons, cc)
		}
	}
	return stop, nil
}

// restart recreates the consumer for the current registrations. Callers
// hold deliverMu, so no delivery of the previous consumer is in progress
// and none happens after it (the generation changes).
func (f *SharedPartitionFeed) restart(ctx context.Context) error {
	f.mu.Lock()
	f.gen++
	gen := f.gen
	old, oldCons := f.cc, f.cons
	f.cc, f.cons = nil, nil
	filters := map[int]bool{}
	start := uint64(0)
	for _, r := range f.regs {
		filters[r.p] = true
		if start == 0 || r.next < start {
			start = r.next
		}
	}
	f.mu.Unlock()
	if old != nil {
		stopOrdered(f.js, topology.EventsStream, oldCons, old)
	}
	if len(filters) == 0 {
		return nil
	}
	cfg := jetstream.OrderedConsumerConfig{}
	if len(filters)*4 < f.partitions {
		for p := range filters {
			cfg.FilterSubjects = append(cfg.FilterSubjects, topology.PartitionEventsFilter(p))
		}
	}
	if start > 1 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = start
	}
	c, err := f.js.OrderedConsumer(ctx, topology.EventsStream, cfg)
	if err != nil {
		return fmt.Errorf("events consumer: %w", err)
	}
	cc, err := c.Consume(func(m jetstream.Msg) { f.dispatch(gen, m) }, jetstream.PullMaxMessages(1000))
	if err != nil {
		return fmt.Errorf("consume events: %w", err)
	}
	f.mu.Lock()
	if f.gen == gen {
		f.cc, f.cons = cc, c
		f.mu.Unlock()
		return nil
	}
	f.mu.Unlock()
	stopOrdered(f.js, topology.EventsStream, c, cc) // superseded meanwhile
	return nil
}

// dispatch hands a message to the registrations of its partition that
// still need it.
func (f *SharedPartitionFeed) dispatch(gen int64, m jetstream.Msg) {
	md, err := m.Metadata()
	if err != nil {
		return
	}
	p, region, ok := topology.ParseStoredEventSubject(m.Subject())
	if !ok {
		return
	}
	f.deliverMu.Lock()
	defer f.deliverMu.Unlock()
	f.mu.Lock()
	if f.gen != gen {
		f.mu.Unlock()
		return // a superseded consumer
	}
	var targets []func(partition.EventMsg)
	seq := md.Sequence.Stream
	for _, r := range f.regs {
		if r.p == p && seq >= r.next {
			r.next = seq + 1
			targets = append(targets, r.deliver)
		}
	}
	f.mu.Unlock()
	if len(targets) == 0 {
		return
	}
	ev := partition.EventMsg{
		Seq: seq, Partition: p, Region: region, Data: m.Data(), Time: md.Timestamp,
		Pending: md.NumPending, FromEdge: m.Headers().Get(SourceHeader) != "",
	}
	for _, deliver := range targets {
		deliver(ev)
	}
}
