// Package bootstrap brings up a process's NATS side at start: the
// connection (Connect: a refusal ends the start; once connected it
// reconnects for ever but ends for good on a refusal repeated) and the
// topology (EnsureTopology: asked again, as Retry says, while JetStream is
// starting or its cluster forming, with NotReady telling those answers from
// refusals that will not go away).
package bootstrap

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gamemodes/gamemodes/nats/natsconn"
	"github.com/nats-io/nats.go"
)

// Link is a process's NATS connection. It is never retried at
// start: a refusal (authentication, a certificate) ends the start with
// one line naming the flag. Once connected it reconnects after network
// failures for ever, but ends for good, calling fatal once, when the
// server refuses the same credentials twice in a row (nats.go closes the
// connection then) or its certificate fails verification twice in a row
// with the same error, rather than retrying a refusal four times a second.
type Link struct {
	Conn *nats.Conn

	log       *slog.Logger
	sec       natsconn.Config
	fatal     func(error)
	connected atomic.Bool
	stopping  atomic.Bool
	mu        sync.Mutex
	lastCheck string // the last verification failure since the last connection
	verifyErr error  // the failure that ended the connection
	once      sync.Once
}

// Connect connects to url as name with sec, extra options last (an
// in-process connection to the embedded server). fatal (may be nil) is
// called once when the connection ends for good while not stopping.
func Connect(url, name string, sec natsconn.Config, log *slog.Logger, fatal func(error), extra ...nats.Option) (*Link, error) {
	l := &Link{log: log, sec: sec, fatal: fatal}
	sec.OnVerifyFailure = l.verifyFailed
	secOpts, err := sec.Options()
	if err != nil {
		return nil, err
	}
	opts := append(secOpts,
		nats.Name("gamemodes "+name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.RetryOnFailedConnect(false),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("NATS disconnected", "err", err)
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			l.mu.Lock()
			l.lastCheck = ""
			l.mu.Unlock()
			log.Info("NATS reconnected", "url", c.ConnectedUrlRedacted())
		}),
		nats.ClosedHandler(l.closed),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Warn("NATS async error", "subject", subject, "err", sec.Explain(err))
		}))
	nc, err := nats.Connect(url, append(opts, extra...)...)
	if err != nil {
		err = sec.Explain(err)
		var se *natsconn.SettingError
		if !errors.As(err, &se) {
			return nil, &natsconn.SettingError{Setting: natsconn.SettingURL, Value: natsconn.Redact(url), Reason: "cannot connect to the NATS server", Err: err}
		}
		return nil, fmt.Errorf("%w; NATS %s", err, natsconn.Redact(url))
	}
	l.Conn = nc
	l.connected.Store(true)
	return l, nil
}

// verifyFailed sees every failed verification of the server's
// certificate; the same failure twice in a row after the start ends the
// connection.
func (l *Link) verifyFailed(err error) {
	if !l.connected.Load() {
		return // the start fails with it
	}
	l.log.Error("NATS server certificate refused on reconnect", "err", err)
	l.mu.Lock()
	again := l.lastCheck == err.Error()
	l.lastCheck = err.Error()
	if again {
		l.verifyErr = err
	}
	l.mu.Unlock()
	if again {
		go l.Conn.Close()
	}
}

func (l *Link) closed(nc *nats.Conn) {
	if l.stopping.Load() || !l.connected.Load() {
		return
	}
	l.mu.Lock()
	err := l.verifyErr
	l.mu.Unlock()
	if err == nil {
		err = nc.LastError()
	}
	if err == nil {
		err = fmt.Errorf("the NATS connection was closed")
	}
	err = fmt.Errorf("NATS connection ended for good, not retrying: %w", l.sec.Explain(err))
	l.once.Do(func() {
		l.log.Error("stopping", "err", err)
		if l.fatal != nil {
			l.fatal(err)
		}
	})
}

// Close drains the connection (or closes it when draining fails); the end
// is not reported as a failure.
func (l *Link) Close() {
	l.stopping.Store(true)
	if err := l.Conn.Drain(); err != nil {
		l.Conn.Close()
	}
}
