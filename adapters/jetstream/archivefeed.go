package jetstream

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gamemodes/gamemodes/modules/archive"
	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ArchiveConsumer is the durable consumer of the archiver on the events stream.
const ArchiveConsumer = "archiver"

// ArchiveFeedConfig configures the archiver's consumer. Zero fields take the defaults.
type ArchiveFeedConfig struct {
	// Durable is the consumer name (default "archiver").
	Durable string
	// AckWait is how long a delivered message may stay unacknowledged before
	// the server delivers it again (default 30s). The feed drops a message
	// delivered again (it had it); a batch slower than this only costs
	// those deliveries.
	AckWait time.Duration
	// MaxAckPending bounds the delivered, unacknowledged messages (default 20000).
	MaxAckPending int
	// Prefetch is how many messages are pulled ahead of the archiver (default 5000).
	Prefetch int
}

// Defaults fills zero fields with the defaults.
func (c ArchiveFeedConfig) Defaults() ArchiveFeedConfig {
	if c.Durable == "" {
		c.Durable = ArchiveConsumer
	}
	if c.AckWait == 0 {
		c.AckWait = 30 * time.Second
	}
	if c.MaxAckPending == 0 {
		c.MaxAckPending = 20000
	}
	if c.Prefetch == 0 {
		c.Prefetch = 5000
	}
	return c
}

// ArchiveConsumerConfig is the archiver's durable consumer: every message of
// the events stream from the first, acknowledged cumulatively (AckAll) once
// per archived batch.
//
// A cumulative acknowledgement also covers messages the archiver never
// received (deliveries lost in a reconnect, or in hand of a predecessor
// that died): that is safe because the archiver does not resume from the
// consumer's acknowledgements but from its checkpoint in Postgres, and
// positions the consumer there (Open: a consumer reset, nats-server 2.14+)
// whenever it starts or finds a delivery missing.
func ArchiveConsumerConfig(c ArchiveFeedConfig) jetstream.ConsumerConfig {
	c = c.Defaults()
	return jetstream.ConsumerConfig{
		Durable:       c.Durable,
		Description:   "gamemodes archiver: copies every event into Postgres",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckAllPolicy,
		AckWait:       c.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: c.MaxAckPending,
	}
}

// ArchiveFeed is the archiver's archive.Source on the events stream: the
// durable pull consumer "archiver", positioned by the active archiver at
// its checkpoint. It delivers in stream order without gaps: a message
// delivered again is dropped, and a jump over sequences the stream still
// holds (deliveries lost) positions the consumer back at the first missing
// one.
type ArchiveFeed struct {
	js         jetstream.JetStream
	cfg        ArchiveFeedConfig
	partitions int

	mu     sync.Mutex
	cons   jetstream.Consumer
	iter   jetstream.MessagesContext
	gen    uint64 // counts Opens (and repositionings): a message of an older one is not acknowledged
	next   uint64 // the stream sequence Next must return next
	open   bool
	closed bool
}

var _ archive.Source = (*ArchiveFeed)(nil)

// feedRef is an archive.Message's handle: the JetStream message and the
// positioning it was delivered under.
type feedRef struct {
	msg jetstream.Msg
	gen uint64
}

// NewArchiveFeed makes sure the archiver's durable consumer exists on the
// events stream (which must exist: topology.Ensure), creating it when
// missing, and returns the feed. An existing consumer is brought to
// ArchiveConsumerConfig by the archiver that opens the feed.
func NewArchiveFeed(ctx context.Context, js jetstream.JetStream, cfg ArchiveFeedConfig) (*ArchiveFeed, error) {
	cfg = cfg.Defaults()
	topo, err := topology.Load(ctx, js)
	if err != nil {
		return nil, fmt.Errorf("archive feed: %w", err)
	}
	cons, err := js.Consumer(ctx, topology.EventsStream, cfg.Durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		cons, err = js.CreateConsumer(ctx, topology.EventsStream, ArchiveConsumerConfig(cfg))
		if errors.Is(err, jetstream.ErrConsumerExists) {
			cons, err = js.Consumer(ctx, topology.EventsStream, cfg.Durable) // created by another archiver meanwhile
		}
	}
	if err != nil {
		return nil, fmt.Errorf("archive feed: consumer %s: %w", cfg.Durable, err)
	}
	return &ArchiveFeed{js: js, cfg: cfg, cons: cons, partitions: topo.Partitions}, nil
}

