package partition_test

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/modules/partition"
	"github.com/gamemodes/gamemodes/modules/partition/partitiontest"
)

// owners records what the assigner asks of the partition owners.
type owners struct {
	mu  sync.Mutex
	run []int
}

func (o *owners) Ensure(ps []int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.run = slices.Clone(ps)
}

func (o *owners) StopPartition(p int) <-chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.run = slices.DeleteFunc(o.run, func(q int) bool { return q == p })
	done := make(chan struct{})
	close(done)
	return done
}

func (o *owners) Stop(context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.run = nil
	return nil
}

func (o *owners) running() []int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.run)
}

// Two members share the partitions as Assign says; when one stops, it
// hands its partitions over and the other takes them all.
func TestAssignersSharePartitionsAndHandOver(t *testing.T) {
	const partitions = 8
	coord := partitiontest.NewCoordinator()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var oa, ob owners
	a := partition.NewAssigner("a", partitions, 300*time.Millisecond, coord, &oa, log)
	b := partition.NewAssigner("b", partitions, 300*time.Millisecond, coord, &ob, log)
	a.Start()
	b.Start()
	defer func() { _ = b.Stop(context.Background()) }()
	want := partition.Assign([]string{"a", "b"}, partitions)
	mine := func(m string) []int {
		var out []int
		for p, owner := range want {
			if owner == m {
				out = append(out, p)
			}
		}
		return out
	}
	partitiontest.Eventually(t, "a and b running their share", func() bool {
		return slices.Equal(oa.running(), mine("a")) && slices.Equal(ob.running(), mine("b"))
	})
	for p := range partitions {
		if h, _ := coord.Holder(p); h != want[p] {
			t.Fatalf("partition %d's lease held by %q, want %q", p, h, want[p])
		}
	}
	if err := a.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	all := []int{0, 1, 2, 3, 4, 5, 6, 7}
	partitiontest.Eventually(t, "b running every partition", func() bool { return slices.Equal(ob.running(), all) })
	for p := range partitions {
		if h, _ := coord.Holder(p); h != "b" {
			t.Fatalf("partition %d's lease held by %q after a stopped, want b", p, h)
		}
	}
}
