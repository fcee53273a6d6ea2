package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/sethvargo/go-retry"
)

// Event is one player event to publish: the service's own event type. Its
// fields, as the client reads them:
//   - ID is the event_id, the idempotency key: 1-128 bytes of UTF-8 without
//     control characters nor surrounding white space; empty, a unique id is
//     generated (github.com/nats-io/nuid).
//   - UserID is the player's id: 1-128 bytes of UTF-8 without control
//     characters. A numeric id is written in decimal ("42"): the service
//     treats the JSON number 42 and the string "42" as one user.
//   - Type is EventEnter, EventLeave or EventHeartbeat.
//   - Region and GameMode are one of the service's regions and game modes.
//   - Timestamp is when the event happened (data for analytics: the
//     stream's order decides); zero means now.
type Event = domain.Event

// EventOption sets an optional field of an event published with
// Client.Enter, Client.Leave or Client.Heartbeat.
type EventOption func(*Event)

// WithEventID sets the event's id (its idempotency key) instead of a
// generated one: publishing the same id again within the stream's
// deduplication window stores nothing new and reports Receipt.Duplicate.
func WithEventID(id string) EventOption {
	return func(e *Event) { e.ID = id }
}

// WithTimestamp sets when the event happened (default now).
func WithTimestamp(t time.Time) EventOption {
	return func(e *Event) { e.Timestamp = t }
}

// Receipt is the stream's acknowledgement of a published event.
type Receipt struct {
	// EventID is the event's id, generated when none was given.
	EventID string
	// Duplicate says the stream already held this event id (stored by an
	// earlier publish, or by an earlier attempt of this one whose
	// acknowledgement was lost); the event was not stored twice.
	Duplicate bool
	// Stream is the name of the stream that stored the event.
	Stream string
	// Sequence is the event's sequence in the stream.
	Sequence uint64
	// Attempts is how many times the event was sent.
	Attempts int
}

// Enter reports that the player userID entered game mode mode in region and
// waits for the stream's acknowledgement.
func (c *Client) Enter(ctx context.Context, userID, region string, mode int, opts ...EventOption) (Receipt, error) {
	return c.Publish(ctx, newEvent(EventEnter, userID, region, mode, opts))
}

// Leave reports that the player userID left game mode mode in region and
// waits for the stream's acknowledgement. A leave for a mode the player is
// no longer in changes no count.
func (c *Client) Leave(ctx context.Context, userID, region string, mode int, opts ...EventOption) (Receipt, error) {
	return c.Publish(ctx, newEvent(EventLeave, userID, region, mode, opts))
}

// Heartbeat reports that the player userID is still in game mode mode in
// region, which keeps them counted (a player without any event for the
// service's player TTL, 1 hour by default, expires), and waits for the
// stream's acknowledgement.
func (c *Client) Heartbeat(ctx context.Context, userID, region string, mode int, opts ...EventOption) (Receipt, error) {
	return c.Publish(ctx, newEvent(EventHeartbeat, userID, region, mode, opts))
}

func newEvent(typ EventType, userID, region string, mode int, opts []EventOption) Event {
	ev := Event{Type: typ, UserID: userID, Region: region, GameMode: mode}
	for _, o := range opts {
		o(&ev)
	}
	return ev
}

// Publish validates ev, publishes it and waits for the stream's
// acknowledgement, retrying as the package documentation says until the
// attempts run out or ctx ends. An invalid event returns a *ValidationError
// and nothing is sent. An error after sending does not mean the event was
// not stored: such an error is a *PublishError naming the event's id; to try
// again, publish the event with that id and the stream keeps one copy.
func (c *Client) Publish(ctx context.Context, ev Event) (Receipt, error) {
	msg, id, err := c.prepare(ev)
	if err != nil {
		return Receipt{}, err
	}
	if err := c.acquire(ctx, id); err != nil {
		return Receipt{}, err
	}
	defer c.release()
	return c.deliver(ctx, msg, id)
}

// PublishError is the error of an event that was sent but not acknowledged:
// it may or may not be stored. Publishing it again with the same EventID
// stores it at most once.
type PublishError struct {
	// EventID is the event's id, generated when none was given.
	EventID string
	// Attempts is how many times the event was sent.
	Attempts int
	// Err is the last attempt's error, or the context's.
	Err error
}

// Error describes the failure.
func (e *PublishError) Error() string {
	return fmt.Sprintf("client: publish event %s (%d attempts): %v", e.EventID, e.Attempts, e.Err)
}

// Unwrap returns the underlying error.
func (e *PublishError) Unwrap() error { return e.Err }

// Pending is the outcome of an event published with PublishAsync.
type Pending struct {
	id      string
	done    chan struct{}
	receipt Receipt
	err     error
}

// EventID returns the event's id, generated when none was given.
func (p *Pending) EventID() string { return p.id }

// Done returns a channel closed once the outcome is known.
func (p *Pending) Done() <-chan struct{} { return p.done }

// Result returns the receipt or the error of the publish once Done is
// closed, and ErrNotDone before.
func (p *Pending) Result() (Receipt, error) {
	select {
	case <-p.done:
		return p.receipt, p.err
	default:
		return Receipt{}, ErrNotDone
	}
}

// Wait waits for the outcome, or for ctx to end (the publish goes on).
func (p *Pending) Wait(ctx context.Context) (Receipt, error) {
	select {
	case <-p.done:
		return p.receipt, p.err
	case <-ctx.Done():
		return Receipt{}, fmt.Errorf("client: wait for event %s: %w", p.id, ctx.Err())
	}
}

