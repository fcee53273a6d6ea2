// Command chaos is the chaos soak: it runs a replicated gamemodes cluster of
// real processes on 127.0.0.1 (three official nats-server nodes, R3, two
// edges, three workers, an archiver and its standby, a private Postgres),
// every connection between them through a netem link (nats/netem,
// Toxiproxy's library), applies a seeded schedule of faults while a checked
// workload runs, then heals everything, lets it settle and verifies:
//
//   - the lobby of every edge equals the ground truth in every region;
//   - Postgres holds every acknowledged event exactly once, by event_id;
//   - the stored players equal the reference model's state;
//   - the read-your-writes tokens taken during the run are answered;
//   - every stalled worker that held leases lost them and stepped down.
//
// The faults, one every 2-10 s (see Schedule; at most one NATS node down at
// once): kill -9 of a gamemodes process (restarted after 1-8 s), kill -9 of
// a NATS node (mostly the events stream's or the players bucket's leader;
// restarted after 3-15 s), SIGSTOP of a worker for the lease TTL plus 2-7 s,
// a NATS node's routes cut for 5-20 s, 200 ms added to a node's links for
// 5-20 s, the archivers' link to Postgres cut for 5-20 s, Postgres restarted
// (kill -9 or fast shutdown, 1-5 s down).
//
// The workload: players over HTTP (both edges) and NATS-direct, each event
// retried under the same event_id until acknowledged (a minute at most);
// ENTER, LEAVE, stale LEAVE, moves and HEARTBEATs, players who go silent
// (drop), a short --player-ttl so that expiry runs during the faults; one
// HTTP sender reads each write back with its consistency token.
//
// The schedule is a pure function of --seed and --duration: a failure
// prints both and the schedule, and the same command replays the faults
// (their timing against the cluster varies). The last line of the output is
// a JSON summary; the exit code is 0 only when every check passed.
//
//	go run ./cmd/chaos --duration 2m --seed 7
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gamemodes/gamemodes/cmd/internal/netcluster"
	"github.com/gamemodes/gamemodes/cmd/internal/workload"
	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/nats/natsconn"
	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func main() { os.Exit(mainExit(os.Args[1:], os.Stdout, os.Stderr)) }

// options are the command's flags.
type options struct {
	duration   time.Duration
	seed       uint64
	dir        string
	binDir     string
	keep       bool
	rate       int
	players    int
	senders    int
	playerTTL  time.Duration
	partitions int
	settle     time.Duration
	delay      time.Duration
	// command replays the run: the flags given, and the seed drawn when
	// none was.
	command string
}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&o.duration, "duration", 2*time.Minute, "how long the workload and the faults run")
	fs.Uint64Var(&o.seed, "seed", 0, "the nemesis's and the workload's seed (0: random, printed)")
	fs.StringVar(&o.dir, "dir", "", "working directory (stores, logs); default a new temporary one, removed after a pass")
	fs.StringVar(&o.binDir, "bin-dir", "", "prebuilt nats-server and gamemodes binaries (default: built into the working directory)")
	fs.BoolVar(&o.keep, "keep", false, "keep the working directory after a pass too")
	fs.IntVar(&o.rate, "rate", 250, "events per second offered")
	fs.IntVar(&o.players, "players", 4000, "simulated players")
	fs.IntVar(&o.senders, "senders", 24, "concurrent senders (half HTTP, half NATS-direct)")
	fs.DurationVar(&o.playerTTL, "player-ttl", 20*time.Second, "the service's --player-ttl (short, so expiry runs during the faults)")
	fs.IntVar(&o.partitions, "partitions", 16, "partitions of the events stream")
	fs.DurationVar(&o.settle, "settle", 4*time.Minute, "longest wait after the heal for the checks to pass")
	fs.DurationVar(&o.delay, "delay", 0, "one-way delay of every link outside faults")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case o.duration <= 0 || o.rate <= 0 || o.players < o.senders || o.senders < 2 || o.playerTTL < 5*time.Second || o.partitions < 1:
		return o, errors.New("chaos: want --duration > 0, --rate > 0, --senders >= 2, --players >= --senders, --player-ttl >= 5s, --partitions >= 1")
	}
	o.command = strings.TrimSpace("go run ./cmd/chaos " + strings.Join(args, " "))
	if o.seed == 0 {
		o.seed = rand.Uint64N(1_000_000) + 1
		o.command += fmt.Sprintf(" --seed %d", o.seed)
	}
	return o, nil
}

