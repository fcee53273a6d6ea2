package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/procfs"
)

// The service side's CPU: the load generator reads /proc/<pid>/stat of the
// processes it is told about (--cpu-pids) and of a Postgres server with its
// children (--cpu-postgres, optionally only the backends of one database,
// --cpu-postgres-db), once before the send phase, once after it and once
// after verification, and reports user and system time per acknowledged
// event. Linux only; times come in clock ticks of 10 ms (USER_HZ 100).

// cpuTarget names the processes whose CPU a run accounts for.
type cpuTarget struct {
	// pids are processes counted alone (their threads included).
	pids []int
	// postgres are Postgres server (postmaster) pids, counted with their
	// child processes alive at each reading.
	postgres []int
	// pgDB, when set, keeps only the client backends of this database (the
	// background processes, such as the WAL writer, are always counted).
	pgDB string
	// metricsURL is the service's /metrics, for the engine's counters.
	metricsURL string
}

// empty reports whether no process is named.
func (t cpuTarget) empty() bool { return len(t.pids) == 0 && len(t.postgres) == 0 }

// parsePIDs parses a comma list of process ids.
func parsePIDs(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		pid, err := strconv.Atoi(f)
		if err != nil || pid <= 0 {
			return nil, fmt.Errorf("process id %q: want a positive integer", f)
		}
		out = append(out, pid)
	}
	return out, nil
}

// procTicks is one process's CPU time at a reading.
type procTicks struct {
	group      string // the report group: the process's name, or "postgres"
	user, sys  uint64 // clock ticks
	start      uint64 // start time in ticks since boot: a reused pid is another process
	wasPresent bool
}

// cpuReading is the CPU time of every counted process at one moment.
type cpuReading struct {
	at    time.Time
	procs map[int]procTicks
	self  procTicks // the load generator itself
}

// read takes a reading of t's processes. A named process that does not
// exist is an error; children that come and go are read as found.
func (t cpuTarget) read() (cpuReading, error) {
	r := cpuReading{at: time.Now(), procs: map[int]procTicks{}}
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return r, fmt.Errorf("cpu: /proc: %w", err)
	}
	for _, pid := range t.pids {
		st, err := statOf(fs, pid)
		if err != nil {
			return r, fmt.Errorf("cpu: --cpu-pids %d: %w", pid, err)
		}
		r.procs[pid] = ticksOf(st, st.Comm)
	}
	if len(t.postgres) > 0 {
		if err := t.readPostgres(fs, &r); err != nil {
			return r, err
		}
	}
	if self, err := fs.Self(); err == nil {
		if st, err := self.Stat(); err == nil {
			r.self = ticksOf(st, "loadgen")
		}
	}
	return r, nil
}

func (t cpuTarget) readPostgres(fs procfs.FS, r *cpuReading) error {
	parents := map[int]bool{}
	for _, pid := range t.postgres {
		st, err := statOf(fs, pid)
		if err != nil {
			return fmt.Errorf("cpu: --cpu-postgres %d: %w", pid, err)
		}
		parents[pid] = true
		r.procs[pid] = ticksOf(st, "postgres")
	}
	all, err := fs.AllProcs()
	if err != nil {
		return fmt.Errorf("cpu: list processes: %w", err)
	}
	for _, p := range all {
		st, err := p.Stat()
		if err != nil || !parents[st.PPID] {
			continue // gone meanwhile, or not a child
		}
		if t.pgDB != "" {
			cmd, err := p.CmdLine()
			if err != nil || !postgresChildCounted(strings.Join(cmd, " "), t.pgDB) {
				continue
			}
		}
		r.procs[p.PID] = ticksOf(st, "postgres")
	}
	return nil
}