// Partitions is the events stream's partition count (archive.Config.Partitions).
func (f *ArchiveFeed) Partitions() int { return f.partitions }

// Identity is the events stream's creation time: a stream deleted and
// created again has another.
func (f *ArchiveFeed) Identity(ctx context.Context) (string, error) {
	s, err := f.js.Stream(ctx, topology.EventsStream)
	if err != nil {
		return "", fmt.Errorf("archive feed: stream info: %w", err)
	}
	return s.CachedInfo().Created.UTC().Format(time.RFC3339Nano), nil
}

// AckFloor is the consumer's acknowledgement floor.
func (f *ArchiveFeed) AckFloor(ctx context.Context) (uint64, error) {
	info, err := f.consumer().Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("archive feed: consumer info: %w", err)
	}
	return info.AckFloor.Stream, nil
}

// Open positions the durable consumer at the message after sequence after
// (a consumer reset: its pending deliveries are forgotten and its ack
// floor becomes after) and starts pulling. A consumer of an older version
// (acknowledged message by message) is deleted and created again first:
// its acknowledgement policy cannot be changed in place.
func (f *ArchiveFeed) Open(ctx context.Context, after uint64) error {
	f.Release()
	if err := f.ensurePolicy(ctx); err != nil {
		return err
	}
	return f.position(ctx, after)
}

// ensurePolicy brings the durable consumer to ArchiveConsumerConfig.
func (f *ArchiveFeed) ensurePolicy(ctx context.Context) error {
	want := ArchiveConsumerConfig(f.cfg)
	info, err := f.consumer().Info(ctx)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
	case err != nil:
		return fmt.Errorf("archive feed: consumer info: %w", err)
	case info.Config.AckPolicy != want.AckPolicy:
		if err := f.js.DeleteConsumer(ctx, topology.EventsStream, f.cfg.Durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("archive feed: replace consumer %s of acknowledgement policy %v: %w", f.cfg.Durable, info.Config.AckPolicy, err)
		}
	case info.Config.AckWait == want.AckWait && info.Config.MaxAckPending == want.MaxAckPending && info.Config.MaxDeliver == want.MaxDeliver:
		return nil
	}
	cons, err := f.js.CreateOrUpdateConsumer(ctx, topology.EventsStream, want)
	if err != nil {
		return fmt.Errorf("archive feed: consumer %s: %w", f.cfg.Durable, err)
	}
	f.mu.Lock()
	f.cons = cons
	f.mu.Unlock()
	return nil
}

// position resets the consumer to after+1 and starts a new pull.
func (f *ArchiveFeed) position(ctx context.Context, after uint64) error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return errors.New("archive feed: closed")
	}
	if f.iter != nil {
		f.iter.Stop()
		f.iter = nil
	}
	f.gen++
	f.open = false
	f.mu.Unlock()
	if _, err := f.js.ResetConsumerToSequence(ctx, topology.EventsStream, f.cfg.Durable, after+1); err != nil {
		return fmt.Errorf("archive feed: reset consumer %s to sequence %d: %w", f.cfg.Durable, after+1, err)
	}
	iter, err := f.consumer().Messages(jetstream.PullMaxMessages(f.cfg.Prefetch))
	if err != nil {
		return fmt.Errorf("archive feed: pull: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		iter.Stop()
		return errors.New("archive feed: closed")
	}
	f.iter, f.next, f.open = iter, after+1, true
	return nil
}

func (f *ArchiveFeed) consumer() jetstream.Consumer {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cons
}

