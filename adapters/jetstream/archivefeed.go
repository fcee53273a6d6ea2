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
	// the server delivers it again (default 30s). A restarted archiver gets
	// the messages its predecessor had in hand after this delay.
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
// the events stream from the first, each acknowledged on its own once
// archived, redelivered without limit until then.
//
// Not AckAll: a cumulative ack by a restarted archiver (or after deliveries
// were lost in a reconnect) also acknowledges the messages its predecessor
// had received and never archived, and they are lost. Acknowledging each
// message costs one small publish per event, sent without waiting.
func ArchiveConsumerConfig(c ArchiveFeedConfig) jetstream.ConsumerConfig {
	c = c.Defaults()
	return jetstream.ConsumerConfig{
		Durable:       c.Durable,
		Description:   "gamemodes archiver: copies every event into Postgres",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: c.MaxAckPending,
	}
}

// ArchiveFeed is the archiver's archive.Source on the events stream: a
// durable pull consumer. Several archivers may share it safely (each
// message is acknowledged once archived), though one is enough.
type ArchiveFeed struct {
	cons       jetstream.Consumer
	prefetch   int
	partitions int

	mu     sync.Mutex
	iter   jetstream.MessagesContext
	closed bool
}

var _ archive.Source = (*ArchiveFeed)(nil)

// NewArchiveFeed creates or updates the archiver's durable consumer on the
// events stream (which must exist: topology.Ensure) and returns the feed.
func NewArchiveFeed(ctx context.Context, js jetstream.JetStream, cfg ArchiveFeedConfig) (*ArchiveFeed, error) {
	cfg = cfg.Defaults()
	topo, err := topology.Load(ctx, js)
	if err != nil {
		return nil, fmt.Errorf("archive feed: %w", err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, topology.EventsStream, ArchiveConsumerConfig(cfg))
	if err != nil {
		return nil, fmt.Errorf("archive feed: consumer %s: %w", cfg.Durable, err)
	}
	return &ArchiveFeed{cons: cons, prefetch: cfg.Prefetch, partitions: topo.Partitions}, nil
}

// Partitions is the events stream's partition count (archive.Config.Partitions).
func (f *ArchiveFeed) Partitions() int { return f.partitions }

// Next returns the next message of the stream for the archiver.
func (f *ArchiveFeed) Next(ctx context.Context) (archive.Message, error) {
	iter, err := f.iterator()
	if err != nil {
		return archive.Message{}, err
	}
	msg, err := iter.Next(jetstream.NextContext(ctx))
	if err != nil {
		if ctx.Err() != nil {
			return archive.Message{}, ctx.Err()
		}
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			f.dropIterator(iter)
		}
		return archive.Message{}, fmt.Errorf("archive feed: %w", err)
	}
	md, err := msg.Metadata()
	if err != nil {
		return archive.Message{}, fmt.Errorf("archive feed: message metadata: %w", err)
	}
	m := archive.Message{
		Seq:     md.Sequence.Stream,
		Time:    md.Timestamp,
		Subject: msg.Subject(),
		Data:    msg.Data(),
		Ref:     msg,
	}
	if h := msg.Headers(); h != nil {
		m.MsgID = h.Get(nats.MsgIdHdr)
	}
	var ok bool
	if m.Partition, m.Region, ok = topology.ParseStoredEventSubject(m.Subject); !ok {
		m.Partition, m.Region = -1, ""
	}
	return m, nil
}

// Ack acknowledges every message of a committed batch: all but the last
// without waiting, the last with a confirmation from the server (which
// handles a connection's acknowledgements in order).
func (f *ArchiveFeed) Ack(ctx context.Context, msgs []archive.Message) error {
	for i, m := range msgs {
		msg, ok := m.Ref.(jetstream.Msg)
		if !ok {
			return errors.New("archive feed: message not from this feed")
		}
		var err error
		if i == len(msgs)-1 {
			err = msg.DoubleAck(ctx)
		} else {
			err = msg.Ack()
		}
		if err != nil {
			return fmt.Errorf("archive feed: ack sequence %d: %w", m.Seq, err)
		}
	}
	return nil
}

// Lag returns the messages not yet acknowledged: waiting in the stream for
// the consumer plus delivered and unacknowledged.
func (f *ArchiveFeed) Lag(ctx context.Context) (uint64, error) {
	info, err := f.cons.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("archive feed: consumer info: %w", err)
	}
	return info.NumPending + uint64(max(info.NumAckPending, 0)), nil
}

// Close stops pulling and gives the messages pulled ahead but not yet
// handed out back to the stream (negative acknowledgements), so the next
// archiver gets them at once instead of after AckWait. Call it after the
// archiver stopped. Messages handed out and not acknowledged come again
// after AckWait.
func (f *ArchiveFeed) Close() {
	f.mu.Lock()
	iter := f.iter
	f.closed, f.iter = true, nil
	f.mu.Unlock()
	if iter == nil {
		return
	}
	iter.Drain()
	for {
		msg, err := iter.Next(jetstream.NextMaxWait(time.Second))
		if err != nil {
			return
		}
		_ = msg.Nak()
	}
}

func (f *ArchiveFeed) iterator() (jetstream.MessagesContext, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, errors.New("archive feed: closed")
	}
	if f.iter == nil {
		iter, err := f.cons.Messages(jetstream.PullMaxMessages(f.prefetch))
		if err != nil {
			return nil, fmt.Errorf("archive feed: pull: %w", err)
		}
		f.iter = iter
	}
	return f.iter, nil
}

func (f *ArchiveFeed) dropIterator(iter jetstream.MessagesContext) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.iter == iter {
		f.iter.Stop()
		f.iter = nil
	}
}
