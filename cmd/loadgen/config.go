package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/nats/natsconn"
)

// Modes of the load generator (--mode).
const (
	modeHTTP  = "http"  // POST events over HTTP
	modeNATS  = "nats"  // publish events directly on JetStream (the game server path)
	modeRead  = "read"  // GET lobby lists only
	modeMixed = "mixed" // POST and GET over HTTP, --read-ratio GETs per POST
)

// config is the parsed command line.
type config struct {
	mode    string
	httpURL string
	natsURL string
	// natsSecurity is the NATS connection's credentials and TLS (--nats-creds, --nats-tls-ca, ...).
	natsSecurity natsconn.Config
	// authToken is sent as "Authorization: Bearer <token>" on HTTP requests when set.
	authToken string

	players     int
	regions     []string
	gameModes   []int
	regionSkew  float64
	modeSkew    float64
	leaveRatio  float64
	dropRatio   float64
	staleRatio  float64
	travelRatio float64
	beatRatio   float64

	rate        float64
	concurrency int
	maxPending  int
	duration    time.Duration
	events      int64
	readRatio   float64

	verify         bool
	baseline       bool
	settle         time.Duration
	playerTTL      time.Duration
	expirySlack    time.Duration
	freshnessEvery time.Duration
	rywEvery       time.Duration

	retryFor       time.Duration
	requestTimeout time.Duration
	progressEvery  time.Duration
	seed           uint64
	userPrefix     string

	// cpu names the service's processes whose CPU the run reports.
	cpu cpuTarget
}

// parseConfig parses the command line arguments (without the program name).
func parseConfig(args []string, output io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(output)
	fs.Usage = func() {
		fmt.Fprintln(output, "usage: loadgen [flags]   (see `go doc ./cmd/loadgen` for the method and examples)")
		fs.PrintDefaults()
	}
	fs.StringVar(&c.mode, "mode", modeHTTP, "workload: http (POST events), nats (JetStream publish), read (GET lobby lists), mixed (POST and GET)")
	fs.StringVar(&c.httpURL, "http-url", "", "base URL of the service's HTTP edge, e.g. http://127.0.0.1:8080 (needed by http, read, mixed, and by verification, baseline and freshness)")
	tokenFile := fs.String("auth-token-file", "", "file holding a bearer token (e.g. a game_server JWT) sent on every HTTP request, for a service with authentication on")
	fs.StringVar(&c.natsURL, "nats-url", "", "NATS URL of the service's JetStream, e.g. nats://127.0.0.1:4222 (needed by --mode nats)")
	c.natsSecurity.AddFlags(fs)

	fs.IntVar(&c.players, "players", 100_000, "player population")
	regions := fs.String("regions", strings.Join(domain.DefaultRegions, ","), "comma list of the service's regions; earlier regions are more popular")
	modes := fs.String("game-modes", "1-10", "comma list of the service's game modes and ranges; earlier modes are more popular")
	fs.Float64Var(&c.regionSkew, "region-skew", 1.0, "Zipf exponent of region popularity (0 = uniform)")
	fs.Float64Var(&c.modeSkew, "mode-skew", 1.0, "Zipf exponent of game mode popularity (0 = uniform)")
	fs.Float64Var(&c.leaveRatio, "leave-ratio", 0.25, "share of a counted player's next steps that are a LEAVE")
	fs.Float64Var(&c.dropRatio, "drop-ratio", 0.01, "share of a counted player's next steps that are a drop: the player goes silent without LEAVE")
	fs.Float64Var(&c.staleRatio, "stale-leave-ratio", 0.01, "share of steps that are a stale LEAVE (for a mode the player is not in: must change nothing)")
	fs.Float64Var(&c.travelRatio, "travel-ratio", 0.02, "share of a counted player's next steps that enter a mode in another region")
	fs.Float64Var(&c.beatRatio, "heartbeat-ratio", 0, "share of a counted player's next steps that are a HEARTBEAT of the mode they are in (changes no count)")

	fs.Float64Var(&c.rate, "rate", 0, "open loop: operations per second, paced on a schedule; 0 = closed loop, as fast as --concurrency workers go")
	fs.IntVar(&c.concurrency, "concurrency", 64, "workers (HTTP: one request in flight each; players are sharded over workers)")
	fs.IntVar(&c.maxPending, "max-pending", 4096, "nats: publishes awaiting their acknowledgement, over all workers")
	fs.DurationVar(&c.duration, "duration", 60*time.Second, "how long to send (0 = until --events)")
	fs.Int64Var(&c.events, "events", 0, "stop after this many operations (events; GETs too in read and mixed); 0 = until --duration")
	fs.Float64Var(&c.readRatio, "read-ratio", 2, "mixed: GETs per POST")

	noVerify := fs.Bool("no-verify", false, "skip comparing the lobby with the ground truth after the run")
	fs.BoolVar(&c.baseline, "baseline", false, "read the lobby before starting and add it to the ground truth (a non-empty service nobody else writes to); always on in read mode")
	fs.DurationVar(&c.settle, "settle", 30*time.Second, "how long to wait for the lobby to equal the ground truth after the run")
	fs.DurationVar(&c.playerTTL, "player-ttl", 0, "the service's --player-ttl, to model expiry in the ground truth; 0 = the run is shorter than the TTL, dropped players stay counted")
	fs.DurationVar(&c.expirySlack, "expiry-slack", 5*time.Second, "with --player-ttl: how long after its TTL a silent player may still be counted")
	fs.DurationVar(&c.freshnessEvery, "freshness-every", 100*time.Millisecond, "interval of the freshness probe (0 = off)")
	fs.DurationVar(&c.rywEvery, "ryw-every", 0, "interval of the read-your-writes probe: POST an event over HTTP, then GET the lobby with after=<consistency_token> (0 = off; needs --http-url)")

	fs.DurationVar(&c.retryFor, "retry-for", 60*time.Second, "how long one event is retried (keep below the service's --dedup-window)")
	fs.DurationVar(&c.requestTimeout, "request-timeout", 10*time.Second, "timeout of one HTTP request or NATS acknowledgement")
	fs.DurationVar(&c.progressEvery, "progress-every", time.Second, "interval of the progress line on stderr (0 = off)")
	fs.Uint64Var(&c.seed, "seed", 0, "random seed of the workload (0 = from the clock)")
	fs.StringVar(&c.userPrefix, "user-prefix", "", "prefix of the generated user ids, [A-Za-z0-9_-] (default: lg<run id>-, unique per run)")
	cpuFlags(fs, &c.cpu)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	c.verify = !*noVerify
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			return c, fmt.Errorf("--auth-token-file: %w", err)
		}
		c.authToken = strings.TrimSpace(string(b))
	}
	c.regions = domain.ParseRegions(*regions)
	var err error
	if c.gameModes, err = domain.ParseGameModes(*modes); err != nil {
		return c, err
	}
	return c, c.validate()
}

