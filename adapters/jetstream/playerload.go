package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gamemodes/gamemodes/modules/partition"
	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/nats-io/nats.go/jetstream"
)

// Loading players: a partition's players are the last value of every key
// "<p>.<token>" of the players bucket. A filtered watch per partition makes
// the server scan the whole interleaved players stream for each partition
// (BenchmarkLoadPartitions: about 100,000 players/s for 32 partitions, four
// at a time), while one ordered consumer reading the whole stream delivers
// about 500,000 messages/s. So loads requested at about the same time (a
// worker taking many partitions over at start or in a rebalance) share one
// pass over the stream; a few partitions alone use filtered watches.
const (
	// loadGatherIdle is how long the loader waits for more load requests
	// after the last one before it starts reading.
	loadGatherIdle = 20 * time.Millisecond
	// loadGatherMax bounds the whole gathering time.
	loadGatherMax = 250 * time.Millisecond
	// scanMinPartitions is the fewest partitions loaded together for which
	// one pass over the whole stream is cheaper than a watch per partition.
	scanMinPartitions = 4
	// filteredLoads bounds concurrent filtered watches: each floods the
	// connection with its partition's players.
	filteredLoads = 4
	// loadBatch is how many players are handed to an owner at once.
	loadBatch = 1024
)

var errStoreClosed = errors.New("partition store closed")

// loadRequest is one owner waiting for its partition's players.
type loadRequest struct {
	p       int
	ctx     context.Context
	batches chan []partition.StoredPlayer // closed when every player was handed over
	done    chan error                    // then the outcome, buffered
	pending []partition.StoredPlayer
	gone    bool // the owner gave up (its context ended)
}

// hand passes a batch of players to the owner unless it gave up.
func (r *loadRequest) hand(b []partition.StoredPlayer) {
	if r.gone || len(b) == 0 {
		return
	}
	select {
	case r.batches <- b:
	case <-r.ctx.Done():
		r.gone = true
	}
}

// add queues one player, handing a full batch over.
func (r *loadRequest) add(sp partition.StoredPlayer) {
	if r.pending == nil {
		r.pending = make([]partition.StoredPlayer, 0, loadBatch)
	}
	r.pending = append(r.pending, sp)
	if len(r.pending) == loadBatch {
		r.hand(r.pending)
		r.pending = nil
	}
}

// finish hands the last batch over and reports the outcome.
func (r *loadRequest) finish(err error) {
	if err == nil {
		r.hand(r.pending)
	}
	r.pending = nil
	close(r.batches)
	r.done <- err
}

// LoadPartition reads every live player of partition p, handing them to add
// in batches on the caller's goroutine, and then the partition's count shard.
func (s *PartitionStore) LoadPartition(ctx context.Context, p int, add func([]partition.StoredPlayer)) (partition.Snapshot, error) {
	req := &loadRequest{p: p, ctx: ctx, batches: make(chan []partition.StoredPlayer, 16), done: make(chan error, 1)}
	select {
	case s.loads <- req:
	case <-ctx.Done():
		return partition.Snapshot{}, fmt.Errorf("load players: %w", ctx.Err())
	case <-s.stop:
		return partition.Snapshot{}, errStoreClosed
	}
handing:
	for {
		select {
		case b, ok := <-req.batches:
			if !ok {
				break handing
			}
			add(b)
		case <-ctx.Done():
			return partition.Snapshot{}, fmt.Errorf("load players: %w", ctx.Err())
		}
	}
	if err := <-req.done; err != nil {
		return partition.Snapshot{}, fmt.Errorf("load players: %w", err)
	}
	return s.loadShard(ctx, p)
}

// loadShard reads partition p's count shard and its revision.
func (s *PartitionStore) loadShard(ctx context.Context, p int) (partition.Snapshot, error) {
	var snap partition.Snapshot
	e, err := s.counts.Get(ctx, topology.ShardKey(p))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		// No shard yet; a deleted one still needs its revision for CAS.
		if last, lerr := s.lastRev(ctx, "$KV."+topology.CountsBucket+"."+topology.ShardKey(p)); lerr == nil {
			snap.ShardRev = last
		}
	case err != nil:
		return partition.Snapshot{}, fmt.Errorf("get count shard: %w", err)
	default:
		snap.Shard, snap.ShardRev = e.Value(), e.Revision()
	}
	return snap, nil
}

// runLoader gathers load requests and serves them: together in one pass
// over the players stream when there are enough, else one filtered watch
// each.
func (s *PartitionStore) runLoader() {
	defer s.wg.Done()
	watches := make(chan struct{}, filteredLoads)
	var next []*loadRequest
	for {
		if len(next) == 0 {
			select {
			case r := <-s.loads:
				next = append(next, r)
			case <-s.stop:
				return
			}
		}
		next = s.gather(next)
		// One request per partition in a pass; a second one waits for the next.
		var batch, later []*loadRequest
		seen := map[int]bool{}
		for _, r := range next {
			if seen[r.p] {
				later = append(later, r)
				continue
			}
			seen[r.p] = true
			batch = append(batch, r)
		}
		next = later
		if len(batch) >= scanMinPartitions {
			s.scanPlayers(batch)
			continue
		}
		for _, r := range batch {
			select {
			case watches <- struct{}{}:
			case <-s.stop:
				r.finish(errStoreClosed)
				continue
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer func() { <-watches }()
				r.finish(s.watchPlayers(r))
			}()
		}
	}
}