// postgresChildCounted reports whether a Postgres child process with this
// command line is counted when only database db is: client backends
// ("postgres: [cluster: ]user database host(port) state") only for db,
// background processes (checkpointer, WAL writer, autovacuum) always.
func postgresChildCounted(cmdline, db string) bool {
	rest, ok := strings.CutPrefix(cmdline, "postgres: ")
	if !ok {
		return true
	}
	fields := strings.Fields(rest)
	if len(fields) > 0 && strings.HasSuffix(fields[0], ":") { // "15/main:" cluster name
		fields = fields[1:]
	}
	if len(fields) < 3 {
		return true
	}
	host := fields[2]
	client := host == "[local]" || strings.HasSuffix(host, ")") && strings.Contains(host, "(")
	if !client {
		return true
	}
	return fields[1] == db
}

func statOf(fs procfs.FS, pid int) (procfs.ProcStat, error) {
	p, err := fs.Proc(pid)
	if err != nil {
		return procfs.ProcStat{}, err
	}
	return p.Stat()
}

func ticksOf(st procfs.ProcStat, group string) procTicks {
	return procTicks{group: group, user: uint64(st.UTime), sys: uint64(st.STime), start: st.Starttime, wasPresent: true}
}

// ticksPerSecond is Linux's USER_HZ, the unit of /proc/<pid>/stat times.
const ticksPerSecond = 100

// cpuGroup is the CPU of one group of processes over a window.
type cpuGroup struct {
	Name  string  `json:"name"`
	UserS float64 `json:"user_s"`
	SysS  float64 `json:"sys_s"`
}

// cpuReport is the service side's CPU over a window.
type cpuReport struct {
	WindowS float64 `json:"window_s"`
	UserS   float64 `json:"user_s"` // summed over the counted processes
	SysS    float64 `json:"sys_s"`
	Cores   float64 `json:"cores"` // (user + system) / window
	// Per acknowledged event, in microseconds (absent without events).
	UsPerEvent     float64 `json:"us_per_event,omitempty"`
	UserUsPerEvent float64 `json:"user_us_per_event,omitempty"`
	SysUsPerEvent  float64 `json:"sys_us_per_event,omitempty"`
	// Groups splits the sums by process (by name; Postgres as one).
	Groups []cpuGroup `json:"groups"`
	// Processes counted at the end of the window; Vanished were counted at
	// its start and gone at its end (their time in the window is lost).
	Processes int `json:"processes"`
	Vanished  int `json:"vanished,omitempty"`
	// Loadgen is the load generator's own CPU (not in the sums).
	Loadgen cpuGroup `json:"loadgen"`
	// LoadAvg1 is the machine's one-minute load average at the end.
	LoadAvg1 float64 `json:"load_avg_1m"`
}

// cpuBetween returns the CPU used between two readings, per event when
// events > 0. A process first seen at b counts from its start; one whose
// pid was reused counts as new.
func cpuBetween(a, b cpuReading, events int64) cpuReport {
	rep := cpuReport{WindowS: round3(b.at.Sub(a.at).Seconds())}
	groups := map[string]*cpuGroup{}
	var order []string
	var user, sys uint64
	for pid, e := range b.procs {
		s := a.procs[pid]
		if s.wasPresent && s.start != e.start {
			s = procTicks{}
		}
		du, ds := e.user-min(s.user, e.user), e.sys-min(s.sys, e.sys)
		user, sys = user+du, sys+ds
		g := groups[e.group]
		if g == nil {
			g = &cpuGroup{Name: e.group}
			groups[e.group] = g
			order = append(order, e.group)
		}
		g.UserS += float64(du) / ticksPerSecond
		g.SysS += float64(ds) / ticksPerSecond
	}
	for pid := range a.procs {
		if _, ok := b.procs[pid]; !ok {
			rep.Vanished++
		}
	}
	rep.Processes = len(b.procs)
	rep.UserS, rep.SysS = float64(user)/ticksPerSecond, float64(sys)/ticksPerSecond
	if rep.WindowS > 0 {
		rep.Cores = round3((rep.UserS + rep.SysS) / rep.WindowS)
	}
	if events > 0 {
		per := func(t uint64) float64 { return math.Round(float64(t)/ticksPerSecond/float64(events)*1e7) / 10 }
		rep.UsPerEvent, rep.UserUsPerEvent, rep.SysUsPerEvent = per(user+sys), per(user), per(sys)
	}
	slices.Sort(order)
	for _, name := range order {
		g := groups[name]
		g.UserS, g.SysS = round3(g.UserS), round3(g.SysS)
		rep.Groups = append(rep.Groups, *g)
	}
	rep.Loadgen = cpuGroup{Name: "loadgen",
		UserS: round3(float64(b.self.user-min(a.self.user, b.self.user)) / ticksPerSecond),
		SysS:  round3(float64(b.self.sys-min(a.self.sys, b.self.sys)) / ticksPerSecond)}
	rep.UserS, rep.SysS = round3(rep.UserS), round3(rep.SysS)
	rep.LoadAvg1 = loadAvg1()
	return rep
}

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }

