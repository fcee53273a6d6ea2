package jetstream

import (
	"context"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/modules/partition"
	"github.com/gamemodes/gamemodes/nats/topology"
)

// TestSharedFeedLeavesNoIdleConsumers: every registration recreates the
// feed's consumer; the superseded ones are deleted on the server, not left
// for nats.go's inactivity threshold (5 minutes), and the last stop leaves
// none. Events still reach every registration once.
func TestSharedFeedLeavesNoIdleConsumers(t *testing.T) {
	js := afSetup(t)
	ctx := context.Background()
	stream, err := js.Stream(ctx, topology.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	consumers := func() int {
		info, err := stream.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Consumers
	}
	waitConsumers := func(want int) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); consumers() != want; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("events stream has %d consumers, want %d", consumers(), want)
			}
		}
	}
	f := NewSharedPartitionFeed(js, afPartitions)
	got := make(chan int, 100)
	var stops []func()
	for p := range afPartitions {
		stop, err := f.Events(ctx, p, 1, func(m partition.EventMsg) { got <- p })
		if err != nil {
			t.Fatal(err)
		}
		stops = append(stops, stop)
	}
	waitConsumers(1)
	for p := range afPartitions {
		user := partitionUser(p)
		if _, err := js.Publish(ctx, topology.EventSubject("US", user), []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[int]int{}
	for range afPartitions {
		select {
		case p := <-got:
			seen[p]++
		case <-time.After(10 * time.Second):
			t.Fatalf("deliveries: %v", seen)
		}
	}
	for p := range afPartitions {
		if seen[p] != 1 {
			t.Fatalf("partition %d got %d events", p, seen[p])
		}
	}
	for _, stop := range stops {
		stop()
	}
	waitConsumers(0)
}

// partitionUser returns a user token of partition p.
func partitionUser(p int) string {
	for i := 0; ; i++ {
		tok := "p" + string(rune('a'+i%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i/676%26))
		if domain.PartitionOf(tok, afPartitions) == p {
			return tok
		}
	}
}