// gather adds the requests arriving until none came for loadGatherIdle.
func (s *PartitionStore) gather(reqs []*loadRequest) []*loadRequest {
	deadline := time.NewTimer(loadGatherMax)
	defer deadline.Stop()
	idle := time.NewTimer(loadGatherIdle)
	defer idle.Stop()
	for {
		select {
		case r := <-s.loads:
			reqs = append(reqs, r)
			idle.Reset(loadGatherIdle)
		case <-idle.C:
			return reqs
		case <-deadline.C:
			return reqs
		case <-s.stop:
			return reqs
		}
	}
}

// watchPlayers reads one partition's players with a filtered watch.
func (s *PartitionStore) watchPlayers(r *loadRequest) error {
	ctx, cancel := s.storeContext(r.ctx)
	defer cancel()
	w, err := s.players.Watch(ctx, topology.PartitionPlayersFilter(r.p), jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("watch players: %w", err)
	}
	defer func() { _ = w.Stop() }()
	prefix := len(topology.PartitionPlayersFilter(r.p)) - 1 // "<p>."
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("watch players: closed")
			}
			if e == nil {
				return nil
			}
			// Clone the token: a substring would keep the whole received subject alive.
			r.add(partition.StoredPlayer{Token: strings.Clone(e.Key()[prefix:]), Value: e.Value(), Written: e.Created()})
		case <-ctx.Done():
			return fmt.Errorf("watch players: %w", ctx.Err())
		}
	}
}

// storeContext is parent, also ended when the store closes.
func (s *PartitionStore) storeContext(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// scanPlayers reads the whole players stream once, up to its last message
// when the pass starts, and hands each requested partition its players.
// Nothing else writes these partitions meanwhile: their owners hold the
// fences. A key expiring during the pass is expired by its owner's wheel.
func (s *PartitionStore) scanPlayers(reqs []*loadRequest) {
	ctx, cancel := s.storeContext(context.Background())
	defer cancel()
	err := s.scan(ctx, reqs)
	for _, r := range reqs {
		r.finish(err)
	}
}

func (s *PartitionStore) scan(ctx context.Context, reqs []*loadRequest) error {
	byPartition := map[int]*loadRequest{}
	for _, r := range reqs {
		byPartition[r.p] = r
	}
	info, err := s.pstream.Info(ctx)
	if err != nil {
		return fmt.Errorf("players stream info: %w", err)
	}
	if info.State.Msgs == 0 {
		return nil
	}
	last := info.State.LastSeq
	c, err := s.js.OrderedConsumer(ctx, topology.PlayersStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return fmt.Errorf("read players stream: %w", err)
	}
	prefix := "$KV." + topology.PlayersBucket + "."
	// The callback runs under mu, so once ended is closed (or the pass is
	// given up) no player is added any more.
	var mu sync.Mutex
	delivered, end := 0, false
	ended := make(chan struct{})
	finish := func() {
		if !end {
			end = true
			close(ended)
		}
	}
	cc, err := c.Consume(func(m jetstream.Msg) {
		mu.Lock()
		defer mu.Unlock()
		md, err := m.Metadata()
		if end || err != nil {
			return
		}
		key := strings.TrimPrefix(m.Subject(), prefix)
		if dot := strings.IndexByte(key, '.'); dot > 0 {
			if p, err := strconv.Atoi(key[:dot]); err == nil {
				if r := byPartition[p]; r != nil && !isDeletion(m.Headers()) {
					// Clone the token: a substring would keep the whole received subject alive.
					r.add(partition.StoredPlayer{Token: strings.Clone(key[dot+1:]), Value: m.Data(), Written: md.Timestamp})
				}
			}
		}
		delivered++
		if md.Sequence.Stream >= last || md.NumPending == 0 {
			finish()
		}
	}, jetstream.PullMaxMessages(4096))
	if err != nil {
		return fmt.Errorf("read players stream: %w", err)
	}
	defer func() {
		stopOrdered(s.js, topology.PlayersStream, c, cc)
		mu.Lock()
		finish()
		mu.Unlock()
	}()
	// The last message may be deleted (expired) before it is read: when
	// nothing arrives for a while, ask the consumer whether anything is left.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	seen := -1
	for {
		select {
		case <-ended:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			mu.Lock()
			n := delivered
			mu.Unlock()
			if n != seen {
				seen = n
				continue
			}
			ci, err := c.Info(ctx)
			if err != nil {
				return fmt.Errorf("players stream consumer: %w", err)
			}
			if ci.NumPending == 0 {
				mu.Lock()
				finish()
				mu.Unlock()
			}
		}
	}
}
