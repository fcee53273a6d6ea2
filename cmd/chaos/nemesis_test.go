package main

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func testTopology() Topology {
	return Topology{
		Edges: []string{"edge1", "edge2"}, Workers: []string{"worker1", "worker2", "worker3"},
		Archivers: []string{"archiver1", "archiver2"}, Nodes: []string{"nats1", "nats2", "nats3"},
		LeaseTTL: 3 * time.Second,
	}
}

// The schedule is a pure function of the seed, the run's length and the
// topology: the same seed replays the same faults, another seed differs.
func TestScheduleIsAPureFunctionOfTheSeed(t *testing.T) {
	a := Schedule(1001, 15*time.Minute, testTopology())
	b := Schedule(1001, 15*time.Minute, testTopology())
	if !reflect.DeepEqual(a, b) {
		t.Fatal("the same seed gave two schedules")
	}
	if c := Schedule(2002, 15*time.Minute, testTopology()); reflect.DeepEqual(a, c) {
		t.Fatal("two seeds gave the same schedule")
	}
	// A shorter run is a prefix of the longer one's (same draws).
	short := Schedule(1001, 2*time.Minute, testTopology())
	if len(short) == 0 || !reflect.DeepEqual(short, a[:len(short)]) {
		t.Fatalf("a 2-minute schedule is not the prefix of the 15-minute one: %d faults", len(short))
	}
}

// Every schedule keeps the cluster able to recover and covers every kind:
// starts 2-10 s apart, one fault at a time per process, node or Postgres, at
// most one NATS node down (killed or cut off) at once, stalls longer than
// the lease TTL; a 15-minute run has at least 100 faults.
func TestScheduleKeepsTheClusterRecoverable(t *testing.T) {
	topo := testTopology()
	for seed := uint64(1); seed <= 200; seed++ {
		fs := Schedule(seed, 15*time.Minute, topo)
		if len(fs) < 100 {
			t.Fatalf("seed %d: %d faults in 15 minutes, want at least 100", seed, len(fs))
		}
		for i, f := range fs {
			if i > 0 && (f.At-fs[i-1].At < 2*time.Second || f.At-fs[i-1].At > 30*time.Second) {
				t.Fatalf("seed %d: faults %d and %d %v apart", seed, i-1, i, f.At-fs[i-1].At)
			}
			if f.At >= 15*time.Minute || f.For <= 0 {
				t.Fatalf("seed %d: fault %v", seed, f)
			}
			if f.Kind == StallWorker && f.For <= topo.LeaseTTL+time.Second {
				t.Fatalf("seed %d: stall of %v with a %v lease", seed, f.For, topo.LeaseTTL)
			}
			for _, g := range fs[:i] {
				if g.At+g.For <= f.At {
					continue // over
				}
				if nodeDown(g) && nodeDown(f) {
					t.Fatalf("seed %d: two nodes down at once:\n%v\n%v", seed, g, f)
				}
				if g.Target == f.Target && !strings.HasPrefix(f.Target, "leader:") {
					t.Fatalf("seed %d: two faults on %s at once:\n%v\n%v", seed, f.Target, g, f)
				}
				if strings.HasPrefix(g.Target, "leader:") && f.Kind == DelayNode || strings.HasPrefix(f.Target, "leader:") && g.Kind == DelayNode {
					t.Fatalf("seed %d: a leader kill overlaps a delayed node:\n%v\n%v", seed, g, f)
				}
			}
		}
		if seed == 1 {
			kinds := countKinds(fs)
			for _, k := range Kinds {
				if kinds[k] == 0 {
					t.Errorf("seed 1: no %s in 15 minutes (%v)", k, kinds)
				}
			}
		}
	}
}

func nodeDown(f Fault) bool { return f.Kind == KillNode || f.Kind == PartitionNode }