// Next returns the next message of the stream after the last one returned.
func (f *ArchiveFeed) Next(ctx context.Context) (archive.Message, error) {
	for {
		f.mu.Lock()
		iter, gen, next, open := f.iter, f.gen, f.next, f.open
		f.mu.Unlock()
		if !open {
			return archive.Message{}, errors.New("archive feed: not open")
		}
		msg, err := iter.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return archive.Message{}, ctx.Err()
			}
			return archive.Message{}, fmt.Errorf("archive feed: %w", err)
		}
		md, err := msg.Metadata()
		if err != nil {
			return archive.Message{}, fmt.Errorf("archive feed: message metadata: %w", err)
		}
		seq := md.Sequence.Stream
		if seq < next {
			continue // delivered again (after AckWait): already handed out
		}
		if seq > next {
			held, err := f.firstHeld(ctx, next)
			if err != nil {
				return archive.Message{}, err
			}
			if held < seq {
				// Messages next..seq-1 are in the stream but were not
				// delivered to this feed: deliver them again from next.
				if err := f.position(ctx, next-1); err != nil {
					return archive.Message{}, err
				}
				continue
			}
		}
		f.mu.Lock()
		if f.gen != gen {
			f.mu.Unlock()
			continue // repositioned meanwhile
		}
		f.next = seq + 1
		f.mu.Unlock()
		return f.message(msg, md, gen), nil
	}
}

// firstHeld returns the sequence of the first message the stream holds at
// or after seq (the stream may have none at seq: removed by its age limit,
// or deleted).
func (f *ArchiveFeed) firstHeld(ctx context.Context, seq uint64) (uint64, error) {
	s, err := f.js.Stream(ctx, topology.EventsStream)
	if err != nil {
		return 0, fmt.Errorf("archive feed: stream info: %w", err)
	}
	m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(">"))
	if err != nil {
		return 0, fmt.Errorf("archive feed: message at or after %d: %w", seq, err)
	}
	return m.Sequence, nil
}

func (f *ArchiveFeed) message(msg jetstream.Msg, md *jetstream.MsgMetadata, gen uint64) archive.Message {
	m := archive.Message{
		Seq:     md.Sequence.Stream,
		Time:    md.Timestamp,
		Subject: msg.Subject(),
		Data:    msg.Data(),
		Ref:     feedRef{msg: msg, gen: gen},
	}
	if h := msg.Headers(); h != nil {
		m.MsgID = h.Get(nats.MsgIdHdr)
	}
	var ok bool
	if m.Partition, m.Region, ok = topology.ParseStoredEventSubject(m.Subject); !ok {
		m.Partition, m.Region = -1, ""
	}
	return m
}

// Ack acknowledges every message up to and including last (AckAll), with a
// confirmation from the server. A message delivered before the consumer was
// positioned again is not acknowledged: the positioning moved the ack floor
// past it already.
func (f *ArchiveFeed) Ack(ctx context.Context, last archive.Message) error {
	ref, ok := last.Ref.(feedRef)
	if !ok {
		return errors.New("archive feed: message not from this feed")
	}
	f.mu.Lock()
	current := ref.gen == f.gen
	f.mu.Unlock()
	if !current {
		return nil
	}
	if err := ref.msg.DoubleAck(ctx); err != nil {
		return fmt.Errorf("archive feed: ack up to sequence %d: %w", last.Seq, err)
	}
	return nil
}

// Lag returns the messages not yet acknowledged: waiting in the stream for
// the consumer plus delivered and unacknowledged.
func (f *ArchiveFeed) Lag(ctx context.Context) (uint64, error) {
	info, err := f.consumer().Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("archive feed: consumer info: %w", err)
	}
	return info.NumPending + uint64(max(info.NumAckPending, 0)), nil
}

// Release stops pulling until the next Open. What was pulled ahead and not
// archived is delivered again from the checkpoint by the next Open, here or
// in another archiver.
func (f *ArchiveFeed) Release() {
	f.mu.Lock()
	iter := f.iter
	f.iter, f.open = nil, false
	f.gen++
	f.mu.Unlock()
	if iter != nil {
		iter.Stop()
	}
}

// Close releases the feed for good.
func (f *ArchiveFeed) Close() {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	f.Release()
}
