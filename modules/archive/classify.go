// Package archive copies every message of the events stream into the
// Postgres archive exactly once: valid events into table event (keyed by
// event_id: where one event_id was stored twice, the copy first in stream
// order is the row kept, whatever order the copies are archived in) and
// invalid messages into rejected_event. It is pure of NATS and Postgres: the stream comes through
// a Source and the database through a Store, both adapters.
//
// Delivery: messages are written in batches (by count and time). Each
// batch's transaction also moves the archive's checkpoint, the last stream
// sequence archived, from where the batch began to its last message,
// compare-and-set. So the checkpoint names exactly what is committed: an
// archiver that starts (after a crash, kill -9 included, or as the standby
// taking over) reads it and has the stream delivered from the message after
// it, in order, and nothing is lost or written twice. The stream's durable
// consumer is acknowledged once per batch (cumulatively), after the commit:
// the acknowledgement only keeps the consumer's lag reading right; where
// archiving resumes comes from the checkpoint, never from the consumer.
//
// One archiver is active at a time: the Store's Claim holds the archive
// (a Postgres advisory lock), and others wait in Claim as standbys.
package archive

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/gamemodes/gamemodes/modules/domain"
)

// Message is one message of the events stream as the Source delivers it.
type Message struct {
	// Seq is the stream sequence.
	Seq uint64
	// Time is when the stream stored the message.
	Time time.Time
	// Subject is the stored subject, "<partition>.gamemodes.events.<REGION>".
	Subject string
	// Partition and Region are parsed from Subject by the Source; Partition
	// is -1 when the subject is not a stored event subject.
	Partition int
	Region    string
	// MsgID is the Nats-Msg-Id header, empty if absent.
	MsgID string
	// Data is the payload: the event JSON of the contract.
	Data []byte
	// Ref is the Source's handle of the message, passed back to Ack.
	Ref any
}

// Source delivers the events stream to the active archiver.
type Source interface {
	// Identity names the events stream as it is now. A stream deleted and
	// created again (its storage lost) has another identity: sequences of
	// the old one's checkpoint mean nothing in it.
	Identity(ctx context.Context) (string, error)
	// AckFloor is the stream sequence up to which the durable consumer has
	// every message acknowledged (0: none, or no consumer yet). It is where
	// an archive without a checkpoint (written by a version that
	// acknowledged each message) had got to.
	AckFloor(ctx context.Context) (uint64, error)
	// Open makes Next deliver the stream from the message after sequence
	// after: in stream order, every message the stream holds, none twice.
	// Called by the archiver when it becomes active, and after a failure.
	Open(ctx context.Context, after uint64) error
	// Next returns the next message, waiting until one is available or ctx
	// is done (then it returns ctx.Err()).
	Next(ctx context.Context) (Message, error)
	// Ack acknowledges every message up to and including last, which is
	// archived (once per batch, after its commit).
	Ack(ctx context.Context, last Message) error
	// Release stops delivering until the next Open.
	Release()
	// Lag is the number of messages not yet acknowledged: still in the
	// stream for the consumer plus delivered but unacknowledged.
	Lag(ctx context.Context) (uint64, error)
}

// Checkpoint is how far the archive holds the events stream.
type Checkpoint struct {
	// Stream is the identity of the stream Seq counts in (Source.Identity).
	Stream string
	// Seq is the last stream sequence archived: every message up to it is
	// in the archive.
	Seq uint64
}

// ErrCheckpointMoved is returned by Claim.WriteBatch when the stored
// checkpoint is not the one the batch starts from: another archiver wrote
// meanwhile. Nothing of the batch is written.
var ErrCheckpointMoved = errors.New("archive checkpoint moved by another archiver")

// ArchivedEvent is a row of table event.
type ArchivedEvent struct {
	EventID    string
	UserID     string
	EventType  string
	Payload    []byte // event_payload: {"game_mode":N,"region":"R"}
	Timestamp  time.Time
	StreamSeq  uint64
	Partition  int
	Region     string
	GameMode   int
	ReceivedAt time.Time
}

// RejectedEvent is a row of table rejected_event.
type RejectedEvent struct {
	StreamSeq  uint64
	ReceivedAt time.Time
	Subject    string
	MsgID      string
	Payload    []byte
	Reason     string
	Detail     string
}

// Store is the archive database.
type Store interface {
	// Claim waits until no other archiver holds the archive, then holds it
	// for this one and returns the claim; it returns ctx's error if ctx
	// ends first. A standby archiver waits here.
	Claim(ctx context.Context) (Claim, error)
}

