package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gamemodes/gamemodes/cmd/internal/netcluster"
	"github.com/gamemodes/gamemodes/nats/netem"
	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/nats-io/nats.go/jetstream"
)

// nemesis applies a schedule of faults to a running cluster and heals them.
type nemesis struct {
	c      *netcluster.Cluster
	pg     *netcluster.Postgres
	js     jetstream.JetStream // the harness's own connection (leases)
	log    *slog.Logger
	faults *atomic.Int32 // active now
	delay  time.Duration // the links' base one-way delay
	// leaseTTL is the workers' lease TTL (a stall shorter than it plus a
	// second is not judged).
	leaseTTL time.Duration

	mu      sync.Mutex
	down    map[string]bool // processes the nemesis stopped on purpose
	applied []Fault         // faults started, in order
	errors  []string        // faults that could not be applied or healed
	stalls  []*stallCheck
	healAll chan struct{}
	wg      sync.WaitGroup
	checks  sync.WaitGroup // stall log checks
}

func newNemesis(c *netcluster.Cluster, pg *netcluster.Postgres, js jetstream.JetStream, faults *atomic.Int32, log *slog.Logger) *nemesis {
	return &nemesis{c: c, pg: pg, js: js, faults: faults, log: log, down: map[string]bool{}, healAll: make(chan struct{})}
}

// run applies the schedule from start until stop closes; faults still
// active then are healed by heal.
func (n *nemesis) run(start time.Time, schedule []Fault, stop <-chan struct{}) {
	for _, f := range schedule {
		select {
		case <-stop:
			return
		case <-time.After(time.Until(start.Add(f.At))):
		}
		n.apply(f)
	}
	<-stop
}

// heal ends every active fault at once and waits until each is healed.
func (n *nemesis) heal() {
	close(n.healAll)
	n.wg.Wait()
}

func (n *nemesis) setDown(name string, down bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.down[name] = down
}

func (n *nemesis) isDown(name string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.down[name]
}

func (n *nemesis) fail(f Fault, what string, err error) {
	msg := fmt.Sprintf("%s %s: %s: %v", f.Kind, f.Target, what, err)
	n.log.Warn("fault", "err", msg)
	n.mu.Lock()
	n.errors = append(n.errors, msg)
	n.mu.Unlock()
}

// apply starts fault f and schedules its healing after f.For (or at heal).
func (n *nemesis) apply(f Fault) {
	var healFn func()
	switch f.Kind {
	case KillApp:
		a := n.c.App(f.Target)
		n.setDown(a.Name(), true)
		if err := a.Kill(); err != nil {
			n.fail(f, "kill", err)
		}
		healFn = func() {
			if err := a.Start(); err != nil {
				n.fail(f, "start", err)
			}
			n.setDown(a.Name(), false)
		}
	case KillNode:
		i := n.resolveNode(f)
		f.Target = fmt.Sprintf("%s (%s)", n.c.Nodes[i].Name(), f.Target)
		node := n.c.Nodes[i]
		n.setDown(node.Name(), true)
		if err := node.Kill(); err != nil {
			n.fail(f, "kill", err)
		}
		healFn = func() {
			if err := node.Start(); err != nil {
				n.fail(f, "start", err)
			}
			n.setDown(node.Name(), false)
		}
	case StallWorker:
		a := n.c.App(f.Target)
		check := &stallCheck{Worker: a.Name()}
		before, err := n.leasesOf(a.Name())
		if err != nil {
			n.fail(f, "read leases before the stall", err)
		}
		n.setDown(a.Name(), true) // paused: not an unexpected exit either
		if err := a.Pause(); err != nil {
			n.fail(f, "pause", err)
		}
		pausedAt := time.Now()
		healFn = func() {
			if time.Since(pausedAt) < n.leaseTTL+time.Second {
				// Healed early (the run ended): too short to expect the
				// leases gone; not judged.
				err = errors.New("healed before the lease TTL")
			}
			after, aerr := n.leases()
			if err == nil && aerr == nil {
				judgeStall(check, before, after)
			} else if aerr != nil {
				n.fail(f, "read leases before the resume", aerr)
			}
			offset := logSize(a.Log())
			if rerr := a.Resume(); rerr != nil {
				n.fail(f, "resume", rerr)
			}
			check.Resumed = time.Now().UTC().Format(time.RFC3339Nano)
			n.setDown(a.Name(), false)
			if err == nil && aerr == nil {
				n.mu.Lock()
				n.stalls = append(n.stalls, check)
				n.mu.Unlock()
				if check.Held > 0 {
					n.checks.Go(func() { check.Stepped = waitLog(a.Log(), offset, 30*time.Second, steppedDownLines...) })
				}
			}
		}
	case PartitionNode:
		i := n.c.NodeIndex(f.Target)
		if err := n.c.Partition(i, netem.Blackhole); err != nil {
			n.fail(f, "cut", err)
		}
		healFn = func() {
			if err := n.c.HealPartition(i); err != nil {
				n.fail(f, "heal", err)
			}
		}
	case DelayNode:
		i := n.c.NodeIndex(f.Target)
		n.c.SetNodeDelay(i, 200*time.Millisecond)
		healFn = func() { n.c.SetNodeDelay(i, n.delay) }
	case CutPostgres:
		how := netem.Blackhole
		if f.How == "reset" {
			how = netem.Reset
		}
		if err := n.c.Postgres.Cut(how); err != nil {
			n.fail(f, "cut", err)
		}
		healFn = func() {
			if err := n.c.Postgres.Heal(); err != nil {
				n.fail(f, "heal", err)
			}
		}
	case RestartPostgres:
		n.setDown("postgres", true)
		var err error
		if f.How == "kill" {
			err = n.pg.Crash()
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err = n.pg.StopFast(ctx)
			cancel()
		}
		if err != nil {
			n.fail(f, "stop", err)
		}
		healFn = func() {
			if err := n.pg.Start(); err != nil {
				n.fail(f, "start", err)
			}
			n.setDown("postgres", false)
		}
	default:
		n.fail(f, "apply", errors.New("unknown kind"))
		return
	}
	n.log.Info("fault", "fault", f.String())
	n.mu.Lock()
	n.applied = append(n.applied, f)
	n.mu.Unlock()
	n.faults.Add(1)
	n.wg.Go(func() {
		select {
		case <-time.After(f.For):
		case <-n.healAll:
		}
		healFn()
		n.faults.Add(-1)
		n.log.Info("healed", "fault", f.Kind, "target", f.Target)
	})
}