// loadAvg1 is the one-minute load average (0 when unreadable).
func loadAvg1() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// errNoCPUTarget is returned by the cpu command without processes to read.
var errNoCPUTarget = errors.New("give --cpu-pids and/or --cpu-postgres")

// cpuFlags defines the flags naming the service's processes on fs.
func cpuFlags(fs *flag.FlagSet, t *cpuTarget) {
	fs.Func("cpu-pids", "comma list of the service's process ids whose CPU (user and system, from /proc) is reported per event, e.g. the gamemodes process", func(s string) error {
		pids, err := parsePIDs(s)
		t.pids = append(t.pids, pids...)
		return err
	})
	fs.Func("cpu-postgres", "process id of a Postgres server (postmaster) whose CPU, with its child processes', is reported per event", func(s string) error {
		pids, err := parsePIDs(s)
		t.postgres = append(t.postgres, pids...)
		return err
	})
	fs.StringVar(&t.pgDB, "cpu-postgres-db", "", "with --cpu-postgres: count only the client backends of this database (and the server's background processes), leaving out other users of a shared Postgres")
	fs.StringVar(&t.metricsURL, "service-metrics", "", "the service's Prometheus metrics URL (e.g. http://127.0.0.1:8080/metrics): report the embedded NATS server's messages and bytes and the Go allocations per event")
}

// cpuCommand is `loadgen cpu`: the named processes' CPU over --duration,
// with no load (the idle cost), as a JSON line {"cpu": ...}.
func cpuCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cpu", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var t cpuTarget
	cpuFlags(fs, &t)
	d := fs.Duration("duration", 30*time.Second, "how long to measure")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if t.empty() || *d <= 0 {
		fmt.Fprintln(stderr, "loadgen cpu:", errNoCPUTarget, "and a positive --duration")
		return 2
	}
	var e0, e1 engineReading
	a, err := t.read()
	if err == nil && t.metricsURL != "" {
		e0, err = readEngine(metricsClient, t.metricsURL)
	}
	if err != nil {
		fmt.Fprintln(stderr, "loadgen cpu:", err)
		return 1
	}
	time.Sleep(*d)
	b, err := t.read()
	if err == nil && t.metricsURL != "" {
		e1, err = readEngine(metricsClient, t.metricsURL)
	}
	if err != nil {
		fmt.Fprintln(stderr, "loadgen cpu:", err)
		return 1
	}
	out := struct {
		CPU cpuReport `json:"cpu"`
		// Engine is per second here (the idle work), not per event.
		Engine *engineReport `json:"engine_per_second,omitempty"`
	}{CPU: cpuBetween(a, b, 0)}
	if t.metricsURL != "" {
		// Per second: the "events" are the seconds of the window (at
		// least one), so the report's per-event fields read per second.
		eng := engineBetween(e0, e1, max(1, int64(math.Round(b.at.Sub(a.at).Seconds()))))
		out.Engine = &eng
	}
	line, _ := json.Marshal(out)
	fmt.Fprintln(stdout, string(line))
	return 0
}
