package workload

import (
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
)

// Outcome is how an event's delivery ended.
type Outcome uint8

const (
	// Acked: stored by the service (202 or PubAck).
	Acked Outcome = iota
	// Rejected: refused for good (4xx): nothing stored.
	Rejected
	// Unresolved: no answer within the retry budget: stored or not, unknown.
	Unresolved
)

// Sent is the result of one event's delivery with retries.
type Sent struct {
	Outcome Outcome
	// At is when the delivery ended (the acknowledgement's arrival).
	At time.Time
	// Latency is the successful attempt's round trip (0 unless Acked).
	Latency time.Duration
	// Duplicate: the service answered that the event was stored before.
	Duplicate bool
	// Status is the last HTTP status (0 on NATS or a transport failure).
	Status int
	// Retries is the number of attempts after the first.
	Retries int
	// Token is the answer's consistency_token (HTTP, when asked for).
	Token string
}

// PostUntil posts an event body until it is acknowledged, refused for good
// (a 4xx other than 408 and 429), or retryFor has passed, retrying with
// Backoff (or the service's Retry-After) under the same body, so the same
// event_id. fail is called with an error key (see ErrorKey) for every failed
// attempt; wantToken keeps the answer's consistency token.
func (t *HTTPTarget) PostUntil(body []byte, retryFor time.Duration, wantToken bool, fail func(key string)) Sent {
	var tokenp *string
	var token string
	if wantToken {
		tokenp = &token
	}
	first := time.Now()
	for attempt := 1; ; attempt++ {
		t0 := time.Now()
		status, dup, retryAfter, err := t.Post(body, tokenp)
		now := time.Now()
		switch {
		case err != nil:
			fail(ErrorKey("post", err))
		case status >= 200 && status < 300:
			return Sent{Outcome: Acked, At: now, Latency: now.Sub(t0), Duplicate: dup, Status: status, Retries: attempt - 1, Token: token}
		default:
			fail("post:" + strconv.Itoa(status))
			if status >= 400 && status < 500 && status != 408 && status != 429 {
				return Sent{Outcome: Rejected, At: now, Status: status, Retries: attempt - 1}
			}
		}
		if now.Sub(first) > retryFor {
			return Sent{Outcome: Unresolved, At: now, Status: status, Retries: attempt - 1}
		}
		time.Sleep(Backoff(attempt, retryAfter))
	}
}

// PublishUntil publishes msg synchronously until it is acknowledged or
// retryFor has passed, each attempt waiting at most timeout, retrying with
// Backoff under the same Nats-Msg-Id. fail is called with an error key (see
// NATSErrorKey) for every failed attempt.
func (t *NATSTarget) PublishUntil(msg *nats.Msg, retryFor, timeout time.Duration, fail func(key string)) Sent {
	first := time.Now()
	for attempt := 1; ; attempt++ {
		t0 := time.Now()
		ack, err := t.PublishSync(msg, timeout)
		now := time.Now()
		if err == nil {
			return Sent{Outcome: Acked, At: now, Latency: now.Sub(t0), Duplicate: ack.Duplicate, Retries: attempt - 1}
		}
		fail(NATSErrorKey(err))
		if now.Sub(first) > retryFor {
			return Sent{Outcome: Unresolved, At: now, Retries: attempt - 1}
		}
		time.Sleep(Backoff(attempt, 0))
	}
}

// Backoff returns the wait before retry attempt (1, 2, ...): exponential
// from 5 ms to 1 s with jitter, or the service's Retry-After (up to 5 s).
func Backoff(attempt int, retryAfter time.Duration) time.Duration {
	if retryAfter > 0 {
		return min(retryAfter, 5*time.Second)
	}
	d := min(5*time.Millisecond<<min(attempt-1, 10), time.Second)
	return d/2 + rand.N(d/2+1)
}
