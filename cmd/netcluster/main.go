// Command netcluster runs a local replicated gamemodes cluster whose every
// connection crosses an emulated network (package cmd/internal/netcluster):
// three official nats-server processes, R3, their routes and client
// connections through delaying links on 127.0.0.1, and gamemodes edges and
// workers connected through those links.
//
//	netcluster run   [flags]                   start it, print its addresses (one JSON line), run until Ctrl-C
//	netcluster bench [flags] -- <loadgen flags> start a fresh one, run loadgen against it, print one JSON line
//
// bench runs bin/loadgen --mode nats --nats-url <the links> --http-url <the
// edge> plus the flags after --, and samples every --sample-every: the
// events stream's and the players stream's (KV_gamemodes_players) last
// sequences through NATS, and each worker's /metrics for
// gamemodes_partition_durable_lag_seconds and _events (the maximum over
// partitions and workers; reported null while no worker exports them).
// After the load it keeps sampling until the players stream has not grown
// for --quiet and no partition has durable lag, or --catchup-timeout. Its
// JSON line: events/s acknowledged (loadgen), player writes/s persisted
// during the load (players stream), durable lag p50/p99/max during the load,
// the catch-up time after the load (by the lag metric and by the players
// stream), loadgen's read-your-writes figures and verification, and the
// harness's own CPU (the links run in it). scripts/bench.sh replicated runs
// the standard set (docs/benchmarks.md).
//
// Examples:
//
//	go run ./cmd/netcluster run --rtt 1ms
//	go run ./cmd/netcluster bench --rtt 1ms -- --rate 20000 --duration 60s --players 300000 --ryw-every 200ms
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	_ "net/http/pprof" // --pprof-addr
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/gamemodes/gamemodes/cmd/internal/netcluster"
)

func main() { os.Exit(mainExit(os.Args[1:], os.Stdout, os.Stderr)) }

// options are the flags of both subcommands.
type options struct {
	dir                       string
	binDir                    string
	build                     bool
	nodes                     int
	rtt, clientRTT            time.Duration
	edges, workers, archivers int
	postgresURL               string
	jetstream                 string
	pprofAddr                 string
	// bench only
	loadgen        string
	sampleEvery    time.Duration
	quiet          time.Duration
	catchupTimeout time.Duration
	samplesOut     string
	label          string
}