// validate checks the settings that parsing alone does not.
func (c *config) validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	switch c.mode {
	case modeHTTP, modeRead, modeMixed:
		if c.httpURL == "" {
			bad("--mode %s needs --http-url", c.mode)
		}
	case modeNATS:
		if c.natsURL == "" {
			bad("--mode nats needs --nats-url")
		}
	default:
		bad("--mode %q: want http, nats, read or mixed", c.mode)
	}
	if c.httpURL == "" && (c.verify || c.baseline) {
		bad("verification and --baseline read the lobby: give --http-url (or --no-verify)")
	}
	if c.httpURL != "" {
		if u, err := url.Parse(c.httpURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("--http-url %q: want http://host:port", c.httpURL)
		}
	}
	if _, err := domain.NewCatalog(c.regions, c.gameModes); err != nil {
		bad("catalog: %v", err)
	}
	if c.players < 1 && c.mode != modeRead {
		bad("--players must be at least 1")
	}
	if c.concurrency < 1 || c.maxPending < 1 {
		bad("--concurrency and --max-pending must be at least 1")
	}
	if c.rate < 0 || c.readRatio < 0 || c.events < 0 || c.duration < 0 {
		bad("--rate, --read-ratio, --events and --duration must not be negative")
	}
	if c.duration == 0 && c.events == 0 {
		bad("give --duration or --events")
	}
	for _, r := range []float64{c.leaveRatio, c.dropRatio, c.staleRatio, c.travelRatio, c.beatRatio, c.regionSkew, c.modeSkew} {
		if r < 0 {
			bad("ratios and skews must not be negative")
			break
		}
	}
	if c.leaveRatio+c.dropRatio+c.staleRatio+c.travelRatio+c.beatRatio > 1 {
		bad("--leave-ratio + --drop-ratio + --stale-leave-ratio + --travel-ratio + --heartbeat-ratio must be at most 1")
	}
	if c.userPrefix != "" && !isTokenString(c.userPrefix) {
		bad("--user-prefix %q: want [A-Za-z0-9_-]", c.userPrefix)
	}
	if len(c.userPrefix) > 40 {
		bad("--user-prefix is too long (at most 40 bytes)")
	}
	if c.rywEvery < 0 {
		bad("--ryw-every must not be negative")
	}
	if c.rywEvery > 0 && (c.httpURL == "" || c.mode == modeRead) {
		bad("--ryw-every posts events over HTTP: give --http-url, in a mode that writes")
	}
	if c.retryFor <= 0 || c.requestTimeout <= 0 || c.settle < 0 || c.playerTTL < 0 || c.freshnessEvery < 0 {
		bad("--retry-for and --request-timeout must be positive; --settle, --player-ttl and --freshness-every not negative")
	}
	return errors.Join(errs...)
}

// writes reports whether the mode sends events.
func (c *config) writes() bool { return c.mode != modeRead }

// isTokenString reports whether s is made of [A-Za-z0-9_-] only, so it is
// safe in JSON strings, NATS subject tokens and as a plain user token.
func isTokenString(s string) bool {
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '_' || b == '-') {
			return false
		}
	}
	return true
}
