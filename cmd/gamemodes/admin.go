package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	jsadapter "github.com/gamemodes/gamemodes/adapters/jetstream"
	"github.com/gamemodes/gamemodes/adapters/postgres"
	"github.com/gamemodes/gamemodes/cmd/gamemodes/config"
	"github.com/gamemodes/gamemodes/modules/rebuild"
	"github.com/gamemodes/gamemodes/nats/bootstrap"
	"github.com/gamemodes/gamemodes/nats/embedded"
	"github.com/gamemodes/gamemodes/nats/natsconn"
	"github.com/gamemodes/gamemodes/nats/topology"
	schema "github.com/gamemodes/gamemodes/sql"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/peterbourgon/ff/v3"
)

// migrate applies the database migrations.
func migrate(args []string, stderr io.Writer) int {
	cfg, err := config.Parse("migrate", args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "gamemodes migrate: %v\n", err)
		return 2
	}
	if err := loadSecretFiles(&cfg); err != nil {
		fmt.Fprintf(stderr, "gamemodes migrate: %v\n", err)
		return 1
	}
	if cfg.PostgresURL == "" {
		fmt.Fprintln(stderr, "gamemodes migrate: --postgres-url (or DATABASE_URL) is required")
		return 2
	}
	log := newLogger(cfg, stderr)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := schema.MigrateURL(ctx, cfg.PostgresURL, log)
	if err != nil {
		log.Error("migrate failed", "err", err)
		return 1
	}
	log.Info("database migrated", "result", fmt.Sprintf("%+v", res))
	return 0
}

// runRebuild recreates the live state from the archive.
func runRebuild(args []string, stdout, stderr io.Writer) int {
	var cfg config.Config
	fs, finish := config.NewFlagSet("rebuild", &cfg)
	at := fs.String("at", "", "instant to rebuild, RFC 3339 (default now)")
	window := fs.Duration("window", 0, "how far before --at events are read (default 3 x --player-ttl)")
	force := fs.Bool("force", false, "run even while workers are live (stop them first: they keep their in-memory state)")
	err := ff.Parse(fs, args, ff.WithEnvVarPrefix("GAMEMODES"))
	if err == nil {
		err = finish()
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "gamemodes rebuild: %v\n", err)
		return 2
	}
	if err := loadSecretFiles(&cfg); err != nil {
		fmt.Fprintf(stderr, "gamemodes rebuild: %v\n", err)
		return 1
	}
	if cfg.PostgresURL == "" {
		fmt.Fprintln(stderr, "gamemodes rebuild: --postgres-url (or DATABASE_URL) is required")
		return 2
	}
	instant := time.Now()
	if *at != "" {
		if instant, err = time.Parse(time.RFC3339Nano, *at); err != nil {
			fmt.Fprintf(stderr, "gamemodes rebuild: --at %q: want RFC 3339\n", *at)
			return 2
		}
	}
	log := newLogger(cfg, stderr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()

	url, sec := cfg.NATSURL, natsSecurity(cfg)
	if url == "" {
		sec = natsconn.Config{} // its own embedded server on --data-dir: no users, no TLS
		ns, err := embedded.Start(embedded.Options{Listen: "127.0.0.1:0", DataDir: cfg.DataDir, ServerName: "gamemodes-rebuild", Logger: log})
		if err != nil {
			log.Error("embedded NATS on --data-dir", "err", err)
			return 1
		}
		defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
		url = ns.ClientURL()
	}
	link, err := bootstrap.Connect(url, cfg.InstanceID+"-rebuild", sec, log, nil)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	defer link.Close()
	nc := link.Conn
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(65536))
	if err != nil {
		log.Error("jetstream", "err", err)
		return 1
	}
	topo, err := topology.Ensure(ctx, js, cfg.Topology())
	if err != nil {
		log.Error("topology", "err", err)
		return 1
	}
	pool, err := postgres.Open(ctx, cfg.PostgresURL)
	if err != nil {
		log.Error("postgres", "err", err)
		return 1
	}
	defer pool.Close()
	rep, err := rebuild.Run(ctx, cfg.Catalog(), rebuild.Options{
		At: instant, PlayerTTL: topo.PlayerTTL, Window: *window, Partitions: topo.Partitions, Force: *force,
	}, postgres.NewRebuildArchive(pool), jsadapter.NewRebuildState(js))
	if err != nil {
		log.Error("rebuild failed", "err", err)
		if errors.Is(err, rebuild.ErrLiveWorkers) {
			return 3
		}
		return 1
	}
	log.Info("rebuild done", "users", rep.Users, "players_restored", rep.Players, "players_dropped", rep.Dropped, "applied_seq", rep.AppliedSeq)
	_ = json.NewEncoder(stdout).Encode(rep)
	return 0
}
