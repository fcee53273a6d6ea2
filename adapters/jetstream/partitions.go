package jetstream

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/gamemodes/gamemodes/modules/partition"
	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Headers of the KV and TTL machinery.
const (
	hdrMarkerReason = "Nats-Marker-Reason" // set on the server's expiry markers
	hdrKVOperation  = "KV-Operation"       // DEL or PURGE on KV deletes
)

// isDeletion reports whether a players stream message removes its key: a
// delete or purge, or the server's expiry marker.
func isDeletion(h nats.Header) bool {
	return h.Get(hdrKVOperation) != "" || h.Get(hdrMarkerReason) != ""
}

// PartitionStore implements partition.Store on the players bucket and the
// count-shards bucket. Player writes are fenced atomic batches on a
// replicated bucket (one batch of a partition in flight: the server decides
// a fence check only once the previous fenced write is applied) and
// pipelined single fenced writes on a single replica, where the server
// checks each at once and a batch would cost more (it stages every batch in
// a file store of its own: measured, batches of 100 persisted 36,000
// writes/s there against 64,000 single writes).
type PartitionStore struct {
	js      jetstream.JetStream
	players jetstream.KeyValue
	counts  jetstream.KeyValue
	pstream jetstream.Stream
	batches *batchCommitter // nil: single writes
	limits  partition.WriteLimits

	playerAcks chan pendingAck
	shardAcks  chan pendingAck
	loads      chan *loadRequest
	stopOnce   sync.Once
	stop       chan struct{}
	wg         sync.WaitGroup
}

type pendingAck struct {
	fut  jetstream.PubAckFuture
	done func(uint64, error)
}

// PartitionStoreOption tunes a PartitionStore.
type PartitionStoreOption func(*storeOptions)

type storeOptions struct {
	atomic   *bool
	maxBatch int
}

// WithAtomicBatches chooses the player write path instead of the replicas
// deciding it (benchmarks compare the two).
func WithAtomicBatches(on bool) PartitionStoreOption {
	return func(o *storeOptions) { o.atomic = &on }
}

// WithMaxBatch sets the most players in one batch (DefaultPlayerBatch).
func WithMaxBatch(n int) PartitionStoreOption {
	return func(o *storeOptions) { o.maxBatch = n }
}

// NewPartitionStore opens the buckets. js should allow many pending async
// publishes (jetstream.WithPublishAsyncMaxPending) and time them out
// (jetstream.WithPublishAsyncTimeout): a write whose acknowledgement is lost
// (a server failing over) completes only through that timeout. On a
// replicated players bucket it checks that the server takes atomic batches
// of the configured size, and fails with what to change if not.
func NewPartitionStore(ctx context.Context, js jetstream.JetStream, opts ...PartitionStoreOption) (*PartitionStore, error) {
	o := storeOptions{maxBatch: DefaultPlayerBatch}
	for _, opt := range opts {
		opt(&o)
	}
	players, err := js.KeyValue(ctx, topology.PlayersBucket)
	if err != nil {
		return nil, fmt.Errorf("players bucket: %w", err)
	}
	counts, err := js.KeyValue(ctx, topology.CountsBucket)
	if err != nil {
		return nil, fmt.Errorf("counts bucket: %w", err)
	}
	ps, err := js.Stream(ctx, topology.PlayersStream)
	if err != nil {
		return nil, fmt.Errorf("players stream: %w", err)
	}
	s := &PartitionStore{js: js, players: players, counts: counts, pstream: ps,
		playerAcks: make(chan pendingAck, 65536), shardAcks: make(chan pendingAck, 4096),
		loads: make(chan *loadRequest), stop: make(chan struct{})}
	atomic := ps.CachedInfo().Config.Replicas > 1
	if o.atomic != nil {
		atomic = *o.atomic
	}
	if atomic {
		if err := checkBatchLimits(js.Conn(), o.maxBatch); err != nil {
			return nil, err
		}
		if s.batches, err = newBatchCommitter(js.Conn()); err != nil {
			return nil, err
		}
		s.limits = partition.WriteLimits{MaxBatch: o.maxBatch, MaxInflight: 1}
	} else {
		// Up to 4,096 single writes in flight per partition.
		s.limits = partition.WriteLimits{MaxBatch: 256, MaxInflight: 16}
	}
	s.wg.Add(3)
	go s.waitAcks(s.playerAcks)
	go s.waitAcks(s.shardAcks)
	go s.runLoader()
	return s, nil
}

// PlayerWriteLimits is how owners should batch their player writes on
// this store: atomic batches one at a time per partition, or single writes
// pipelined in groups.
func (s *PartitionStore) PlayerWriteLimits() partition.WriteLimits { return s.limits }

// AtomicBatches reports whether player writes are atomic batches.
func (s *PartitionStore) AtomicBatches() bool { return s.batches != nil }

// Close stops the acknowledgement waiters once every pending write has completed.
func (s *PartitionStore) Close() {
	s.stopOnce.Do(func() {
		close(s.stop)
		s.wg.Wait()
		if s.batches != nil {
			s.batches.close()
		}
	})
}

