package jetstream_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/nats/natstest"
)

// A lobby view that has seen an event's sequence applied in its partition's
// shard shows the event, whichever owner applied it: the first, one that
// took the partition over after a hand-over, or one that started after the
// event was stored while no owner ran.
func TestAppliedSequenceReflectsEventsAcrossOwners(t *testing.T) {
	ns := natstest.RunServer(t)
	s := newStack(t, ns.ClientURL(), time.Hour, 4)
	stop := s.startWorker("w1")
	truth := newModel()
	check := func(i int, e event) {
		t.Helper()
		ack := s.publishAck(e)
		truth.apply(e)
		s.waitReflected(e, ack)
		if diff := s.diff(truth.counts()); diff != "" {
			t.Fatalf("event %d (seq %d) reflected but lobby differs: %s", i, ack.Sequence, diff)
		}
		// A retry is deduplicated to the first copy's sequence: reflected already.
		if again := s.publishAck(e); !again.Duplicate || again.Sequence != ack.Sequence {
			t.Fatalf("retry of event %d: %+v, want duplicate of seq %d", i, again, ack.Sequence)
		}
	}
	for i := range 120 {
		e := event{ID: "ryw-" + strconv.Itoa(i), User: userName(i % 40), Type: domain.EventEnter, Region: testRegions[i%3], Mode: 1 + i%4}
		if i%5 == 4 {
			e.Type = domain.EventLeave
		}
		switch i {
		case 40: // hand-over to a new owner
			stop()
			stop = s.startWorker("w2")
		case 80: // stored while no owner runs, then a new owner takes over
			stop()
			ack := s.publishAck(e)
			truth.apply(e)
			p := domain.PartitionOf(domain.UserToken(e.User), s.topo.Partitions)
			if got := s.view.Applied(p); got >= ack.Sequence {
				t.Fatalf("partition %d applied %d >= %d with no owner", p, got, ack.Sequence)
			}
			stop = s.startWorker("w3")
			s.waitReflected(e, ack)
			if diff := s.diff(truth.counts()); diff != "" {
				t.Fatalf("event stored without owner, reflected by the new one, lobby differs: %s", diff)
			}
			continue
		}
		check(i, e)
	}
	stop()
}