// resolveNode returns the node a kill_node fault takes: the leader it names
// (looked up now), else its target or fallback.
func (n *nemesis) resolveNode(f Fault) int {
	if stream, ok := strings.CutPrefix(f.Target, "leader:"); ok {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if i, err := n.c.StreamLeader(ctx, stream); err == nil {
			return i
		}
		return n.c.NodeIndex(f.Fallback)
	}
	return n.c.NodeIndex(f.Target)
}

// steppedDownLines are the log lines of a worker that learned it lost a
// partition: its lease renewal refused, or a write refused by the fence.
var steppedDownLines = []string{`"partition lease lost"`, `"partition fenced: another owner claimed it"`}

// leasesOf returns the partitions whose lease names member, with the
// lease's revision.
func (n *nemesis) leasesOf(member string) (map[int]uint64, error) {
	all, err := n.leases()
	if err != nil {
		return nil, err
	}
	out := map[int]uint64{}
	for p, l := range all {
		if l.owner == member {
			out[p] = l.rev
		}
	}
	return out, nil
}

// leases reads every partition lease, asking again for a while when the
// cluster does not answer (a node may be down meanwhile).
func (n *nemesis) leases() (map[int]lease, error) {
	var last error
	for try := 0; try < 5; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		out, err := readLeases(ctx, n.js)
		cancel()
		if err == nil {
			return out, nil
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	return nil, last
}

func readLeases(ctx context.Context, js jetstream.JetStream) (map[int]lease, error) {
	out := map[int]lease{}
	err := readBucket(ctx, js, topology.LeasesBucket, func(e jetstream.KeyValueEntry) error {
		if p, ok := topology.ParseShardKey(e.Key()); ok {
			out[p] = lease{owner: string(e.Value()), rev: e.Revision()}
		}
		return nil
	})
	return out, err
}

// readBucket hands each live key of a bucket to fn.
func readBucket(ctx context.Context, js jetstream.JetStream, bucket string, fn func(jetstream.KeyValueEntry) error) error {
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return err
	}
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return err
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e := <-w.Updates():
			if e == nil {
				return nil
			}
			if err := fn(e); err != nil {
				return err
			}
		}
	}
}

// logSize is the size of a log file now (0 when unreadable).
func logSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// waitLog reports whether any of lines appears in the log file after
// offset within d.
func waitLog(path string, offset int64, d time.Duration, lines ...string) bool {
	deadline := time.Now().Add(d)
	for {
		if f, err := os.Open(path); err == nil {
			_, _ = f.Seek(offset, io.SeekStart)
			b, _ := io.ReadAll(f)
			f.Close()
			for _, l := range lines {
				if bytes.Contains(b, []byte(l)) {
					return true
				}
			}
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// watchdog restarts every process that exited although no fault stopped it,
// until stop closes, and counts those exits.
func (n *nemesis) watchdog(stop <-chan struct{}, exits *atomic.Int64) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		var procs []*netcluster.Process
		for _, a := range n.c.Apps {
			procs = append(procs, a.Process)
		}
		for _, nd := range n.c.Nodes {
			procs = append(procs, nd.Process)
		}
		procs = append(procs, n.pg.Process)
		for _, p := range procs {
			if p.Running() || n.isDown(p.Name()) {
				continue
			}
			exits.Add(1)
			n.log.Warn("process exited on its own; starting it again", "process", p.Name(), "log", p.Log())
			n.mu.Lock()
			n.errors = append(n.errors, "unexpected exit of "+p.Name()+" at "+time.Now().UTC().Format(time.RFC3339)+" (see "+p.Log()+")")
			n.mu.Unlock()
			if err := p.Start(); err != nil {
				n.log.Warn("restart", "process", p.Name(), "err", err)
			}
		}
	}
}

// scheduleText is the schedule one fault a line, for a failure report.
func scheduleText(fs []Fault) string {
	var b strings.Builder
	for _, f := range fs {
		b.WriteString(f.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// itoa is strconv.Itoa.
func itoa(i int) string { return strconv.Itoa(i) }
