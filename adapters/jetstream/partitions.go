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
// count-shards bucket, with pipelined revision-checked writes.
type PartitionStore struct {
	js      jetstream.JetStream
	players jetstream.KeyValue
	counts  jetstream.KeyValue
	pstream jetstream.Stream

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

// NewPartitionStore opens the buckets. js should allow many pending async
// publishes (jetstream.WithPublishAsyncMaxPending) and time them out
// (jetstream.WithPublishAsyncTimeout): a write whose acknowledgement is lost
// (a server failing over) completes only through that timeout.
func NewPartitionStore(ctx context.Context, js jetstream.JetStream) (*PartitionStore, error) {
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
	s.wg.Add(3)
	go s.waitAcks(s.playerAcks)
	go s.waitAcks(s.shardAcks)
	go s.runLoader()
	return s, nil
}

// MaxInflightWrites is how many fenced player writes an owner may pipeline:
// one on a replicated players bucket (a fence check cannot be decided while
// another is being replicated), many on a single replica.
func (s *PartitionStore) MaxInflightWrites() int {
	if s.pstream.CachedInfo().Config.Replicas > 1 {
		return 1
	}
	return 4096
}

// Close stops the acknowledgement waiters once every pending write has completed.
func (s *PartitionStore) Close() {
	s.stopOnce.Do(func() {
		close(s.stop)
		s.wg.Wait()
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
// partition.ErrConflict (10071), or partition.ErrBusy (10164: on a
// replicated stream another write checking the same subject was still being
// applied; not a lost claim).
func mapWriteErr(err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
		return fmt.Errorf("%w: %w", partition.ErrConflict, err)
	}
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant {
		return fmt.Errorf("%w: %w", partition.ErrBusy, err)
	}
	if errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("%w: %w", partition.ErrConflict, err)
	}
	return err
}

func (s *PartitionStore) lastRev(ctx context.Context, subject string) (uint64, error) {
	cs, err := s.js.Stream(ctx, "KV_"+topology.CountsBucket)
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

// WritePlayer publishes a player value on condition that partition p's fence
// is still at revision fence.
func (s *PartitionStore) WritePlayer(p int, token string, value []byte, fence uint64, done func(uint64, error)) {
	s.publish(s.playerAcks, topology.PlayerSubject(p, token), value, jetstream.WithExpectLastSequenceForSubject(fence, topology.FenceSubject(p)), done)
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
