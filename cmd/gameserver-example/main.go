// Command gameserver-example simulates a game server using the gamemodes Go
// client (package client): its players enter a random game mode, send
// heartbeats while they play, and leave after a random session, each event
// published straight to the service's NATS JetStream stream. Meanwhile it
// prints the live lobby list of its region each time the service publishes
// it.
//
//	go run ./cmd/gamemodes &      # the service, with its embedded NATS on 127.0.0.1:4222
//	go run ./cmd/gameserver-example --nats-url nats://127.0.0.1:4222 --region US --players 20
//
// Ctrl-C makes the remaining players leave before it exits.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gamemodes/gamemodes/client"
	"github.com/gamemodes/gamemodes/nats/natsconn"
	"github.com/nats-io/nats.go"
)

// config is the command line.
type config struct {
	natsURL   string
	region    string
	players   int
	session   time.Duration
	heartbeat time.Duration
	linger    time.Duration
	prefix    string
	security  client.Security
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("gameserver-example", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.natsURL, "nats-url", nats.DefaultURL, "the service's NATS URL (credentials may be in it, e.g. nats://game_server:PASSWORD@host:4222)")
	cfg.security.AddFlags(fs) // --nats-creds, --nats-tls-ca, ... (client.Security)
	fs.StringVar(&cfg.region, "region", "US", "the game server's region")
	fs.IntVar(&cfg.players, "players", 10, "how many players to simulate")
	fs.DurationVar(&cfg.session, "session", 10*time.Second, "average time a player stays in a game mode (each session lasts 50-150% of it)")
	fs.DurationVar(&cfg.heartbeat, "heartbeat", 2*time.Second, "time between two heartbeats of a playing player")
	fs.DurationVar(&cfg.linger, "linger", 3*time.Second, "how long to keep printing live lists after the last player left")
	fs.StringVar(&cfg.prefix, "player-prefix", "example", "prefix of the simulated players' user ids (<prefix>-<n>)")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	switch {
	case fs.NArg() > 0:
		return config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	case cfg.players < 1:
		return config{}, errors.New("--players must be at least 1")
	case cfg.session <= 0 || cfg.heartbeat <= 0 || cfg.linger < 0:
		return config{}, errors.New("--session and --heartbeat must be positive, --linger not negative")
	}
	return cfg, nil
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gameserver-example:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "gameserver-example:", err)
		stop()
		os.Exit(1)
	}
}

// printer serializes the lines written by players and the subscription.
type printer struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *printer) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format, args...)
}

// run simulates the game server until its players have left and the linger
// time has passed, or until ctx ends (the players then leave at once).
func run(ctx context.Context, cfg config, stdout io.Writer) error {
	out := &printer{w: stdout}
	opts, err := client.ConnectOptions(cfg.security)
	if err != nil {
		return err
	}
	nc, err := nats.Connect(cfg.natsURL, append(opts, nats.Name("gameserver-example"), nats.MaxReconnects(-1))...)
	if err != nil {
		return fmt.Errorf("connect %s: %w", natsconn.Redact(cfg.natsURL), cfg.security.Explain(err))
	}
	defer nc.Close()
	c, err := client.New(nc)
	if err != nil {
		return err
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.Close(closeCtx) // every publish has finished: the players are done
	}()
	if _, err := c.SubscribeRegion(cfg.region, func(l client.List) {
		out.printf("live list %s v%d: %s\n", l.Region, l.Version, describe(l))
	}); err != nil {
		return err
	}
	out.printf("subscribed to %s\n", client.PopularSubject(cfg.region))

	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	events := 0
	for i := 1; i <= cfg.players; i++ {
		wg.Go(func() {
			n, err := play(ctx, c, cfg, fmt.Sprintf("%s-%d", cfg.prefix, i), out)
			mu.Lock()
			defer mu.Unlock()
			events += n
			if err != nil {
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	out.printf("all %d players left: %d events acknowledged\n", cfg.players, events)
	select {
	case <-ctx.Done():
	case <-time.After(cfg.linger):
	}
	return nil
}

// play is one player's session: enter a random mode, heartbeat, leave. It
// returns the number of events acknowledged.
func play(ctx context.Context, c *client.Client, cfg config, user string, out *printer) (int, error) {
	mode := 1 + rand.IntN(10)
	session := time.Duration(float64(cfg.session) * (0.5 + rand.Float64()))
	if _, err := c.Enter(ctx, user, cfg.region, mode); err != nil {
		if ctx.Err() != nil {
			return 0, nil // stopped before the player entered
		}
		return 0, fmt.Errorf("%s enter: %w", user, err)
	}
	out.printf("%s entered mode %d for %s\n", user, mode, session.Round(time.Millisecond))
	events := 1
	beat := time.NewTicker(cfg.heartbeat)
	defer beat.Stop()
	end := time.NewTimer(session)
	defer end.Stop()
playing:
	for {
		select {
		case <-ctx.Done():
			break playing
		case <-end.C:
			break playing
		case <-beat.C:
			if _, err := c.Heartbeat(ctx, user, cfg.region, mode); err != nil {
				if ctx.Err() != nil {
					break playing
				}
				return events, fmt.Errorf("%s heartbeat: %w", user, err)
			}
			events++
		}
	}
	// Leave even when stopping, so the lobby does not count the player until it expires.
	leaveCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := c.Leave(leaveCtx, user, cfg.region, mode); err != nil {
		return events, fmt.Errorf("%s leave: %w", user, err)
	}
	out.printf("%s left mode %d\n", user, mode)
	return events + 1, nil
}

// describe renders a list as "mode 3: 4 players, mode 1: 2 players".
func describe(l client.List) string {
	if len(l.GameModes) == 0 {
		return "no players"
	}
	parts := make([]string, len(l.GameModes))
	for i, m := range l.GameModes {
		parts[i] = fmt.Sprintf("mode %d: %d players", m.GameMode, m.PlayerCount)
	}
	return strings.Join(parts, ", ")
}