func mainExit(args []string, stdout, stderr io.Writer) int {
	o, err := parseOptions(args, stderr)
	if err != nil {
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sum, err := soak(ctx, o, log)
	if err != nil {
		sum.Result = "error"
		sum.Failures = append(sum.Failures, err.Error())
	}
	if sum.Result != "pass" {
		fmt.Fprintf(stderr, "chaos: %s with --seed %d --duration %s (replay: %s)\nfault schedule:\n%s",
			strings.ToUpper(sum.Result), o.seed, o.duration, o.command, sum.schedule)
		for _, f := range sum.Failures {
			fmt.Fprintln(stderr, "failure:", f)
		}
	}
	b, _ := json.Marshal(sum)
	fmt.Fprintln(stdout, string(b))
	if sum.Result != "pass" {
		return 1
	}
	return 0
}

// summary is the run's last line.
type summary struct {
	Result       string         `json:"result"` // pass, fail or error
	Seed         uint64         `json:"seed"`
	Command      string         `json:"command"`
	DurationS    float64        `json:"duration_s"`
	WallS        float64        `json:"wall_s"`
	Faults       int            `json:"faults"`
	FaultsByKind map[string]int `json:"faults_by_kind"`
	Acknowledged int            `json:"acknowledged"`
	Lost         int            `json:"lost"`
	Duplicated   int            `json:"duplicated"`
	Exact        bool           `json:"exact"`
	// TimeToExactS is the time from the heal to every edge's lobby equal
	// to the ground truth, once that truth is exact (no player near its
	// expiry or uncertain: at least the player TTL plus the slack after the
	// last drop); TimeToBoundsS to the lobby first within the truth's
	// bounds.
	TimeToBoundsS   float64                     `json:"time_to_within_bounds_s"`
	TimeToExactS    float64                     `json:"time_to_exact_s"`
	Latency         map[string]latencySummary   `json:"publish_latency"` // calm, faults: first attempt to acknowledgement
	Errors          map[string]map[string]int64 `json:"publish_errors"`  // calm, faults: failed attempts by kind
	Retries         int64                       `json:"publish_retries"`
	Unresolved      int                         `json:"unresolved"`
	Rejected        int                         `json:"rejected"`
	RYW             rywSummary                  `json:"read_your_writes"`
	Archive         archiveCheck                `json:"archive"`
	Players         playersCheck                `json:"players"`
	Stalls          []stallCheck                `json:"stalls"`
	UnexpectedExits int64                       `json:"unexpected_exits"`
	FaultErrors     []string                    `json:"fault_errors,omitempty"`
	LobbyDiff       []string                    `json:"lobby_diff,omitempty"`
	Failures        []string                    `json:"failures,omitempty"`
	Dir             string                      `json:"dir,omitempty"`
	schedule        string
}

// rywSummary is the read-your-writes figures.
type rywSummary struct {
	Tries    int64 `json:"tries"`    // writes read back during the run
	Answered int64 `json:"answered"` // answered 200 within the service's wait
	Timeouts int64 `json:"timeouts"` // answered 504 (the event not reflected within --consistency-wait)
	Errors   int64 `json:"errors"`
	// TokensChecked were asked again after the heal; TokensAnswered of
	// those answered 200.
	TokensChecked  int `json:"tokens_checked"`
	TokensAnswered int `json:"tokens_answered"`
}

// soak runs the whole soak.
func soak(ctx context.Context, o options, log *slog.Logger) (sum summary, err error) {
	began := time.Now()
	sum = summary{Seed: o.seed, DurationS: o.duration.Seconds(),
		Command: o.command}
	defer func() { sum.WallS = time.Since(began).Round(100 * time.Millisecond).Seconds() }()
	dir := o.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "gamemodes-chaos-"); err != nil {
			return sum, err
		}
		// Postgres runs as its own user when this runs as root: it must
		// reach its directory inside.
		if err := os.Chmod(dir, 0o755); err != nil {
			return sum, err
		}
	}
	keep := o.keep
	defer func() {
		if keep || sum.Result != "pass" {
			sum.Dir = dir
			return
		}
		os.RemoveAll(dir)
	}()
	natsBin, gmBin := filepath.Join(o.binDir, "nats-server"), filepath.Join(o.binDir, "gamemodes")
	if o.binDir == "" {
		log.Info("building nats-server and gamemodes", "dir", filepath.Join(dir, "bin"))
		if natsBin, gmBin, err = netcluster.Build(filepath.Join(dir, "bin")); err != nil {
			return sum, err
		}
	}
	logs := filepath.Join(dir, "cluster", "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return sum, err
	}
	pg, err := netcluster.StartPostgres(ctx, filepath.Join(dir, "postgres"), filepath.Join(logs, "postgres.log"))
	if err != nil {
		return sum, err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = pg.StopFast(sctx)
	}()
	if err := createDatabase(ctx, pg.URL("postgres"), "gamemodes"); err != nil {
		return sum, err
	}
	const leaseTTL = topology.DefaultLeaseTTL
	c, err := netcluster.Start(ctx, netcluster.Config{
		Dir: filepath.Join(dir, "cluster"), NATSServer: natsBin, Gamemodes: gmBin, Nodes: 3,
		RouteDelay: o.delay, ClientDelay: o.delay,
		Edges: 2, Workers: 3, Archivers: 2, PostgresURL: pg.URL("gamemodes"),
		Args: []string{"--player-ttl", o.playerTTL.String(), "--partitions", itoa(o.partitions), "--log-level", "info"},
		Log:  log, ReadyTimeout: 2 * time.Minute,
	})
	if err != nil {
		return sum, err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c.Stop(sctx)
	}()

	admin, err := nats.Connect(c.ClientURLs(), nats.MaxReconnects(-1), nats.Name("chaos-admin"))
	if err != nil {
		return sum, err
	}
	defer admin.Close()
	ajs, err := jetstream.New(admin, jetstream.WithDefaultTimeout(5*time.Second))
	if err != nil {
		return sum, err
	}

	topo := Topology{LeaseTTL: leaseTTL}
	for _, a := range c.Apps {
		switch a.Role {
		case netcluster.RoleEdge:
			topo.Edges = append(topo.Edges, a.Name())
		case netcluster.RoleWorker:
			topo.Workers = append(topo.Workers, a.Name())
		case netcluster.RoleArchiver:
			topo.Archivers = append(topo.Archivers, a.Name())
		}
	}
	for _, n := range c.Nodes {
		topo.Nodes = append(topo.Nodes, n.Name())
	}
	schedule := Schedule(o.seed, o.duration, topo)
	sum.schedule = scheduleText(schedule)
	log.Info("fault schedule", "seed", o.seed, "faults", len(schedule))

	cat := domain.DefaultCatalog()
	runID := fmt.Sprintf("c%d", o.seed)
	pop := workload.NewPopulation(cat, o.players, 1, 1,
		workload.Mix{Leave: 0.2, Drop: 0.003, StaleLeave: 0.05, Travel: 0.05, Heartbeat: 0.3}, o.seed, runID+"-p", true, false)
	// The service may expire a player a little before its TTL counted from
	// the first attempt of its last event (the owner's margin), and surely
	// has some time after (retries, apply lag during faults).
	guard, slack := 3*time.Second, 30*time.Second
	pop.SetExpiryAware(o.playerTTL, guard, slack)
	var web []*workload.HTTPTarget
	for _, e := range c.Role(netcluster.RoleEdge) {
		t, err := workload.NewHTTPTarget(e.URL(), "", o.senders+16, 5*time.Second)
		if err != nil {
			return sum, err
		}
		web = append(web, t)
	}
	bus, err := workload.DialNATS(c.ClientURLs(), natsconn.Config{}, 1024, 5*time.Second)
	if err != nil {
		return sum, err
	}
	defer bus.Close()
	var active atomic.Int32
	l := newLoad(cat, pop, runID, web, bus, &active, o.senders, o.seed)
	nem := newNemesis(c, pg, ajs, &active, log)
	nem.delay, nem.leaseTTL = o.delay, leaseTTL

	// The run: tickets at --rate, the nemesis, a watchdog, progress.
	log.Info("load and faults", "duration", o.duration, "rate", o.rate, "players", o.players)
	start := time.Now()
	tickets := make(chan struct{}, o.senders)
	stopLoad := make(chan struct{})
	var senders sync.WaitGroup
	for _, s := range l.senders {
		senders.Go(func() { l.run(s, tickets) })
	}
	go func() {
		defer close(tickets)
		t := time.NewTicker(time.Second / time.Duration(o.rate))
		defer t.Stop()
		for {
			select {
			case <-stopLoad:
				return
			case <-t.C:
				select {
				case tickets <- struct{}{}:
				default: // every sender busy (retrying): the offered load is not kept up
				}
			}
		}
	}()
	stopNemesis := make(chan struct{})
	nemDone := make(chan struct{})
	go func() { defer close(nemDone); nem.run(start, schedule, stopNemesis) }()
	var exits atomic.Int64
	stopWatch := make(chan struct{})
	watchDone := make(chan struct{})
	go func() { defer close(watchDone); nem.watchdog(stopWatch, &exits) }()
	progress := time.NewTicker(15 * time.Second)
	timer := time.NewTimer(o.duration)
