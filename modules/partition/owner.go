// Package partition runs partition owners: the single writer of one
// partition's players and count shard. An owner loads its players, applies
// the partition's events in stream order with revision-checked writes,
// removes expired players, and flushes the partition's absolute counts.
package partition

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/gamemodes/gamemodes/modules/domain"
)

// ErrConflict is wrapped by Store writes whose expected revision was stale.
var ErrConflict = errors.New("revision conflict")

// ErrFenced means another owner wrote this partition: this owner lost it.
var ErrFenced = errors.New("partition fenced: another owner wrote")

// StoredPlayer is one player key as loaded.
type StoredPlayer struct {
	Token string
	Rev   uint64
	Value []byte
}

// Snapshot is a partition's stored state at load time.
type Snapshot struct {
	Players []StoredPlayer
	// Shard is the stored count shard value (nil if none) and ShardRev its revision.
	Shard    []byte
	ShardRev uint64
	// PlayersSeq is the players stream's last sequence before the load:
	// expiry markers after it are read from the expiry feed.
	PlayersSeq uint64
}

// EntryKind classifies the latest stored message of a player key.
type EntryKind uint8

// Kinds of LastPlayerEntry.
const (
	EntryNone    EntryKind = iota // no message at all: expect revision 0
	EntryValue                    // a player value
	EntryExpired                  // an expiry marker
	EntryDeleted                  // a delete or purge
)

// Entry is the latest stored message of a player key.
type Entry struct {
	Kind  EntryKind
	Rev   uint64
	Value []byte // the player value when Kind is EntryValue
}

// Store is what an owner needs of the players bucket and count shards.
// Write callbacks may run on any goroutine, once each, in write order per key.
type Store interface {
	LoadPartition(ctx context.Context, p int) (Snapshot, error)
	WritePlayer(p int, token string, value []byte, expectRev uint64, done func(rev uint64, err error))
	WriteShard(p int, value []byte, expectRev uint64, done func(rev uint64, err error))
	LastPlayerEntry(ctx context.Context, p int, token string) (Entry, error)
}

// EventMsg is one stored event of a partition.
type EventMsg struct {
	Seq      uint64
	Subject  string
	Data     []byte
	Time     time.Time
	Pending  uint64
	FromEdge bool
}

// Expiry is an expiry marker of a player key.
type Expiry struct {
	Token string
	Seq   uint64
}

// Feed delivers a partition's events and expiry markers from a sequence on.
// deliver may block; it is called from one goroutine per subscription.
type Feed interface {
	Events(ctx context.Context, p int, fromSeq uint64, deliver func(EventMsg)) (stop func(), err error)
	Expiries(ctx context.Context, p int, fromSeq uint64, deliver func(Expiry)) (stop func(), err error)
}

// OwnerConfig tunes an owner.
type OwnerConfig struct {
	// OwnerID names this process in shards and logs.
	OwnerID string
	// Partitions is the partition count of the stream.
	Partitions int
	// PlayerTTL is the players bucket TTL: events older than it are not applied.
	PlayerTTL time.Duration
	// MaxInflight bounds unacknowledged player writes per owner.
	MaxInflight int
	// DrainTimeout bounds the wait for in-flight writes at shutdown.
	DrainTimeout time.Duration
}

type applied struct {
	typ  domain.EventType
	slot domain.Slot
	seq  uint64
	mark *mark
}

type mark struct {
	seq  uint64
	done bool
}

type player struct {
	durable  domain.PlayerState // as last acknowledged by the store
	rev      uint64             // store revision of durable; 0 = no message
	cur      domain.PlayerState // durable plus inflight and pending events
	writing  bool
	inflight []applied // events covered by the write in flight
	pending  []applied // events applied after it was sent
}

// Owner owns one partition for the duration of Run.
type Owner struct {
	p       int
	cfg     OwnerConfig
	catalog *domain.Catalog
	store   Store
	feed    Feed
	metrics *Metrics
	log     *slog.Logger
	now     func() time.Time

	players  map[string]*player
	counts   domain.Counts
	marks    []*mark // unacknowledged event writes in stream order
	lastSeq  uint64  // last event sequence handled
	inflight int

	shardRev      uint64
	shardWriting  bool
	shardDirty    bool
	flushedSeq    uint64 // applied sequence in the last acknowledged shard
	shardSentSeq  uint64
	loadedApplied uint64
	expirySeq     uint64

	inbox    chan func()
	events   chan EventMsg
	expiries chan Expiry
	done     chan struct{}
	err      error
}

