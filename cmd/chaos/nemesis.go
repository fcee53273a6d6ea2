package main

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// Fault kinds.
const (
	KillApp         = "kill_app"         // kill -9 of a gamemodes process, started again after For
	KillNode        = "kill_node"        // kill -9 of a NATS node, started again after For
	StallWorker     = "stall_worker"     // SIGSTOP of a worker for For (longer than the lease TTL), then SIGCONT
	PartitionNode   = "partition_node"   // a NATS node's routes blackholed for For (its clients still reach it)
	DelayNode       = "delay_node"       // 200 ms added to a NATS node's links for For
	CutPostgres     = "cut_postgres"     // the archivers' link to Postgres cut for For (How: blackhole or reset)
	RestartPostgres = "restart_postgres" // Postgres stopped (How: kill -9 or fast shutdown) and started after For
)

// Kinds lists the fault kinds in a fixed order.
var Kinds = []string{KillApp, KillNode, StallWorker, PartitionNode, DelayNode, CutPostgres, RestartPostgres}

// Targets of a kill_node fault resolved when it starts.
const (
	LeaderOfEvents  = "leader:GAMEMODES_EVENTS"
	LeaderOfPlayers = "leader:KV_gamemodes_players"
)

// Fault is one fault of the schedule.
type Fault struct {
	// At is when it starts, from the start of the load; For how long it
	// lasts until healed (or the process is started again).
	At  time.Duration `json:"at"`
	For time.Duration `json:"for"`
	// Kind is one of Kinds; Target names a process ("worker2", "nats3",
	// "postgres") or a leader to look up when the fault starts (then
	// Fallback is the node to take when none is found).
	Kind     string `json:"kind"`
	Target   string `json:"target"`
	Fallback string `json:"fallback,omitempty"`
	// How is the variant: blackhole or reset (cut_postgres), kill or fast
	// (restart_postgres).
	How string `json:"how,omitempty"`
}

func (f Fault) String() string {
	s := fmt.Sprintf("%7.1fs %-16s %-28s for %4.1fs", f.At.Seconds(), f.Kind, f.Target, f.For.Seconds())
	if f.How != "" {
		s += " (" + f.How + ")"
	}
	return s
}

// Topology is what the nemesis may hit: process names by role, and the
// lease TTL (a stall lasts longer).
type Topology struct {
	Edges, Workers, Archivers, Nodes []string
	LeaseTTL                         time.Duration
	// MinGap and MaxGap bound the time between two faults' starts
	// (default 2 s and 10 s).
	MinGap, MaxGap time.Duration
}

func (t Topology) apps() []string {
	return append(append(append([]string(nil), t.Edges...), t.Workers...), t.Archivers...)
}

// weights of the fault kinds, in the order of Kinds.
var weights = []int{4, 3, 2, 2, 2, 1, 1}

// Schedule is the nemesis of a run: a pure function of the seed, the run's
// length and the topology. A fault starts every MinGap-MaxGap; a process,
// node or Postgres has at most one fault at a time, and at most one NATS
// node is down (killed or cut off) at once, so the cluster can always
// recover. When a slot's draws find no free target, the slot stays empty.
func Schedule(seed uint64, run time.Duration, topo Topology) []Fault {
	if topo.MinGap <= 0 {
		topo.MinGap = 2 * time.Second
	}
	if topo.MaxGap < topo.MinGap {
		topo.MaxGap = max(topo.MinGap, 10*time.Second)
	}
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	between := func(lo, hi time.Duration) time.Duration {
		// Whole tenths of a second: the schedule prints and replays exactly.
		steps := int64((hi - lo) / (100 * time.Millisecond))
		return lo + time.Duration(rng.Int64N(steps+1))*100*time.Millisecond
	}
	busy := map[string]time.Duration{} // resource -> busy until
	free := func(at time.Duration, rs ...string) bool {
		for _, r := range rs {
			if busy[r] > at {
				return false
			}
		}
		return true
	}
	total := 0
	for _, w := range weights {
		total += w
	}
	pickKind := func() string {
		n := rng.IntN(total)
		for i, w := range weights {
			if n < w {
				return Kinds[i]
			}
			n -= w
		}
		return Kinds[len(Kinds)-1]
	}
	pick := func(names []string) string { return names[rng.IntN(len(names))] }
	var out []Fault
	for at := between(topo.MinGap, topo.MaxGap); at < run; at += between(topo.MinGap, topo.MaxGap) {
		for try := 0; try < 8; try++ {
			f := Fault{At: at, Kind: pickKind()}
			var res []string
			switch f.Kind {
			case KillApp:
				f.Target, f.For = pick(topo.apps()), between(time.Second, 8*time.Second)
				res = []string{f.Target}
			case KillNode:
				switch r := rng.IntN(4); {
				case r < 2:
					f.Target = LeaderOfEvents
				case r == 2:
					f.Target = LeaderOfPlayers
				default:
					f.Target = pick(topo.Nodes)
				}
				f.Fallback = pick(topo.Nodes)
				f.For = between(3*time.Second, 15*time.Second)
				// A leader is known only when the fault starts: the kill
				// takes every node.
				res = append([]string{"nodes-down"}, topo.Nodes...)
				if !strings.HasPrefix(f.Target, "leader:") {
					res = []string{"nodes-down", f.Target}
				}
			case StallWorker:
				f.Target = pick(topo.Workers)
				f.For = between(topo.LeaseTTL+2*time.Second, topo.LeaseTTL+7*time.Second)
				res = []string{f.Target}
			case PartitionNode:
				f.Target, f.For = pick(topo.Nodes), between(5*time.Second, 20*time.Second)
				res = []string{"nodes-down", f.Target}
			case DelayNode:
				f.Target, f.For = pick(topo.Nodes), between(5*time.Second, 20*time.Second)
				res = []string{f.Target}
			case CutPostgres:
				f.Target, f.For, f.How = "postgres", between(5*time.Second, 20*time.Second), []string{"blackhole", "reset"}[rng.IntN(2)]
				res = []string{"postgres"}
			case RestartPostgres:
				f.Target, f.For, f.How = "postgres", between(time.Second, 5*time.Second), []string{"kill", "fast"}[rng.IntN(2)]
				res = []string{"postgres"}
			}
			if !free(at, res...) {
				continue
			}
			// A killed or cut node counts as down until it is back and
			// has caught up a moment.
			until := at + f.For + 2*time.Second
			for _, r := range res {
				busy[r] = until
			}
			if f.Kind == KillNode && strings.HasPrefix(f.Target, "leader:") {
				for _, n := range topo.Nodes {
					busy[n] = until
				}
			}
			out = append(out, f)
			break
		}
	}
	return out
}

// countKinds counts faults by kind.
func countKinds(fs []Fault) map[string]int {
	out := map[string]int{}
	for _, f := range fs {
		out[f.Kind]++
	}
	return out
}
