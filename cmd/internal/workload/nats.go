package workload

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/gamemodes/gamemodes/nats/natsconn"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATSTarget publishes events directly to the service's JetStream, as game
// servers do.
type NATSTarget struct {
	NC *nats.Conn
	JS jetstream.JetStream
}

// DialNATS connects to url with sec. maxPending bounds the asynchronous publishes
// awaiting their acknowledgement; each times out after ackTimeout.
func DialNATS(url string, sec natsconn.Config, maxPending int, ackTimeout time.Duration) (*NATSTarget, error) {
	opts, err := sec.Options()
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(url, append(opts,
		nats.Name("gamemodes-loadgen"),
		nats.MaxReconnects(-1),
		nats.ReconnectBufSize(64<<20),
	)...)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", natsconn.Redact(url), sec.Explain(err))
	}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(maxPending+64),
		jetstream.WithPublishAsyncTimeout(ackTimeout),
		jetstream.WithDefaultTimeout(ackTimeout),
	)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &NATSTarget{NC: nc, JS: js}, nil
}

// Close drains and closes the connection.
func (t *NATSTarget) Close() {
	if err := t.NC.Drain(); err != nil {
		t.NC.Close()
	}
}

// Message returns the JetStream message of an event: subject
// gamemodes.events.<REGION>.<user token>, header Nats-Msg-Id = event_id.
func Message(subject, eventID string, body []byte) *nats.Msg {
	return &nats.Msg{Subject: subject, Data: body, Header: nats.Header{jetstream.MsgIDHeader: []string{eventID}}}
}

// PublishSync publishes one message and waits for its acknowledgement.
func (t *NATSTarget) PublishSync(msg *nats.Msg, timeout time.Duration) (*jetstream.PubAck, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return t.JS.PublishMsg(ctx, msg)
}

// NATSErrorKey names a publish failure for the errors map.
func NATSErrorKey(err error) string {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, jetstream.ErrAsyncPublishTimeout), errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return "nats:timeout"
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders):
		return "nats:no_responders"
	case errors.Is(err, jetstream.ErrTooManyStalledMsgs):
		return "nats:stalled"
	case errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrConnectionReconnecting), errors.Is(err, nats.ErrDisconnected):
		return "nats:disconnected"
	case errors.As(err, &apiErr):
		return "nats:api_" + strconv.Itoa(apiErr.Code)
	}
	return "nats:error"
}