// waitAcks completes writes in publish order: a stream acknowledges in that order.
func (s *PartitionStore) waitAcks(ch chan pendingAck) {
	defer s.wg.Done()
	for {
		select {
		case pa := <-ch:
			select {
			case ack := <-pa.fut.Ok():
				pa.done(ack.Sequence, nil)
			case err := <-pa.fut.Err():
				pa.done(0, mapWriteErr(err))
			case <-s.stop:
				pa.done(0, errors.New("partition store closed before the write was acknowledged"))
				return
			}
		case <-s.stop:
			return
		}
	}
}

// mapWriteErr turns the engine's revision-check failures into
// partition.ErrConflict (10071), and refusals that stored nothing and pass
// into partition.ErrBusy: 10164 (on a replicated stream another write
// checking the same subject was still being applied; not a lost claim),
// 10210 (the server has too many atomic batches open), 10176 (a batch cut
// short, as by a leader change between its messages) and 10174 (atomic
// batches switched off for a moment while a process updates the bucket).
func mapWriteErr(err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
		return fmt.Errorf("%w: %w", partition.ErrConflict, err)
	}
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case jetstream.JSErrCodeStreamWrongLastSequenceConstant, jsErrAtomicTooManyOpen, jsErrAtomicIncomplete, jsErrAtomicDisabled:
			return fmt.Errorf("%w: %w", partition.ErrBusy, err)
		}
	}
	if errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("%w: %w", partition.ErrConflict, err)
	}
	return err
}

func (s *PartitionStore) lastRev(ctx context.Context, subject string) (uint64, error) {
	cs, err := s.js.Stream(ctx, topology.BucketStream(topology.CountsBucket))
	if err != nil {
		return 0, err
	}
	m, err := cs.GetLastMsgForSubject(ctx, subject)
	if err != nil {
		return 0, err
	}
	return m.Sequence, nil
}

// Claim writes partition p's fence (never expiring) and returns its revision.
func (s *PartitionStore) Claim(ctx context.Context, p int, ownerID string) (uint64, error) {
	msg := &nats.Msg{Subject: topology.FenceSubject(p), Data: []byte(ownerID), Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgTTLHeader, "never")
	ack, err := s.js.PublishMsg(ctx, msg)
	if err != nil {
		return 0, fmt.Errorf("write fence: %w", err)
	}
	return ack.Sequence, nil
}

// WritePlayers stores player values of partition p on condition that its
// fence is still at revision fence: one atomic batch on a replicated
// bucket, else pipelined single writes, each fenced.
func (s *PartitionStore) WritePlayers(p int, writes []partition.PlayerWrite, fence uint64, done func(uint64, error)) {
	if len(writes) == 0 {
		done(0, nil)
		return
	}
	if s.batches != nil {
		s.batches.commit(p, writes, fence, done)
		return
	}
	g := &writeGroup{left: len(writes), done: done}
	expect := jetstream.WithExpectLastSequenceForSubject(fence, topology.FenceSubject(p))
	for i, w := range writes {
		s.publish(s.playerAcks, topology.PlayerSubject(p, w.Token), w.Value, expect, g.ack)
		if g.failed() {
			// Send no more: the owner fails on the first error and reloads.
			g.giveUp(len(writes) - i - 1)
			return
		}
	}
}

// writeGroup completes a group of single writes once each is acknowledged
// or given up, with the first error met. Acknowledgements arrive on one
// goroutine, in order; a failed send on the sender's.
type writeGroup struct {
	mu   sync.Mutex
	left int
	rev  uint64
	err  error
	done func(uint64, error)
}

func (g *writeGroup) ack(rev uint64, err error) {
	g.mu.Lock()
	if err != nil && g.err == nil {
		g.err = err
	}
	g.rev = max(g.rev, rev)
	g.left--
	finished := g.left == 0
	g.mu.Unlock()
	if finished {
		g.done(g.rev, g.err)
	}
}

// failed reports whether a write of the group has failed.
func (g *writeGroup) failed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err != nil
}

// giveUp counts n writes that will not be sent as done.
func (g *writeGroup) giveUp(n int) {
	g.mu.Lock()
	g.left -= n
	finished := g.left == 0
	g.mu.Unlock()
	if finished {
		g.done(g.rev, g.err)
	}
}

// WriteShard publishes a count shard expecting revision expectRev.
func (s *PartitionStore) WriteShard(p int, value []byte, expectRev uint64, done func(uint64, error)) {
	s.publish(s.shardAcks, "$KV."+topology.CountsBucket+"."+topology.ShardKey(p), value, jetstream.WithExpectLastSequencePerSubject(expectRev), done)
}

func (s *PartitionStore) publish(acks chan pendingAck, subject string, value []byte, expect jetstream.PublishOpt, done func(uint64, error)) {
	fut, err := s.js.PublishMsgAsync(&nats.Msg{Subject: subject, Data: value}, expect)
	if err != nil {
		done(0, fmt.Errorf("publish %s: %w", subject, err))
		return
	}
	select {
	case acks <- pendingAck{fut: fut, done: done}:
	case <-s.stop:
		done(0, fmt.Errorf("publish %s: store closed", subject))
	}
}
