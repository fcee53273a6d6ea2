package partition

import (
	"fmt"
	"slices"
	"testing"
)

func TestAssignIsBalancedAndComplete(t *testing.T) {
	for _, partitions := range []int{1, 7, 32, 100} {
		for n := 1; n <= 9; n++ {
			members := make([]string, n)
			for i := range members {
				members[i] = fmt.Sprintf("worker-%d", i)
			}
			got := Assign(members, partitions)
			count := map[string]int{}
			for p, m := range got {
				if !slices.Contains(members, m) {
					t.Fatalf("P=%d n=%d: partition %d assigned to %q", partitions, n, p, m)
				}
				count[m]++
			}
			lo, hi := partitions/n, (partitions+n-1)/n
			for _, m := range members {
				if count[m] < lo || count[m] > hi {
					t.Fatalf("P=%d n=%d: %s has %d partitions, want %d-%d", partitions, n, m, count[m], lo, hi)
				}
			}
		}
	}
}

func TestAssignIsDeterministicWhateverTheOrder(t *testing.T) {
	a := Assign([]string{"c", "a", "b"}, 32)
	b := Assign([]string{"b", "c", "a", "a"}, 32)
	if !slices.Equal(a, b) {
		t.Fatalf("different answers for the same members:\n%v\n%v", a, b)
	}
}

func TestAssignMovesFewPartitionsWhenAMemberJoins(t *testing.T) {
	before := Assign([]string{"w1", "w2", "w3"}, 32)
	after := Assign([]string{"w1", "w2", "w3", "w4"}, 32)
	moved := 0
	for p := range before {
		if before[p] != after[p] {
			moved++
			if after[p] != "w4" {
				// Balancing may shift a few between old members, but most moves go to the newcomer.
				t.Logf("partition %d moved %s -> %s", p, before[p], after[p])
			}
		}
	}
	// The newcomer needs 8; a modulo scheme would move about 24.
	if moved > 14 {
		t.Fatalf("%d of 32 partitions moved when a fourth member joined", moved)
	}
}

func TestAssignWithoutMembers(t *testing.T) {
	for _, m := range Assign(nil, 4) {
		if m != "" {
			t.Fatalf("assigned %q without members", m)
		}
	}
}
