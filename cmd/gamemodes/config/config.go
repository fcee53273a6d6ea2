// Package config is the command line and environment of the gamemodes
// binary: the Config every role runs with, and the flag set that fills it
// (each flag also an environment variable GAMEMODES_<FLAG>). It is a package
// of its own so that the deployment checks can parse a manifest's container
// arguments with the binary's own flags.
package config

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	jsadapter "github.com/gamemodes/gamemodes/adapters/jetstream"
	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/peterbourgon/ff/v3"
)

// Roles a process can run.
const (
	RoleEdge     = "edge"
	RoleWorker   = "worker"
	RoleArchiver = "archiver"
)

// Config is the parsed command line and environment (GAMEMODES_<FLAG>).
type Config struct {
	Roles        []string
	HTTPAddr     string
	NATSURL      string
	NATSListen   string
	NATSConfig   string
	NATSUser     string
	NATSPassword string
	DataDir      string
	PostgresURL  string
	PlayerTTL    time.Duration
	Regions      []string
	GameModes    []int
	Partitions   int
	Replicas     int
	EventsMaxAge time.Duration
	DedupWindow  time.Duration
	InstanceID   string
	LogLevel     string
	LogFormat    string
	NoMigrate    bool
	PprofAddr    string
	FlushEvery   time.Duration

	JWTSecretFile    string
	JWTPublicKeyFile string
	RateLimitUser    float64
	RateBurstUser    int
	RateLimitAddr    float64
	RateBurstAddr    int
	TrustedProxies   []string
	MaxInflight      int
	MaxStreams       int
	NoOpsPage        bool

	ConsistencyWait    time.Duration
	ConsistencyWaiters int
	DrainDelay         time.Duration

	// Secured connections: NATS client credentials and TLS, the embedded
	// server's TLS, HTTPS on the edge, secrets read from files.
	NATSCreds         string
	NATSNKeySeed      string
	NATSTLSCA         string
	NATSTLSCert       string
	NATSTLSKey        string
	NATSTLSServerName string
	NATSTLSFirst      bool
	NATSPasswordFile  string
	NATSListenTLSCert string
	NATSListenTLSKey  string
	NATSListenTLSCA   string
	TLSCert           string
	TLSKey            string
	PostgresURLFile   string

	catalog *domain.Catalog
}

// Catalog returns the regions and game modes of --regions and --game-modes
// (nil before the flags are parsed and finished).
func (c Config) Catalog() *domain.Catalog { return c.catalog }

// Has reports whether the process runs role.
func (c Config) Has(role string) bool { return slices.Contains(c.Roles, role) }

// Topology returns the NATS topology settings.
func (c Config) Topology() topology.Config {
	return topology.Config{
		Partitions: c.Partitions, Replicas: c.Replicas, PlayerTTL: c.PlayerTTL,
		EventsMaxAge: c.EventsMaxAge, DuplicateWindow: c.DedupWindow,
	}.Defaults()
}