loop:
	for {
		select {
		case <-ctx.Done():
			timer.Stop()
			break loop
		case <-timer.C:
			break loop
		case <-progress.C:
			nem.mu.Lock()
			applied := len(nem.applied)
			nem.mu.Unlock()
			log.Info("progress", "elapsed", time.Since(start).Round(time.Second), "faults", applied, "active", active.Load(),
				"events_sent", l.seq.Load())
		}
	}
	progress.Stop()
	close(stopLoad)
	close(stopNemesis)
	<-nemDone
	log.Info("load over: healing every fault")
	nem.heal()
	healedAt := time.Now()
	senders.Wait()
	close(stopWatch)
	<-watchDone
	if ctx.Err() != nil {
		return sum, ctx.Err()
	}
	// Every process running and ready again.
	for _, p := range append(nodeProcs(c), pg.Process) {
		if !p.Running() {
			if err := p.Start(); err != nil {
				return sum, err
			}
		}
	}
	rctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	for _, n := range c.Nodes {
		if err := c.WaitNodeReady(rctx, n); err != nil {
			cancel()
			return sum, err
		}
	}
	for _, a := range c.Apps {
		if !a.Running() {
			if err := a.Start(); err != nil {
				cancel()
				return sum, err
			}
		}
		// Archivers are not waited for here: the archive check below
		// waits for the archive to catch up, which is what matters (an
		// active archiver may still be retrying a store it lost).
		if a.Role == netcluster.RoleArchiver {
			continue
		}
		if err := c.WaitReady(rctx, a); err != nil {
			cancel()
			return sum, err
		}
	}
	cancel()
	log.Info("healed: every process ready", "after", time.Since(healedAt).Round(100*time.Millisecond))

	// Settle: keep the counted players alive and make the uncertain ones
	// certain, until the truth is exact and every edge's lobby equals it.
	keeper := &sender{id: -1, rng: rand.New(rand.NewPCG(o.seed, 0xcee9))}
	keepEvery := o.playerTTL / 3
	deadline := healedAt.Add(o.settle)
	var lastKeep time.Time
	var diff []string
	exact := false
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if time.Since(lastKeep) >= keepEvery/2 {
			lastKeep = time.Now()
			n, failed := l.keep(keeper, keepEvery)
			if failed > 0 {
				log.Warn("keeping players alive: some events not acknowledged", "sent", n, "failed", failed)
			}
		}
		b, st := pop.Truth(time.Now(), o.playerTTL-guard, slack+guard)
		diff = nil
		for k, e := range c.Role(netcluster.RoleEdge) {
			lobby := readLobby(web[k], cat)
			for _, d := range lobbyDiff(cat, b, lobby) {
				diff = append(diff, e.Name()+" "+d)
			}
		}
		if len(diff) == 0 && sum.TimeToBoundsS == 0 {
			sum.TimeToBoundsS = seconds(time.Since(healedAt))
		}
		if len(diff) == 0 && b.Exact() {
			exact = true
			sum.TimeToExactS = seconds(time.Since(healedAt))
			log.Info("lobby exact", "after_heal", time.Since(healedAt).Round(100*time.Millisecond), "players_counted", st.Counted)
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	sum.Exact = exact
	if !exact {
		sum.LobbyDiff = diff
		if len(sum.LobbyDiff) > 20 {
			sum.LobbyDiff = sum.LobbyDiff[:20]
		}
		sum.Failures = append(sum.Failures, fmt.Sprintf("the lobby did not equal an exact ground truth within %s of the heal", o.settle))
	}

	// The stored players, the archive, the read-your-writes tokens.
	sum.Players = verifyPlayers(ctx, ajs, cat, pop, o, guard, slack, log)
	if sum.Players.Mismatched > 0 {
		sum.Failures = append(sum.Failures, fmt.Sprintf("%d stored players differ from the model", sum.Players.Mismatched))
	}
	acked, unresolved, rejected := l.ids()
	acked = append(acked, keeper.acked...)
	unresolved = append(unresolved, keeper.unresolved...)
	rejected += keeper.rejected
	sum.Archive, err = verifyArchive(ctx, ajs, pg.URL("gamemodes"), runID, acked, unresolved, log)
	if err != nil {
		sum.Failures = append(sum.Failures, "archive: "+err.Error())
	}
	sum.Acknowledged, sum.Lost, sum.Duplicated = sum.Archive.Acknowledged, sum.Archive.Lost, sum.Archive.Duplicated
	sum.Unresolved, sum.Rejected = len(unresolved), rejected
	if sum.Lost > 0 || sum.Duplicated > 0 || sum.Archive.Unknown > 0 {
		sum.Failures = append(sum.Failures, fmt.Sprintf("archive: %d lost, %d duplicated, %d unknown", sum.Lost, sum.Duplicated, sum.Archive.Unknown))
	}
	if rejected > 0 {
		sum.Failures = append(sum.Failures, fmt.Sprintf("%d events refused by the service", rejected))
	}
	sum.RYW = l.rywSummary()
	sum.RYW.TokensChecked, sum.RYW.TokensAnswered = l.checkTokens()
	if sum.RYW.TokensAnswered < sum.RYW.TokensChecked {
		sum.Failures = append(sum.Failures, fmt.Sprintf("read your writes: %d of %d tokens not answered after the heal", sum.RYW.TokensChecked-sum.RYW.TokensAnswered, sum.RYW.TokensChecked))
	}
	nem.checks.Wait()
	nem.mu.Lock()
	for _, s := range nem.stalls {
		sum.Stalls = append(sum.Stalls, *s)
		if !stalledOK(*s) {
			sum.Failures = append(sum.Failures, fmt.Sprintf("stalled %s (resumed %s): held %d leases, kept %v, stepped down %v", s.Worker, s.Resumed, s.Held, s.Kept, s.Stepped))
		}
	}
	sum.Faults = len(nem.applied)
	sum.FaultsByKind = countKinds(nem.applied)
	sum.FaultErrors = nem.errors
	nem.mu.Unlock()
	sum.UnexpectedExits = exits.Load()
	l.stats.mu.Lock()
	sum.Latency = map[string]latencySummary{"calm": summarizeLatency(l.stats.latCalm), "faults": summarizeLatency(l.stats.latFault)}
	sum.Errors = map[string]map[string]int64{"calm": l.stats.errCalm, "faults": l.stats.errFault}
	sum.Retries = l.stats.retries
	l.stats.mu.Unlock()
	sum.Result = "pass"
	if len(sum.Failures) > 0 {
		sum.Result = "fail"
	}
	return sum, nil
}

