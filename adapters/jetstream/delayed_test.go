package jetstream_test

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/modules/partition"
	"github.com/gamemodes/gamemodes/nats/natstest"
	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// publishAll publishes events asynchronously (at most 512 awaiting their
// acknowledgement), retrying a failed one under the same message id until
// acknowledged, and returns the events in stream order (by acknowledged
// sequence), the order the owners apply them in.
func publishAll(t *testing.T, js jetstream.JetStream, events []event) []event {
	t.Helper()
	type sent struct {
		e   event
		msg *nats.Msg
		fut jetstream.PubAckFuture
	}
	seqs := make([]uint64, len(events))
	window := make(chan sent, 512)
	done := make(chan struct{})
	go func() {
		defer close(done)
		i := 0
		for s := range window {
			var seq uint64
			select {
			case ack := <-s.fut.Ok():
				seq = ack.Sequence
			case <-s.fut.Err():
				// Retry synchronously under the same id: the stream keeps one copy.
				for attempt := 0; ; attempt++ {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					ack, err := js.PublishMsg(ctx, s.msg)
					cancel()
					if err == nil {
						seq = ack.Sequence
						break
					}
					if attempt == 100 {
						t.Errorf("event %s never acknowledged: %v", s.e.ID, err)
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
			seqs[i] = seq
			i++
		}
	}()
	for _, e := range events {
		body := fmt.Sprintf(`{"user_id":%q,"event_type":%q,"event_payload":{"game_mode":%d,"region":%q}}`, e.User, e.Type.String(), e.Mode, e.Region)
		msg := nats.NewMsg(topology.EventSubject(e.Region, domain.UserToken(e.User)))
		msg.Data = []byte(body)
		msg.Header.Set(jetstream.MsgIDHeader, e.ID)
		fut, err := js.PublishMsgAsync(msg)
		if err != nil {
			t.Fatalf("publish: %v", err)
		}
		window <- sent{e: e, msg: msg, fut: fut}
	}
	close(window)
	<-done
	order := make([]int, len(events))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(seqs[a], seqs[b]) })
	out := make([]event, len(events))
	for k, i := range order {
		out[k] = events[i]
	}
	return out
}

// storedDiff compares the players stored in the players bucket with the
// ground truth and describes the first difference ("" when equal).
func (s *stack) storedDiff(truth *model) string {
	s.t.Helper()
	want := map[string][2]any{}
	for user, at := range truth.at {
		want[domain.UserToken(user)] = at
	}
	got := map[string][2]any{}
	for p := range s.topo.Partitions {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := s.store.LoadPartition(ctx, p, func(b []partition.StoredPlayer) {
			for _, sp := range b {
				ps, err := s.catalog.DecodePlayer(sp.Value)
				if err != nil {
					s.t.Errorf("stored player %s: %v", sp.Token, err)
					continue
				}
				if ps.Present {
					got[sp.Token] = [2]any{s.catalog.Region(int(ps.Slot.Region)), s.catalog.GameMode(int(ps.Slot.Mode))}
				}
			}
		})
		cancel()
		if err != nil {
			return fmt.Sprintf("load partition %d: %v", p, err)
		}
	}
	for tok, at := range want {
		if got[tok] != at {
			return fmt.Sprintf("player %s: stored %v, want %v (%d stored present, %d in the truth)", tok, got[tok], at, len(got), len(want))
		}
	}
	if len(got) != len(want) {
		return fmt.Sprintf("%d players stored present, %d in the truth", len(got), len(want))
	}
	return ""
}

// Workers on a replicated (R3) cluster whose routes and client connections
// all cross links delaying 0.5 ms each way (a 1 ms round trip between
// nodes): under load, and through a worker cut and takeover, the lobby
// counts and the stored players end equal to the ground truth.
func TestDelayedReplicatedClusterKeepsCountsAndPlayersExact(t *testing.T) {
	if testing.Short() {
		t.Skip("3-node cluster test")
	}
	c := natstest.RunCluster(t, 3, natstest.WithLinkDelay(500*time.Microsecond))
	_, js := natstest.Connect(t, c.URLs())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := topology.Ensure(ctx, js, topology.Config{Partitions: 16, Replicas: 3, PlayerTTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	s := newStack(t, c.URLs(), time.Hour, 16)
	w1 := startMember(t, s, c.ClientURL(0)+","+c.URLs(), "w1")
	w2 := startMember(t, s, c.ClientURL(1)+","+c.URLs(), "w2")
	waitOwnership(t, 16, 30*time.Second, w1, w2)

	rng := rand.New(rand.NewPCG(21, 22))
	events := randomEvents(rng, 6000, 1500)
	for i := range events {
		events[i].ID = "delayed-" + strconv.Itoa(i)
	}
	half := len(events) / 2
	start := time.Now()
	stored := publishAll(t, s.js, events[:half])
	w1.cut() // its partitions are taken over across the delayed links
	waitOwnership(t, 16, 30*time.Second, w2)
	// The second half follows the first in the stream.
	stored = append(stored, publishAll(t, s.js, events[half:])...)
	truth := newModel()
	for _, e := range stored {
		truth.apply(e)
	}
	t.Logf("%d events acknowledged in %s", len(stored), time.Since(start).Round(time.Millisecond))
	s.waitCounts(truth.counts(), 60*time.Second)
	t.Logf("counts exact %s after the start", time.Since(start).Round(time.Millisecond))

	deadline := time.Now().Add(60 * time.Second)
	for {
		diff := s.storedDiff(truth)
		if diff == "" {
			t.Logf("stored players exact %s after the start", time.Since(start).Round(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stored players differ from the ground truth: %s", diff)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
