package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Retry is how EnsureTopology waits for a JetStream that is not ready.
//
// Each attempt may take Attempt; a server that does not answer in time is
// asked again until Wait has passed. After an outage longer than the player
// TTL, nats-server expires every player key at once when it starts
// (millions of deletions and markers with a large population) and answers
// nothing else meanwhile: measured with 10 million players, longer than a
// single attempt.
//
// A server without JetStream, or a cluster without a meta leader, answers
// "no responders" at once, and a cluster whose nodes have not all joined yet
// cannot place a replicated stream: such an attempt fails at once, so
// attempts start Pause apart, doubling up to PauseMax, and the wait is
// logged at each attempt instead of in a busy loop.
type Retry struct {
	Attempt  time.Duration
	Wait     time.Duration
	Pause    time.Duration
	PauseMax time.Duration
	// Sleep is the pause (time.Sleep when nil); tests hold it to choose
	// what the server does between two attempts.
	Sleep func(time.Duration)
}

// DefaultRetry is the binary's wait for the topology.
var DefaultRetry = Retry{Attempt: 30 * time.Second, Wait: 15 * time.Minute, Pause: time.Second, PauseMax: 15 * time.Second}

// StartRetry is the binary's wait for a role's start requests (a stream or
// bucket lookup, a consumer's creation): like DefaultRetry, each attempt
// bounded to 10 s.
var StartRetry = Retry{Attempt: 10 * time.Second, Wait: 15 * time.Minute, Pause: time.Second, PauseMax: 15 * time.Second}

// EnsureTopology creates or checks the stream and buckets (topology.Ensure),
// asking again, as r says, while JetStream does not answer in time or
// cannot place them yet (NotReady); any other error ends it at once.
func EnsureTopology(js jetstream.JetStream, c topology.Config, r Retry, log *slog.Logger) (topology.Topology, error) {
	topo, err := Until(context.Background(), "the topology requests", r, log, func(ctx context.Context) (topology.Topology, error) {
		return topology.Ensure(ctx, js, c)
	})
	if err != nil && NotReady(err) {
		return topology.Topology{}, fmt.Errorf("NATS JetStream did not answer the topology requests, or could not place them, for %v: %w", r.Wait, err)
	}
	return topo, err
}

// Until runs request, a start request of the process, asking again as r
// says while JetStream does not answer in time or cannot serve it yet
// (NotReady): a node of the cluster down or cut off, a stream or bucket
// whose leader is being elected, a cluster still forming. Each attempt may
// take r.Attempt; attempts start r.Pause apart, doubling up to r.PauseMax,
// and each failure is logged. The wait ends after r.Wait, or when ctx ends
// (a start hook's context), with the last error; an error that will not go
// away returns at once.
func Until[T any](ctx context.Context, what string, r Retry, log *slog.Logger, request func(context.Context) (T, error)) (T, error) {
	sleep := r.Sleep
	if sleep == nil {
		sleep = time.Sleep
	}
	deadline := time.Now().Add(r.Wait)
	pause := r.Pause
	for attempt := 1; ; attempt++ {
		began := time.Now()
		actx, cancel := context.WithTimeout(ctx, r.Attempt)
		v, err := request(actx)
		cancel()
		if err == nil || !NotReady(err) || time.Now().After(deadline) || ctx.Err() != nil {
			return v, err
		}
		log.Warn("NATS JetStream is not ready for "+what+" (no responders, timed out, or the cluster cannot place the replicas yet); asking again (after an outage longer than the player TTL the server expires every player at start, which takes minutes with millions of players)",
			"attempt", attempt, "err", err)
		if rest := pause - time.Since(began); rest > 0 {
			sleep(rest)
		}
		pause = min(2*pause, r.PauseMax)
	}
}

// The JetStream API error codes of a JetStream that is starting, recovering
// or still forming its cluster (nats-server's errors.json; nats.go names
// none of them).
const (
	codeClusterIncomplete jetstream.ErrorCode = 10004 // JSClusterIncompleteErr: incomplete results
	codeClusterNoPeers    jetstream.ErrorCode = 10005 // JSClusterNoPeersErrF: no suitable peers for placement (a peer offline or not joined yet)
	codeClusterNotAvail   jetstream.ErrorCode = 10008 // JSClusterNotAvailErr: JetStream system temporarily unavailable
	codeClusterNotLeader  jetstream.ErrorCode = 10009 // JSClusterNotLeaderErr: no meta leader to handle the request yet
)

// NotReady tells the errors of a JetStream that is starting, recovering or
// still forming its cluster, which a later attempt may not meet, from the
// errors that will not go away (a configuration the server refuses, a
// permission, a bucket that differs).
func NotReady(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrJetStreamNotEnabled) {
		return true
	}
	var api *jetstream.APIError
	if !errors.As(err, &api) {
		return false
	}
	switch api.ErrorCode {
	case codeClusterIncomplete, codeClusterNoPeers, codeClusterNotAvail, codeClusterNotLeader:
		return true
	}
	return false
}