func nodeProcs(c *netcluster.Cluster) []*netcluster.Process {
	var out []*netcluster.Process
	for _, n := range c.Nodes {
		out = append(out, n.Process)
	}
	return out
}

func seconds(d time.Duration) float64 { return d.Round(100 * time.Millisecond).Seconds() }

// createDatabase creates database name on the server of url (the
// postgres database), unless it exists.
func createDatabase(ctx context.Context, url, name string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
			return fmt.Errorf("create database %s: %w", name, err)
		}
	}
	return nil
}

// readLobby reads every region's lobby list from one edge (a region that
// cannot be read is left out).
func readLobby(t *workload.HTTPTarget, cat *domain.Catalog) map[string]map[int]int64 {
	out := map[string]map[int]int64{}
	for _, reg := range cat.Regions() {
		if got, err := t.Lobby(reg); err == nil {
			out[reg] = got
		}
	}
	return out
}

// verifyPlayers compares the players bucket with the model, asking again
// for up to 30 s while they differ (an owner may not have persisted its
// last writes yet).
func verifyPlayers(ctx context.Context, js jetstream.JetStream, cat *domain.Catalog, pop *workload.Population, o options, guard, slack time.Duration, log *slog.Logger) playersCheck {
	deadline := time.Now().Add(30 * time.Second)
	for {
		var want []playerExpectation
		now := time.Now()
		for i := range pop.Len() {
			st, certain := pop.Expect(i, now, o.playerTTL-guard, slack+guard)
			token := domain.UserToken(pop.UserID(i))
			want = append(want, playerExpectation{Key: topology.PlayerKey(domain.PartitionOf(token, o.partitions), token), State: st, Certain: certain})
		}
		stored, err := readPlayers(ctx, js, cat)
		var c playersCheck
		if err == nil {
			c = checkPlayers(want, stored)
		} else {
			c = playersCheck{Mismatched: -1, Sample: []string{err.Error()}}
		}
		if c.Mismatched == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			if c.Mismatched < 0 {
				c.Mismatched = len(want)
			}
			return c
		}
		log.Info("stored players differ from the model; reading again", "mismatched", c.Mismatched)
		time.Sleep(2 * time.Second)
	}
}