// NewFlagSet declares the flags shared by serve, rebuild and migrate into a
// flag set named name that fills c; call the returned function after parsing
// to derive and check the rest of c (roles, catalog, topology).
func NewFlagSet(name string, c *Config) (*flag.FlagSet, func() error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	roles := fs.String("roles", "all", "roles to run: all, or a comma list of edge, worker, archiver")
	fs.StringVar(&c.HTTPAddr, "http-addr", ":8080", "HTTP listen address of the edge")
	fs.StringVar(&c.NATSURL, "nats-url", "", "NATS server URL(s), comma separated; empty runs an embedded server")
	fs.StringVar(&c.NATSListen, "nats-listen", "127.0.0.1:4222", "client address of the embedded NATS server")
	fs.StringVar(&c.NATSConfig, "nats-config", "", "nats-server configuration file for the embedded server (users, accounts)")
	fs.StringVar(&c.NATSUser, "nats-user", "", "NATS user to connect as (or user:password@ in --nats-url)")
	fs.StringVar(&c.NATSPassword, "nats-password", "", "password of --nats-user (prefer --nats-password-file: a flag shows in ps)")
	fs.StringVar(&c.DataDir, "data-dir", "./data", "directory of the embedded NATS server's JetStream store")
	fs.StringVar(&c.PostgresURL, "postgres-url", "", "Postgres URL of the event archive (also DATABASE_URL); empty: the archiver waits")
	fs.DurationVar(&c.PlayerTTL, "player-ttl", time.Hour, "how long a player stays counted without any event of theirs (Go duration)")
	regions := fs.String("regions", strings.Join(domain.DefaultRegions, ","), "comma list of regions")
	modes := fs.String("game-modes", "1-10", "comma list of game modes and ranges")
	fs.IntVar(&c.Partitions, "partitions", topology.DefaultPartitions, "player partitions of a newly created events stream (an existing stream keeps its own)")
	fs.IntVar(&c.Replicas, "replicas", 1, "replicas of the stream and buckets when created (3 on a cluster)")
	fs.DurationVar(&c.EventsMaxAge, "events-max-age", 7*24*time.Hour, "how long events stay in the stream (the archive's backlog limit)")
	fs.DurationVar(&c.DedupWindow, "dedup-window", 2*time.Minute, "how long an event_id is remembered for deduplication in the stream")
	fs.StringVar(&c.InstanceID, "instance-id", defaultInstanceID(), "name of this process in shards, logs and NATS")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", "auto", "json, text, or auto (JSON unless on a terminal)")
	fs.BoolVar(&c.NoMigrate, "no-migrate", false, "do not apply database migrations at start")
	fs.StringVar(&c.JWTSecretFile, "jwt-secret-file", "", "file holding the HS256 secret of reporter tokens (at least 32 bytes); turns authentication of POST /api/v1/event on")
	fs.StringVar(&c.JWTPublicKeyFile, "jwt-public-key-file", "", "PEM public key (RS256 or EdDSA) of reporter tokens; turns authentication of POST /api/v1/event on")
	fs.Float64Var(&c.RateLimitUser, "rate-limit-user", 0, "events per second per user_id (0: unlimited)")
	fs.IntVar(&c.RateBurstUser, "rate-burst-user", 0, "burst of --rate-limit-user (default: the rate, at least 1)")
	fs.Float64Var(&c.RateLimitAddr, "rate-limit-addr", 0, "API requests per second per client address (0: unlimited)")
	fs.IntVar(&c.RateBurstAddr, "rate-burst-addr", 0, "burst of --rate-limit-addr (default: the rate, at least 1)")
	trusted := fs.String("trusted-proxies", "", "comma list of load balancer IPs or CIDRs whose X-Forwarded-For is believed")
	fs.IntVar(&c.MaxInflight, "max-inflight", 0, "events being stored at once before POST answers 503 overloaded (0: 4096, negative: no cap)")
	fs.DurationVar(&c.ConsistencyWait, "consistency-wait", 2*time.Second, "longest wait of a lobby read given a consistency token (after=) before 504 timeout")
	fs.IntVar(&c.ConsistencyWaiters, "consistency-max-waiters", 0, "lobby reads waiting for a consistency token at once before 503 overloaded (0: 4096, negative: no cap)")
	fs.BoolVar(&c.NoOpsPage, "no-ops-page", false, "do not serve the operations page at / and /api/v1/ops/status (it shows instance and worker names; turn it off on an edge facing the internet)")
	fs.IntVar(&c.MaxStreams, "max-streams", 0, "open lobby streams (SSE) before GET /api/v1/popular_game_modes/stream answers 503 overloaded (0: 10000, negative: no cap)")
	fs.DurationVar(&c.FlushEvery, "shard-flush-interval", 5*time.Millisecond, "pace of a partition's count-shard writes: two at once, then one per interval (a partition that changes now and then writes each change at once)")
	fs.DurationVar(&c.DrainDelay, "drain-delay", 0, "on SIGTERM, how long /readyz answers 503 while the HTTP listener still serves, before it closes (at least the load balancer's health check interval x fall; 0: close at once)")
	shardEncoding := fs.String("shard-encoding", "binary", "form of the count shards this process writes: binary, or text for a rolling upgrade from a version that reads only text (every version reads both)")
	fs.StringVar(&c.PprofAddr, "pprof-addr", "", "serve Go profiles (net/http/pprof) on this address, e.g. 127.0.0.1:6060; empty: off")
	// Secured connections (README "Securing connections").
	fs.StringVar(&c.NATSCreds, "nats-creds", "", "NATS credentials file (user JWT and NKey seed) of an operator-mode server")
	fs.StringVar(&c.NATSNKeySeed, "nats-nkey-seed", "", "file holding the NKey seed (SU...) of a NATS NKey user")
	fs.StringVar(&c.NATSTLSCA, "nats-tls-ca", "", "PEM file of the CAs that sign the NATS server's certificate (default: the system's roots)")
	fs.StringVar(&c.NATSTLSCert, "nats-tls-cert", "", "PEM client certificate for a NATS server that verifies clients (mutual TLS); with --nats-tls-key")
	fs.StringVar(&c.NATSTLSKey, "nats-tls-key", "", "PEM key of --nats-tls-cert")
	fs.StringVar(&c.NATSTLSServerName, "nats-tls-server-name", "", "name the NATS server's certificate must carry (default: the host of the URL)")
	fs.BoolVar(&c.NATSTLSFirst, "nats-tls-first", false, "do the TLS handshake before the NATS server's INFO (a server with handshake_first)")
	fs.StringVar(&c.NATSPasswordFile, "nats-password-file", "", "file holding the password of --nats-user (preferred to --nats-password)")
	fs.StringVar(&c.NATSListenTLSCert, "nats-listen-tls-cert", "", "PEM certificate the embedded NATS server serves TLS with; with --nats-listen-tls-key")
	fs.StringVar(&c.NATSListenTLSKey, "nats-listen-tls-key", "", "PEM key of --nats-listen-tls-cert")
	fs.StringVar(&c.NATSListenTLSCA, "nats-listen-tls-ca", "", "PEM CAs whose client certificates the embedded NATS server requires (mutual TLS)")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "PEM certificate (chain) of the HTTP edge: serve HTTPS; reloaded on SIGHUP and when the file changes")
	fs.StringVar(&c.TLSKey, "tls-key", "", "PEM key of --tls-cert")
	fs.StringVar(&c.PostgresURLFile, "postgres-url-file", "", "file holding the Postgres URL of the archive (preferred to --postgres-url: the URL may hold a password)")
	finish := func() error {
		var err error
		if c.Roles, err = parseRoles(*roles); err != nil {
			return err
		}
		// The instance id names this worker in the membership bucket: a KV key.
		c.InstanceID = jsadapter.MemberID(c.InstanceID)
		if c.PostgresURL == "" && c.PostgresURLFile == "" {
			c.PostgresURL = os.Getenv("DATABASE_URL")
		}
		c.Regions = domain.ParseRegions(*regions)
		c.TrustedProxies = domain.ParseRegions(*trusted) // a comma list
		if c.GameModes, err = domain.ParseGameModes(*modes); err != nil {
			return fmt.Errorf("--game-modes: %w", err)
		}
		if c.catalog, err = domain.NewCatalog(c.Regions, c.GameModes); err != nil {
			return fmt.Errorf("--regions/--game-modes: %w", err)
		}
		if c.DrainDelay < 0 {
			return fmt.Errorf("--drain-delay %s: must not be negative", c.DrainDelay)
		}
		enc, err := domain.ParseShardEncoding(*shardEncoding)
		if err != nil {
			return fmt.Errorf("--shard-encoding: %w", err)
		}
		c.catalog.SetShardEncoding(enc)
		if err := c.Topology().Validate(); err != nil {
			return fmt.Errorf("--partitions/--replicas/--player-ttl/--dedup-window: %w", err)
		}
		return nil
	}
	return fs, finish
}

// Parse parses args and the GAMEMODES_* environment with the flag set named name.
func Parse(name string, args []string) (Config, error) {
	var c Config
	fs, finish := NewFlagSet(name, &c)
	if err := ff.Parse(fs, args, ff.WithEnvVarPrefix("GAMEMODES")); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	return c, finish()
}

func parseRoles(s string) ([]string, error) {
	if strings.TrimSpace(s) == "all" || strings.TrimSpace(s) == "" {
		return []string{RoleEdge, RoleWorker, RoleArchiver}, nil
	}
	var out []string
	for _, r := range strings.Split(s, ",") {
		r = strings.TrimSpace(r)
		switch r {
		case RoleEdge, RoleWorker, RoleArchiver:
			if !slices.Contains(out, r) {
				out = append(out, r)
			}
		default:
			return nil, errors.New("--roles: unknown role " + r + " (want all, or edge, worker, archiver)")
		}
	}
	return out, nil
}

func defaultInstanceID() string {
	h, err := os.Hostname()
	if err != nil {
		h = "gamemodes"
	}
	return fmt.Sprintf("%s-%d", h, os.Getpid())
}