// ErrNotDone is returned by Pending.Result before the outcome is known.
var ErrNotDone = errors.New("client: publish not done")

// PublishAsync validates ev and starts publishing it without waiting for
// the acknowledgement: it returns once the event is sent, waiting first for
// room while WithMaxPending events are in flight. The outcome, after the
// same retries as Publish, is reported on the returned Pending. ctx bounds
// the wait for room and the whole publish with its retries. An invalid event
// returns a *ValidationError and nothing is sent. Use Flush to wait for
// every pending event.
func (c *Client) PublishAsync(ctx context.Context, ev Event) (*Pending, error) {
	msg, id, err := c.prepare(ev)
	if err != nil {
		return nil, err
	}
	if err := c.acquire(ctx, id); err != nil {
		return nil, err
	}
	p := &Pending{id: id, done: make(chan struct{})}
	go func() {
		defer c.release()
		p.receipt, p.err = c.deliver(ctx, msg, id)
		close(p.done)
	}()
	return p, nil
}

// acquire counts a publish in flight and takes a place in the window.
func (c *Client) acquire(ctx context.Context, id string) error {
	if err := c.begin(); err != nil {
		return err
	}
	select {
	case c.window <- struct{}{}:
		return nil
	case <-ctx.Done():
		c.end()
		return fmt.Errorf("client: publish event %s: waiting for room: %w", id, ctx.Err())
	}
}

// release gives back the place of acquire.
func (c *Client) release() {
	<-c.window
	c.end()
}

// prepare validates an event with the service's rules and returns its
// message: subject gamemodes.events.<REGION>.<user token>, the canonical
// JSON body, and Nats-Msg-Id set to the event's id.
func (c *Client) prepare(ev Event) (*nats.Msg, string, error) {
	now := c.cfg.now()
	if ev.ID == "" {
		ev.ID = nuid.Next()
	} else if err := domain.CheckEventID(ev.ID); err != nil {
		return nil, "", err
	}
	// Checked before encoding: JSON would silently repair invalid UTF-8.
	if err := domain.CheckUserID(ev.UserID); err != nil {
		return nil, "", err
	}
	if ev.Timestamp.IsZero() {
		ev.Timestamp = now
	}
	body := ev.MarshalCanonical()
	// The service's own validation of the very bytes sent: same rules,
	// same error codes.
	checked, err := c.catalog.DecodeEvent(body, now)
	if err != nil {
		return nil, "", err
	}
	msg := &nats.Msg{
		Subject: topology.EventSubject(checked.Region, checked.Token()),
		Data:    body,
		Header:  nats.Header{jetstream.MsgIDHeader: []string{ev.ID}},
	}
	return msg, ev.ID, nil
}

// deliver sends msg until the stream acknowledges it, a non-retryable
// error occurs, the attempts run out or ctx ends.
func (c *Client) deliver(ctx context.Context, msg *nats.Msg, id string) (Receipt, error) {
	backoff := retry.WithMaxRetries(uint64(c.cfg.maxAttempts-1),
		retry.WithCappedDuration(c.cfg.maxBackoff,
			retry.WithJitterPercent(20, retry.NewExponential(c.cfg.minBackoff))))
	attempts := 0
	var last error
	ack, err := retry.DoValue(ctx, backoff, func(ctx context.Context) (*jetstream.PubAck, error) {
		attempts++
		ack, err := c.attempt(ctx, msg)
		if err != nil && retryable(err) {
			last = err
			c.log.Debug("gamemodes client: publish attempt failed", "event_id", id, "attempt", attempts, "err", err)
			if c.cfg.retryHook != nil {
				c.cfg.retryHook(id, attempts, err)
			}
			return nil, retry.RetryableError(err)
		}
		return ack, err
	})
	if err != nil {
		if ctx.Err() != nil && last != nil && !errors.Is(err, last) {
			err = fmt.Errorf("%w (last attempt: %w)", err, last)
		}
		return Receipt{}, &PublishError{EventID: id, Attempts: attempts, Err: err}
	}
	return Receipt{EventID: id, Duplicate: ack.Duplicate, Stream: ack.Stream, Sequence: ack.Sequence, Attempts: attempts}, nil
}

// attempt sends msg once and waits for its acknowledgement, at most the ack
// timeout (the publisher's asynchronous timeout).
func (c *Client) attempt(ctx context.Context, msg *nats.Msg) (*jetstream.PubAck, error) {
	// No hidden retries of the library: deliver decides, with backoff.
	fut, err := c.js.PublishMsgAsync(msg, jetstream.WithRetryAttempts(0))
	if err != nil {
		return nil, err
	}
	select {
	case ack := <-fut.Ok():
		return ack, nil
	case err := <-fut.Err():
		return nil, err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// retryable reports whether a failed attempt may succeed later: the stream
// did not answer in time, nobody answered (no stream yet, or the server is
// restarting), the connection is being re-established, or JetStream says it
// is temporarily unavailable.
func retryable(err error) bool {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, jetstream.ErrAsyncPublishTimeout),
		errors.Is(err, nats.ErrTimeout),
		errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, nats.ErrNoResponders),
		errors.Is(err, nats.ErrDisconnected),
		errors.Is(err, nats.ErrConnectionReconnecting),
		errors.Is(err, nats.ErrReconnectBufExceeded),
		errors.Is(err, jetstream.ErrTooManyStalledMsgs):
		return true
	case errors.As(err, &apiErr):
		return apiErr.Code == http.StatusServiceUnavailable
	}
	return false
}