// readPlayers reads and decodes every live key of the players bucket.
func readPlayers(ctx context.Context, js jetstream.JetStream, cat *domain.Catalog) (map[string]domain.PlayerState, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out := map[string]domain.PlayerState{}
	err := readBucket(ctx, js, topology.PlayersBucket, func(e jetstream.KeyValueEntry) error {
		if strings.HasPrefix(e.Key(), "_") {
			return nil // the partitions' fences
		}
		st, err := cat.DecodePlayer(e.Value())
		if err != nil {
			return fmt.Errorf("player %s: %w", e.Key(), err)
		}
		out[e.Key()] = st
		return nil
	})
	return out, err
}

// verifyArchive waits until the archive holds as many distinct events of
// the run as the events stream holds messages (at most 3 minutes), then
// compares it with the events sent.
func verifyArchive(ctx context.Context, js jetstream.JetStream, url, runID string, acked, unresolved []string, log *slog.Logger) (archiveCheck, error) {
	deadline := time.Now().Add(3 * time.Minute)
	for {
		var msgs uint64
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		s, err := js.Stream(sctx, topology.EventsStream)
		if err == nil {
			msgs = s.CachedInfo().State.Msgs
		}
		cancel()
		rows, rerr := archivedIDs(ctx, url, runID)
		if err == nil && rerr == nil {
			distinct := map[string]bool{}
			for _, id := range rows {
				distinct[id] = true
			}
			if uint64(len(distinct)) >= msgs || time.Now().After(deadline) {
				return checkArchive(acked, unresolved, rows, msgs), nil
			}
			log.Info("archive catching up", "archived", len(distinct), "stream", msgs)
		} else if time.Now().After(deadline) {
			return archiveCheck{}, errors.Join(err, rerr)
		}
		select {
		case <-ctx.Done():
			return archiveCheck{}, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// archivedIDs returns the event_id of every archived row of the run.
func archivedIDs(ctx context.Context, url, runID string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT event_id FROM event WHERE event_id LIKE $1", runID+"-%")
	if err != nil {
		return nil, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	sort.Strings(ids)
	return ids, nil
}

// rywSummary returns the read-your-writes figures of the run.
func (l *load) rywSummary() rywSummary {
	l.mu.Lock()
	defer l.mu.Unlock()
	return rywSummary{Tries: l.rywTries, Answered: l.rywAnswered, Timeouts: l.rywTimeouts, Errors: l.rywErrors}
}

// checkTokens asks again, after the heal, with every token kept during the
// run: each must be answered 200 (its event is long reflected).
func (l *load) checkTokens() (checked, answered int) {
	l.mu.Lock()
	tokens := append([]string(nil), l.tokens...)
	l.mu.Unlock()
	for k, rt := range tokens {
		region, token, _ := strings.Cut(rt, "\x00")
		web := l.web[k%len(l.web)]
		checked++
		status, _, err := web.Get(region+"&after="+urlEscape(token), false)
		if err == nil && status == 200 {
			answered++
		}
	}
	return checked, answered
}