func mainExit(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "run" && args[0] != "bench") {
		fmt.Fprintln(stderr, "usage: netcluster run|bench [flags] [-- loadgen flags]   (go doc ./cmd/netcluster)")
		return 2
	}
	cmd := args[0]
	var o options
	fs := flag.NewFlagSet("netcluster "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.dir, "dir", "data/netcluster", "working directory (stores, configs, logs/); emptied first, and refused if it holds something netcluster did not write")
	fs.StringVar(&o.binDir, "bin-dir", "bin", "where the nats-server and gamemodes binaries are (and loadgen for bench)")
	fs.BoolVar(&o.build, "build", true, "build nats-server (the version in go.mod) and gamemodes into --bin-dir first")
	fs.IntVar(&o.nodes, "nodes", 3, "nats-server nodes (the stream and buckets get as many replicas)")
	fs.DurationVar(&o.rtt, "rtt", time.Millisecond, "round trip between two nodes: each route link delays rtt/2 each way")
	fs.DurationVar(&o.clientRTT, "client-rtt", time.Millisecond, "round trip between a client and a node: each client link delays client-rtt/2 each way")
	fs.IntVar(&o.edges, "edges", 1, "gamemodes edges")
	fs.IntVar(&o.workers, "workers", 2, "gamemodes workers")
	fs.IntVar(&o.archivers, "archivers", 0, "gamemodes archivers (with --postgres-url, reached through a link)")
	fs.StringVar(&o.postgresURL, "postgres-url", "", "the archivers' Postgres")
	fs.StringVar(&o.jetstream, "nats-jetstream", "", "text inserted into each node's jetstream { } block, e.g. 'limits { batch { max_msgs: 1000 } }'")
	fs.StringVar(&o.pprofAddr, "pprof-addr", "", "serve net/http/pprof of the harness (the links) on this address, e.g. 127.0.0.1:6061")
	if cmd == "bench" {
		fs.StringVar(&o.loadgen, "loadgen", "", "loadgen binary (default: <bin-dir>/loadgen, built with --build)")
		fs.DurationVar(&o.sampleEvery, "sample-every", 100*time.Millisecond, "sampling interval of the streams and the workers' durable lag")
		fs.DurationVar(&o.quiet, "quiet", 3*time.Second, "after the load: the players stream is caught up once it has not grown for this long")
		fs.DurationVar(&o.catchupTimeout, "catchup-timeout", 2*time.Minute, "after the load: stop waiting for the catch-up after this long")
		fs.StringVar(&o.samplesOut, "samples-out", "", "write every sample to this file (tab separated)")
		fs.StringVar(&o.label, "label", "", "name of the run in the JSON line")
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if cmd == "run" && fs.NArg() > 0 {
		fmt.Fprintf(stderr, "netcluster run: unexpected arguments %v\n", fs.Args())
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	if o.pprofAddr != "" {
		go func() { log.Warn("pprof", "err", http.ListenAndServe(o.pprofAddr, nil)) }()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := start(ctx, o, log)
	if err != nil {
		fmt.Fprintln(stderr, "netcluster:", err)
		return 1
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c.Stop(stopCtx)
	}()
	if cmd == "run" {
		line, _ := json.Marshal(describe(c, o))
		fmt.Fprintln(stdout, string(line))
		log.Info("cluster running; Ctrl-C stops it", "api", c.Edge().URL(), "nats", c.ClientURLs(), "logs", filepath.Join(o.dir, "logs"))
		<-ctx.Done()
		return 0
	}
	res, err := bench(ctx, c, o, fs.Args(), log)
	if err != nil {
		fmt.Fprintln(stderr, "netcluster bench:", err)
		return 1
	}
	line, _ := json.Marshal(res)
	fmt.Fprintln(stdout, string(line))
	return 0
}

// marker names the file netcluster writes in its working directory.
const marker = "netcluster.dir"

// start prepares the working directory and binaries and starts the cluster.
func start(ctx context.Context, o options, log *slog.Logger) (*netcluster.Cluster, error) {
	if err := freshDir(o.dir); err != nil {
		return nil, err
	}
	natsServer, gamemodes := filepath.Join(o.binDir, "nats-server"), filepath.Join(o.binDir, "gamemodes")
	if o.build {
		log.Info("building nats-server and gamemodes", "into", o.binDir)
		var err error
		if natsServer, gamemodes, err = netcluster.Build(o.binDir); err != nil {
			return nil, err
		}
	}
	for _, b := range []string{natsServer, gamemodes} {
		if _, err := os.Stat(b); err != nil {
			return nil, fmt.Errorf("%w (build with --build, or: go build -o %s ...)", err, o.binDir)
		}
	}
	return netcluster.Start(ctx, netcluster.Config{
		Dir: o.dir, NATSServer: natsServer, Gamemodes: gamemodes, Nodes: o.nodes,
		RouteDelay: o.rtt / 2, ClientDelay: o.clientRTT / 2,
		Edges: o.edges, Workers: o.workers, Archivers: o.archivers, PostgresURL: o.postgresURL,
		JetStream: o.jetstream, Log: log,
	})
}

// freshDir empties dir (creating it), refusing a non-empty directory that
// netcluster did not make.
func freshDir(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return err
	case len(entries) > 0:
		if _, err := os.Stat(filepath.Join(dir, marker)); err != nil {
			return fmt.Errorf("%s is not empty and was not made by netcluster (no %s): pick another --dir", dir, marker)
		}
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, marker), []byte("made by cmd/netcluster; emptied at its next start\n"), 0o644)
}

// addresses is what run prints.
type addresses struct {
	API      string   `json:"api"`
	NATS     string   `json:"nats"`
	Edges    []string `json:"edges"`
	Workers  []string `json:"workers"`
	Monitors []string `json:"nats_monitors"`
	Logs     string   `json:"logs"`
	RTTms    float64  `json:"rtt_ms"`
}

func describe(c *netcluster.Cluster, o options) addresses {
	a := addresses{API: c.Edge().URL(), NATS: c.ClientURLs(), Logs: filepath.Join(o.dir, "logs"), RTTms: ms(o.rtt)}
	for _, e := range c.Role(netcluster.RoleEdge) {
		a.Edges = append(a.Edges, e.URL())
	}
	for _, w := range c.Role(netcluster.RoleWorker) {
		a.Workers = append(a.Workers, w.URL())
	}
	for _, n := range c.Nodes {
		a.Monitors = append(a.Monitors, n.MonitorURL())
	}
	return a
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
