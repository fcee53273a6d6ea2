package partitiontest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/gamemodes/gamemodes/modules/partition"
)

// Store is an in-memory partition.Store. Player writes and the fence share
// one revision sequence (as the players bucket's stream does), count shards
// another. Acknowledgements run on one goroutine in the order of the
// writes; Hold keeps player acknowledgements back, and FailPlayerWrites
// makes the next player batches fail with nothing stored, so tests can
// drive an owner through slow and refused writes.
type Store struct {
	clock partition.Clock
	ttl   time.Duration

	mu       sync.Mutex
	rev      uint64 // players and fences
	shardRev uint64 // count shards
	fences   map[int]uint64
	players  map[int]map[string]storedPlayer
	shards   map[int]storedShard
	failures []error
	held     bool
	heldAcks []func()
	batches  []int // sizes of the player batches stored, in order
	sent     int   // player batches stored whose acknowledgement has not run
	maxSent  int

	acks    chan func()
	stopped chan struct{}
	once    sync.Once
}

type storedPlayer struct {
	value   []byte
	written time.Time
}

type storedShard struct {
	value []byte
	rev   uint64
}

var _ partition.Store = (*Store)(nil)

// StoreOption configures a Store.
type StoreOption func(*Store)

// WithClock sets the store's time: when players are written and expire
// (default the wall clock).
func WithClock(c partition.Clock) StoreOption { return func(s *Store) { s.clock = c } }

// WithTTL makes players not written for ttl absent at load, as the players
// bucket's TTL does (default never).
func WithTTL(ttl time.Duration) StoreOption { return func(s *Store) { s.ttl = ttl } }

// NewStore returns an empty store; Close stops its acknowledgements.
func NewStore(opts ...StoreOption) *Store {
	s := &Store{clock: partition.SystemClock{}, fences: map[int]uint64{}, players: map[int]map[string]storedPlayer{},
		shards: map[int]storedShard{}, acks: make(chan func(), 1<<16), stopped: make(chan struct{})}
	for _, o := range opts {
		o(s)
	}
	go s.runAcks()
	return s
}

func (s *Store) runAcks() {
	for {
		select {
		case f := <-s.acks:
			f()
		case <-s.stopped:
			return
		}
	}
}

// Close stops acknowledging writes.
func (s *Store) Close() { s.once.Do(func() { close(s.stopped) }) }

// ack queues f behind the acknowledgements before it. Callers hold mu, so
// the order of the queue is the order of the writes.
func (s *Store) ack(f func()) {
	select {
	case s.acks <- f:
	case <-s.stopped:
	}
}

// Claim writes partition p's fence.
func (s *Store) Claim(ctx context.Context, p int, ownerID string) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rev++
	s.fences[p] = s.rev
	return s.rev, nil
}

// LoadPartition hands over partition p's live players in one batch, then
// its shard.
func (s *Store) LoadPartition(ctx context.Context, p int, add func([]partition.StoredPlayer)) (partition.Snapshot, error) {
	if err := ctx.Err(); err != nil {
		return partition.Snapshot{}, err
	}
	now := s.clock.Now()
	s.mu.Lock()
	var batch []partition.StoredPlayer
	for _, token := range slices.Sorted(maps.Keys(s.players[p])) {
		sp := s.players[p][token]
		if s.ttl > 0 && !sp.written.Add(s.ttl).After(now) {
			continue
		}
		batch = append(batch, partition.StoredPlayer{Token: token, Value: sp.value, Written: sp.written})
	}
	sh := s.shards[p]
	s.mu.Unlock()
	if len(batch) > 0 {
		add(batch)
	}
	return partition.Snapshot{Shard: sh.value, ShardRev: sh.rev}, nil
}

// WritePlayers stores the batch if p's fence is still at fence: all or
// nothing.
func (s *Store) WritePlayers(p int, batch []partition.PlayerWrite, fence uint64, done func(uint64, error)) {
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.failures) > 0 {
		err := s.failures[0]
		s.failures = s.failures[1:]
		s.ack(func() { done(0, err) })
		return
	}
	if cur := s.fences[p]; cur != fence {
		s.ack(func() {
			done(0, fmt.Errorf("%w: partition %d fenced at %d, write expected %d", partition.ErrConflict, p, cur, fence))
		})
		return
	}
	if s.players[p] == nil {
		s.players[p] = map[string]storedPlayer{}
	}
	for _, w := range batch {
		s.rev++
		s.players[p][w.Token] = storedPlayer{value: w.Value, written: now}
	}
	rev := s.rev
	s.batches = append(s.batches, len(batch))
	s.sent++
	s.maxSent = max(s.maxSent, s.sent)
	f := func() {
		s.mu.Lock()
		s.sent--
		s.mu.Unlock()
		done(rev, nil)
	}
	if s.held {
		s.heldAcks = append(s.heldAcks, f)
		return
	}
	s.ack(f)
}

// WriteShard stores p's count shard if it is still at expectRev (0: none yet).
func (s *Store) WriteShard(p int, value []byte, expectRev uint64, done func(uint64, error)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.shards[p].rev
	if cur != expectRev {
		s.ack(func() {
			done(0, fmt.Errorf("%w: shard %d at %d, write expected %d", partition.ErrConflict, p, cur, expectRev))
		})
		return
	}
	s.shardRev++
	rev := s.shardRev
	s.shards[p] = storedShard{value: value, rev: rev}
	s.ack(func() { done(rev, nil) })
}

// Hold keeps the acknowledgements of player writes back (the writes are
// stored) until Release.
func (s *Store) Hold() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.held = true
}

// Release sends the held acknowledgements, in order, and stops holding.
func (s *Store) Release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.heldAcks {
		s.ack(f)
	}
	s.held, s.heldAcks = false, nil
}

// FailPlayerWrites makes the next len(errs) player batches fail with
// errs, in order, storing nothing.
func (s *Store) FailPlayerWrites(errs ...error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures = append(s.failures, errs...)
}

// Player returns token's stored value in partition p.
func (s *Store) Player(p int, token string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sp, ok := s.players[p][token]
	return sp.value, ok
}

// Players is how many players partition p has stored.
func (s *Store) Players(p int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.players[p])
}

// Shard returns p's stored count shard (nil if none) and its revision.
func (s *Store) Shard(p int) ([]byte, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.shards[p].value, s.shards[p].rev
}

// Batches returns the sizes of the player batches stored, in order.
func (s *Store) Batches() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.batches)
}

// MaxUnacknowledged is the most player batches stored and not yet
// acknowledged at once.
func (s *Store) MaxUnacknowledged() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxSent
}
