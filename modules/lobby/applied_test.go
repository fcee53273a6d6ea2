package lobby

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gamemodes/gamemodes/modules/domain"
)

// TestWaitAppliedReturnsOnceTheShardAdvances: waiters for sequence 15 stay
// waiting through every advance short of it, and of other partitions, and
// all return at the advance to 15. synctest.Wait lets every waiter that an
// advance released return before the test looks, so a waiter released
// early is seen, every run.
func TestWaitAppliedReturnsOnceTheShardAdvances(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		v := NewView(domain.DefaultCatalog(), nil)
		ctx := context.Background()
		v.setApplied(2, 10)
		for _, seq := range []uint64{1, 10} {
			if err := v.WaitApplied(ctx, 2, seq); err != nil {
				t.Fatalf("WaitApplied(2, %d) with applied 10: %v", seq, err)
			}
		}
		const waiters = 50
		results := make(chan error, waiters)
		for range waiters {
			go func() { results <- v.WaitApplied(ctx, 2, 15) }()
		}
		synctest.Wait()
		for _, adv := range []struct {
			partition int
			seq       uint64
		}{{2, 12}, {3, 99}, {2, 14}} {
			v.setApplied(adv.partition, adv.seq)
			synctest.Wait()
			if n := len(results); n > 0 {
				t.Fatalf("%d of %d waiters for 15 released by the advance of partition %d to %d", n, waiters, adv.partition, adv.seq)
			}
		}
		v.setApplied(2, 15)
		synctest.Wait()
		if n := len(results); n != waiters {
			t.Fatalf("%d of %d waiters released by the advance to 15", n, waiters)
		}
		for range waiters {
			if err := <-results; err != nil {
				t.Fatalf("waiter returned %v", err)
			}
		}
	})
}

func TestWaitAppliedEndsWithItsContext(t *testing.T) {
	v := NewView(domain.DefaultCatalog(), nil)
	v.setApplied(0, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := v.WaitApplied(ctx, 0, 4); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitApplied past its deadline = %v, want DeadlineExceeded", err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- v.WaitApplied(ctx, 5, 1) }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitApplied canceled = %v, want Canceled", err)
	}
	// A context already done still answers when the event is reflected.
	if err := v.WaitApplied(ctx, 0, 3); err != nil {
		t.Fatalf("WaitApplied of a reflected event with a done context = %v", err)
	}
}

func TestWaitAppliedRefusesPartitionsOutsideTheStream(t *testing.T) {
	v := NewView(domain.DefaultCatalog(), nil)
	v.SetPartitions(8)
	v.setApplied(7, 1)
	if err := v.WaitApplied(context.Background(), 7, 1); err != nil {
		t.Fatalf("partition 7 of 8: %v", err)
	}
	for _, p := range []int{8, 9, 1 << 15, -1} {
		err := v.WaitApplied(context.Background(), p, 1)
		if ve, ok := domain.AsValidationError(err); !ok || ve.Code != domain.CodeInvalidConsistencyToken {
			t.Errorf("partition %d of 8: %v, want %s", p, err, domain.CodeInvalidConsistencyToken)
		}
	}
}

func TestSetAppliedFollowsTheShard(t *testing.T) {
	v := NewView(domain.DefaultCatalog(), nil)
	if got := v.Applied(4); got != 0 {
		t.Fatalf("applied before any shard: %d", got)
	}
	v.setApplied(4, 100)
	// A shard rebuilt for a new stream starts again from low sequences.
	v.setApplied(4, 5)
	if got := v.Applied(4); got != 5 {
		t.Fatalf("applied after the shard went back to 5: %d", got)
	}
}

// TestSetShardWakesReadsWithItsCountsIn: a read woken by a shard's applied
// sequence already sees that shard's counts.
func TestSetShardWakesReadsWithItsCountsIn(t *testing.T) {
	c := domain.DefaultCatalog()
	v := NewView(c, nil)
	seen := make(chan int64, 1)
	go func() {
		if err := v.WaitApplied(context.Background(), 3, 7); err != nil {
			t.Error(err)
		}
		seen <- v.Count("US", 2)
	}()
	counts := domain.NewCounts(c)
	slot, _ := c.SlotOf("US", 2)
	counts.Add(slot, 9)
	v.SetShard(3, 0, 7, counts)
	if got := <-seen; got != 9 {
		t.Fatalf("woken read saw %d players, want the shard's 9", got)
	}
}
