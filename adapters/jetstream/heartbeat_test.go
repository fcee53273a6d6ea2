package jetstream_test

import (
	"context"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/nats/natstest"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// applied returns gamemodes_events_applied_total for an outcome.
func (s *stack) applied(outcome string) float64 {
	s.t.Helper()
	families, err := s.reg.Gather()
	if err != nil {
		s.t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "gamemodes_events_applied_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			if m.GetLabel()[0].GetValue() == outcome {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// waitReflected waits until the lobby view reflects a published event (its
// partition's shard has applied the event's sequence).
func (s *stack) waitReflected(e event, ack *jetstream.PubAck) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p := domain.PartitionOf(domain.UserToken(e.User), s.topo.Partitions)
	if err := s.view.WaitApplied(ctx, p, ack.Sequence); err != nil {
		s.t.Fatalf("event %+v (seq %d, partition %d) not reflected: %v (applied %d)", e, ack.Sequence, p, err, s.view.Applied(p))
	}
}

// expectCounts fails unless the view shows want now.
func (s *stack) expectCounts(want map[string]map[int]int64) {
	s.t.Helper()
	if diff := s.diff(want); diff != "" {
		s.t.Fatalf("lobby counts: %s", diff)
	}
}

// holdCounts checks that the view keeps showing want for d: it wakes at
// every count change, so a change that is undone at once is seen too.
func (s *stack) holdCounts(want map[string]map[int]int64, d time.Duration) {
	s.t.Helper()
	deadline := time.After(d)
	for {
		changed := s.view.Changed()
		if diff := s.diff(want); diff != "" {
			s.t.Fatalf("counts changed: %s", diff)
		}
		select {
		case <-changed:
		case <-deadline:
			return
		}
	}
}

// Heartbeats state where a player is: they refresh a present player
// without touching any count, count an unknown or expired player in, move a
// player heartbeating from elsewhere, and a player who stops heartbeating
// expires after the TTL.
func TestHeartbeatsKeepPlayersAndCountsExact(t *testing.T) {
	ns := natstest.RunServer(t)
	ttl := 2 * time.Second
	s := newStack(t, ns.ClientURL(), ttl, 4)
	s.startWorker("w1")
	at := func(u int) event { return event{User: userName(u), Type: domain.EventEnter, Region: "BR", Mode: 2} }
	beat := func(u int, region string, mode int) event {
		return event{User: userName(u), Type: domain.EventHeartbeat, Region: region, Mode: mode}
	}
	for u := range 5 {
		s.waitReflected(at(u), s.publishAck(at(u)))
	}
	s.expectCounts(map[string]map[int]int64{"BR": {2: 5}})

	// Heartbeats of present players change no count at all.
	changed := s.view.Changed()
	for u := range 5 {
		e := beat(u, "BR", 2)
		s.waitReflected(e, s.publishAck(e))
	}
	select {
	case <-changed:
		t.Fatalf("a heartbeat of a present player changed the counts: %s", s.diff(map[string]map[int]int64{"BR": {2: 5}}))
	default:
	}
	if got := s.applied("heartbeat"); got != 5 {
		t.Fatalf("heartbeat outcomes %v, want 5", got)
	}

	// Players 0 and 1 keep heartbeating; 2, 3 and 4 stop and expire.
	stop := every(ttl/5, func() {
		s.publish(beat(0, "BR", 2))
		s.publish(beat(1, "BR", 2))
	})
	s.waitCounts(map[string]map[int]int64{"BR": {2: 2}}, ttl+5*time.Second)
	s.holdCounts(map[string]map[int]int64{"BR": {2: 2}}, ttl+time.Second)
	stop()
	if got := testutil.ToFloat64(s.metrics.ExpiriesCounter()); got != 3 {
		t.Fatalf("expiries %v, want 3", got)
	}

	// A heartbeat of an unknown player, and of an expired one, counts them in.
	for _, e := range []event{beat(100, "US", 4), beat(3, "BR", 2)} {
		s.waitReflected(e, s.publishAck(e))
	}
	if got := s.applied("heartbeat_entered"); got != 2 {
		t.Fatalf("heartbeat_entered outcomes %v, want 2", got)
	}
	s.expectCounts(map[string]map[int]int64{"BR": {2: 3}, "US": {4: 1}})

	// A heartbeat from another mode moves the player there.
	e := beat(0, "EU", 1)
	s.waitReflected(e, s.publishAck(e))
	if got := s.applied("heartbeat_moved"); got != 1 {
		t.Fatalf("heartbeat_moved outcomes %v, want 1", got)
	}
	s.expectCounts(map[string]map[int]int64{"BR": {2: 2}, "US": {4: 1}, "EU": {1: 1}})

	// Nobody heartbeats any more: everyone expires.
	s.waitCounts(map[string]map[int]int64{}, ttl+5*time.Second)
}