// NewOwner prepares an owner of partition p. Nothing happens until Run.
func NewOwner(p int, cfg OwnerConfig, catalog *domain.Catalog, store Store, feed Feed, metrics *Metrics, log *slog.Logger) *Owner {
	if cfg.MaxInflight <= 0 {
		cfg.MaxInflight = 4096
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 5 * time.Second
	}
	return &Owner{
		p: p, cfg: cfg, catalog: catalog, store: store, feed: feed, metrics: metrics,
		log: log.With("partition", p), now: time.Now,
		inbox:    make(chan func(), cfg.MaxInflight+16),
		events:   make(chan EventMsg, 512),
		expiries: make(chan Expiry, 256),
		done:     make(chan struct{}),
	}
}

// post runs f on the owner's goroutine.
func (o *Owner) post(f func()) {
	select {
	case o.inbox <- f:
	case <-o.done:
	}
}

// Run loads the partition and applies its events until ctx ends (then it
// finishes in-flight writes and flushes the shard) or ownership is lost or
// a store error happens (then it returns the error; the caller reloads).
func (o *Owner) Run(ctx context.Context) error {
	defer close(o.done)
	started := o.now()
	if err := o.load(ctx); err != nil {
		return err
	}
	o.metrics.loadSeconds.Observe(o.now().Sub(started).Seconds())
	o.metrics.owned.WithLabelValues(o.label()).Set(1)
	defer o.metrics.owned.WithLabelValues(o.label()).Set(0)
	o.metrics.players.WithLabelValues(o.label()).Set(float64(len(o.players)))

	// Claim: write the recomputed shard first, so a previous owner's next
	// shard write fails its revision check.
	o.shardDirty = true
	o.flush()

	feedCtx, stopFeeds := context.WithCancel(context.Background())
	defer stopFeeds()
	stopExp, err := o.feed.Expiries(feedCtx, o.p, o.expirySeq+1, func(x Expiry) {
		select {
		case o.expiries <- x:
		case <-o.done:
		}
	})
	if err != nil {
		return fmt.Errorf("partition %d expiry feed: %w", o.p, err)
	}
	defer stopExp()
	stopEv, err := o.feed.Events(feedCtx, o.p, o.loadedApplied+1, func(m EventMsg) {
		select {
		case o.events <- m:
		case <-o.done:
		}
	})
	if err != nil {
		return fmt.Errorf("partition %d event feed: %w", o.p, err)
	}
	defer stopEv()
	return o.loop(ctx)
}

func (o *Owner) label() string { return fmt.Sprint(o.p) }

func (o *Owner) load(ctx context.Context) error {
	snap, err := o.store.LoadPartition(ctx, o.p)
	if err != nil {
		return fmt.Errorf("load partition %d: %w", o.p, err)
	}
	o.players = make(map[string]*player, len(snap.Players))
	o.counts = domain.NewCounts(o.catalog)
	for _, sp := range snap.Players {
		st, err := o.catalog.DecodePlayer(sp.Value)
		if err != nil {
			o.metrics.badStoredPlayers.Inc()
			if !errors.Is(err, domain.ErrUnknownSlot) {
				o.log.Warn("stored player unreadable; treated as absent", "token", sp.Token, "err", err)
			}
		}
		o.players[sp.Token] = &player{durable: st, cur: st, rev: sp.Rev}
		if st.Present {
			o.counts.Add(st.Slot, 1)
		}
	}
	o.shardRev = snap.ShardRev
	if snap.Shard != nil {
		if sh, err := domain.UnmarshalShard(snap.Shard); err == nil {
			o.loadedApplied = sh.AppliedSeq
		} else {
			o.log.Warn("stored count shard unreadable; recomputed", "err", err)
		}
	}
	o.lastSeq = o.loadedApplied
	o.flushedSeq = o.loadedApplied
	o.expirySeq = snap.PlayersSeq
	o.log.Info("partition loaded", "players", len(o.players), "applied_seq", o.loadedApplied)
	return nil
}