// Claim is the active archiver's exclusive hold on the archive, ended by
// Release or by the archiver's death (its database session ends).
type Claim interface {
	// Checkpoint reads the stored checkpoint; ok is false when none is
	// stored yet.
	Checkpoint(ctx context.Context) (cp Checkpoint, ok bool, err error)
	// WriteBatch writes events and rejected messages and moves the
	// checkpoint from from (the zero Checkpoint: none stored) to to, in one
	// transaction, idempotently: rows already archived (same event_id; same
	// stream sequence and time for rejected ones) are left as they are. It
	// returns an error wrapping ErrCheckpointMoved, and writes nothing,
	// when the stored checkpoint is not from.
	WriteBatch(ctx context.Context, events []ArchivedEvent, rejected []RejectedEvent, from, to Checkpoint) error
	// Release gives the archive up.
	Release()
}

// Rejection reasons besides the contract's error codes (domain.Code*).
const (
	// ReasonInvalidSubject: the stored subject is not <partition>.gamemodes.events.<REGION>.
	ReasonInvalidSubject = domain.CodeInvalidSubject
	// ReasonRegionMismatch: the subject's region differs from the payload's.
	ReasonRegionMismatch = domain.CodeRegionMismatch
	// ReasonPartitionMismatch: the payload's user does not hash to the subject's partition
	// (the subject's user token was not the payload's user).
	ReasonPartitionMismatch = domain.CodePartitionMismatch
)

// Classifier turns stream messages into archive rows.
type Classifier struct {
	catalog    *domain.Catalog
	partitions int
}

// NewClassifier validates messages against catalog for a stream of
// partitions partitions.
func NewClassifier(catalog *domain.Catalog, partitions int) *Classifier {
	return &Classifier{catalog: catalog, partitions: partitions}
}

// Classify validates m: a valid event becomes an ArchivedEvent (ok true),
// anything else a RejectedEvent with its reason.
//
// The event id is the payload's event_id, else the Nats-Msg-Id header when
// it is a valid id, else "nats-<stream seq>-<stream time in unix ns>", which
// a redelivery of the same message reproduces.
func (c *Classifier) Classify(m Message) (ArchivedEvent, RejectedEvent, bool) {
	reject := func(reason, detail string) (ArchivedEvent, RejectedEvent, bool) {
		return ArchivedEvent{}, RejectedEvent{
			StreamSeq: m.Seq, ReceivedAt: m.Time, Subject: m.Subject, MsgID: m.MsgID,
			Payload: m.Data, Reason: reason, Detail: detail,
		}, false
	}
	ev, _, err := c.catalog.DecodeStored(m.Partition, m.Region, c.partitions, m.Data, m.Time)
	if err != nil {
		if v, ok := domain.AsValidationError(err); ok {
			return reject(v.Code, v.Message)
		}
		return reject("invalid", err.Error())
	}
	partition := m.Partition
	id := ev.ID
	if id == "" {
		if m.MsgID != "" && domain.CheckEventID(m.MsgID) == nil {
			id = m.MsgID
		} else {
			id = DerivedEventID(m.Seq, m.Time)
		}
	}
	return ArchivedEvent{
		EventID:    id,
		UserID:     ev.UserID,
		EventType:  ev.Type.String(),
		Payload:    payloadJSON(ev),
		Timestamp:  ev.Timestamp,
		StreamSeq:  m.Seq,
		Partition:  partition,
		Region:     ev.Region,
		GameMode:   ev.GameMode,
		ReceivedAt: m.Time,
	}, RejectedEvent{}, true
}

// DerivedEventID is the event id of a message that carries none.
func DerivedEventID(seq uint64, t time.Time) string {
	b := make([]byte, 0, 48)
	b = append(b, "nats-"...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, '-')
	b = strconv.AppendInt(b, t.UnixNano(), 10)
	return string(b)
}

func payloadJSON(ev domain.Event) []byte {
	// Regions are [A-Za-z0-9_-] (catalog), so no escaping is needed.
	b := make([]byte, 0, 40+len(ev.Region))
	b = append(b, `{"game_mode":`...)
	b = strconv.AppendInt(b, int64(ev.GameMode), 10)
	b = append(b, `,"region":"`...)
	b = append(b, ev.Region...)
	b = append(b, `"}`...)
	return b
}
