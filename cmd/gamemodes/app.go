package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/gamemodes/gamemodes/adapters/httpapi"
	jsadapter "github.com/gamemodes/gamemodes/adapters/jetstream"
	"github.com/gamemodes/gamemodes/adapters/postgres"
	"github.com/gamemodes/gamemodes/cmd/gamemodes/config"
	"github.com/gamemodes/gamemodes/modules/archive"
	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/modules/ingest"
	"github.com/gamemodes/gamemodes/modules/lobby"
	"github.com/gamemodes/gamemodes/modules/ops"
	"github.com/gamemodes/gamemodes/modules/partition"
	"github.com/gamemodes/gamemodes/nats/embedded"
	"github.com/gamemodes/gamemodes/nats/topology"
	schema "github.com/gamemodes/gamemodes/sql"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/fx"
)

// NATS is the process's connection to NATS and the ensured topology.
type NATS struct {
	Conn     *nats.Conn
	JS       jetstream.JetStream
	Topology topology.Topology
	Embedded *server.Server
}

// newNATS starts the embedded server when no URL is configured, connects,
// and ensures the stream and buckets. A connection that ends for good
// (refused credentials or certificate) stops the process with exit code 1.
func newNATS(lc fx.Lifecycle, sd fx.Shutdowner, cfg config.Config, log *slog.Logger) (*NATS, error) {
	n := &NATS{}
	url, sec := cfg.NATSURL, natsSecurity(cfg)
	var inProcess []nats.Option
	if url == "" {
		ns, err := embedded.Start(embedded.Options{
			Listen: cfg.NATSListen, DataDir: cfg.DataDir, ServerName: "gamemodes-" + cfg.InstanceID,
			ConfigFile: cfg.NATSConfig, Logger: log,
			TLSCert: cfg.NATSListenTLSCert, TLSKey: cfg.NATSListenTLSKey, TLSCA: cfg.NATSListenTLSCA,
		})
		if err != nil {
			switch {
			case errors.Is(err, embedded.ErrListen):
				return nil, fmt.Errorf("--nats-listen %s: cannot start the embedded NATS server there (port in use?); choose another address with --nats-listen or use an external server with --nats-url: %w", cfg.NATSListen, err)
			case errors.Is(err, embedded.ErrTLS):
				return nil, fmt.Errorf("--nats-listen-tls-cert %s, --nats-listen-tls-key %s, --nats-listen-tls-ca %s: %w", cfg.NATSListenTLSCert, cfg.NATSListenTLSKey, cfg.NATSListenTLSCA, err)
			case cfg.NATSConfig != "":
				return nil, fmt.Errorf("--nats-config %s: %w", cfg.NATSConfig, err)
			}
			return nil, err
		}
		n.Embedded = ns
		log.Info("embedded NATS server started", "url", ns.ClientURL(), "store", cfg.DataDir, "tls", cfg.NATSListenTLSCert != "", "verify_clients", cfg.NATSListenTLSCA != "")
		lc.Append(fx.StopHook(func() {
			ns.Shutdown()
			ns.WaitForShutdown()
		}))
		url, sec, inProcess = embeddedConnection(cfg, ns)
	}
	link, err := connectNATS(url, cfg.InstanceID, sec, log, func(error) { _ = sd.Shutdown(fx.ExitCode(1)) }, inProcess...)
	if err != nil {
		return nil, err
	}
	nc := link.Conn
	lc.Append(fx.StopHook(link.Close))
	n.Conn = nc
	if n.JS, err = jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(65536), jetstream.WithPublishAsyncTimeout(5*time.Second)); err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if n.Topology, err = ensureTopology(n.JS, cfg.Topology(), log); err != nil {
		return nil, err
	}
	if n.Topology.PlayerTTL != cfg.PlayerTTL {
		log.Warn("players bucket TTL differs from --player-ttl", "bucket", n.Topology.PlayerTTL, "flag", cfg.PlayerTTL)
	}
	log.Info("NATS topology ready", "partitions", n.Topology.Partitions, "player_ttl", n.Topology.PlayerTTL, "replicas", cfg.Replicas)
	return n, nil
}

// Waiting for the topology: each attempt may take ensureAttempt; a server
// that does not answer in time is asked again until ensureWait has passed.
// After an outage longer than the player TTL, nats-server expires every
// player key at once when it starts (millions of deletions and markers with
// a large population) and answers nothing else meanwhile: measured with 10
// million players, longer than a single attempt.
//
// A server without JetStream, or a cluster without a meta leader, answers
// "no responders" at once, and a cluster whose nodes have not all joined yet
// cannot place a replicated stream: such an attempt fails
// at once, so attempts start ensurePause apart, doubling up to 15 s, and the
// wait is logged at each attempt instead of in a busy loop. ensureSleep is
// that pause; tests hold it to choose what the server does between two
// attempts.
var (
	ensureAttempt = 30 * time.Second
	ensureWait    = 15 * time.Minute
	ensurePause   = time.Second
	ensureSleep   = time.Sleep
)

const ensurePauseMax = 15 * time.Second

// ensureTopology creates or checks the stream and buckets, asking again
// while JetStream does not answer in time or cannot place them yet.
func ensureTopology(js jetstream.JetStream, c topology.Config, log *slog.Logger) (topology.Topology, error) {
	topo, err := untilJetStream(log, "the topology requests", ensureAttempt, func(ctx context.Context) (topology.Topology, error) {
		return topology.Ensure(ctx, js, c)
	})
	if err != nil && jetStreamNotReady(err) {
		return topo, fmt.Errorf("NATS JetStream did not answer the topology requests, or could not place them, for %v: %w", ensureWait, err)
	}
	return topo, err
}

// startAttempt bounds each attempt of a role's start request (a stream or
// bucket lookup, a consumer's creation).
var startAttempt = 10 * time.Second

// untilJetStream runs request, a start request of the process, asking
// again while JetStream does not answer in time or cannot serve it yet (see
// jetStreamNotReady): a node of the cluster down, a stream or bucket whose
// leader is being elected, a cluster still forming. Each attempt may take
// attempt; attempts start ensurePause apart, doubling up to 15 s, each
// failure is logged, and the wait ends after ensureWait with the last error.
// An error that will not go away returns at once.
func untilJetStream[T any](log *slog.Logger, what string, attempt time.Duration, request func(context.Context) (T, error)) (T, error) {
	return untilJetStreamCtx(context.Background(), log, what, attempt, request)
}

// untilJetStreamCtx is untilJetStream ending early when parent ends (a
// start hook's context).
func untilJetStreamCtx[T any](parent context.Context, log *slog.Logger, what string, attempt time.Duration, request func(context.Context) (T, error)) (T, error) {
	deadline := time.Now().Add(ensureWait)
	pause := ensurePause
	for try := 1; ; try++ {
		began := time.Now()
		ctx, cancel := context.WithTimeout(parent, attempt)
		v, err := request(ctx)
		cancel()
		if err == nil || !jetStreamNotReady(err) || time.Now().After(deadline) || parent.Err() != nil {
			return v, err
		}
		log.Warn("NATS JetStream is not ready for "+what+" (no responders, timed out, or the cluster cannot place the replicas yet); asking again (after an outage longer than the player TTL the server expires every player at start, which takes minutes with millions of players)",
			"attempt", try, "err", err)
		if rest := pause - time.Since(began); rest > 0 {
			ensureSleep(rest)
		}
		pause = min(2*pause, ensurePauseMax)
	}
}

// jetStreamNotReady tells the errors of a JetStream that is starting,
// recovering or still forming its cluster, which a later attempt may not
// meet, from the errors that will not go away (a configuration the server
// refuses, a permission, a bucket that differs).
func jetStreamNotReady(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrJetStreamNotEnabled) {
		return true
	}
	var api *jetstream.APIError
	if !errors.As(err, &api) {
		return false
	}
	switch api.ErrorCode {
	case 10005, // JSClusterNoPeersErrF: no suitable peers for placement (a peer offline or not joined yet)
		10008, // JSClusterNotAvailErr: JetStream system temporarily unavailable
		10009, // JSClusterNotLeaderErr: no meta leader to handle the request yet
		10004: // JSClusterIncompleteErr: incomplete results
		return true
	}
	return false
}

func newRegistry() (*prometheus.Registry, prometheus.Registerer, prometheus.Gatherer) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg, reg, reg
}

// registerNATSMetrics exports the process's NATS connection and the
// topology's partition count, which the alerts compare the owned partitions
// with (deploy/prometheus/alerts.yml).
func registerNATSMetrics(reg prometheus.Registerer, n *NATS) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gamemodes_nats_connected",
			Help: "1 while the process's NATS connection is connected, 0 while it is disconnected or reconnecting.",
		}, func() float64 {
			if n.Conn.IsConnected() {
				return 1
			}
			return 0
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "gamemodes_nats_reconnects_total",
			Help: "Times the process's NATS connection reconnected.",
		}, func() float64 { return float64(n.Conn.Stats().Reconnects) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gamemodes_topology_partitions",
			Help: "Partitions of the events stream (each must have one owner).",
		}, func() float64 { return float64(n.Topology.Partitions) }),
	)
}

// readiness answers /readyz: NATS connected and the topology ensured (done
// before start), the lobby view synced on an edge, and, on a process that
// archives but serves no API, the archive writable. An edge stays ready while
// Postgres is down: events wait in the stream, so ingestion must go on.
type readiness struct {
	fx.In
	Config   config.Config
	NATS     *NATS
	View     *lobby.View       `optional:"true"`
	Archiver *archive.Archiver `optional:"true"`
}

func (r readiness) Ready() error {
	if st := r.NATS.Conn.Status(); st != nats.CONNECTED {
		return fmt.Errorf("NATS %s", strings.ToLower(st.String()))
	}
	if r.View != nil && !r.View.Synced() {
		return errors.New("lobby view not synced yet")
	}
	if r.Archiver != nil && !r.Config.Has(config.RoleEdge) {
		if err := r.Archiver.Ready(); err != nil {
			return fmt.Errorf("archive: %w", err)
		}
	}
	return nil
}

// appOptions assembles the fx application for cfg's roles.
func appOptions(cfg config.Config, log *slog.Logger) fx.Option {
	opts := []fx.Option{
		fx.Supply(cfg, log, cfg.Catalog()),
		fx.Provide(newRegistry, newNATS, func(n *NATS) jetstream.JetStream { return n.JS }),
		fx.Provide(ingest.NewMetrics),
		fx.Invoke(registerNATSMetrics),
		fx.Invoke(func(n *NATS, reg prometheus.Registerer) {
			if n.Embedded != nil {
				reg.MustRegister(embedded.NewCollector(n.Embedded))
			}
		}),
	}
	if cfg.Has(config.RoleWorker) {
		opts = append(opts, workerModule)
	}
	if cfg.Has(config.RoleArchiver) {
		opts = append(opts, archiverModule(cfg))
	}
	if cfg.Has(config.RoleEdge) {
		opts = append(opts, edgeModule)
		if !cfg.NoOpsPage {
			opts = append(opts, opsModule)
		}
	}
	// Every process serves /healthz, /readyz and /metrics; edges also the API.
	opts = append(opts,
		fx.Provide(func(log *slog.Logger) (httpapi.Config, error) { return httpConfig(cfg, log) }),
		fx.Provide(func(n *NATS) httpapi.ConnectedFunc { return n.Conn.IsConnected }),
		fx.Provide(fx.Annotate(func(r readiness) readiness { return r }, fx.As(new(httpapi.Readiness)))),
		httpapi.Module,
	)
	if cfg.TLSCert != "" {
		opts = append(opts, reloadHTTPSOnHangup)
	}
	return fx.Options(opts...)
}

// workerModule runs the partition owners of this process.
var workerModule = fx.Module("worker",
	fx.Provide(
		partition.NewMetrics,
		func(lc fx.Lifecycle, n *NATS, log *slog.Logger) (*jsadapter.PartitionStore, error) {
			s, err := untilJetStream(log, "the worker's partition store", startAttempt, func(ctx context.Context) (*jsadapter.PartitionStore, error) {
				return jsadapter.NewPartitionStore(ctx, n.JS)
			})
			if err != nil {
				return nil, err
			}
			lc.Append(fx.StopHook(s.Close))
			return s, nil
		},
	),
	fx.Invoke(func(lc fx.Lifecycle, cfg config.Config, n *NATS, catalog *domain.Catalog, store *jsadapter.PartitionStore, m *partition.Metrics, log *slog.Logger) error {
		log = log.With("component", "worker")
		w := partition.NewWorker(partition.OwnerConfig{
			OwnerID: cfg.InstanceID, Partitions: n.Topology.Partitions, PlayerTTL: n.Topology.PlayerTTL,
			Writes: store.PlayerWriteLimits(), FlushInterval: cfg.FlushEvery,
		}, catalog, store, jsadapter.NewSharedPartitionFeed(n.JS, n.Topology.Partitions), m, log)
		coord, err := untilJetStream(log, "the worker's coordinator", startAttempt, func(ctx context.Context) (*jsadapter.Coordinator, error) {
			return jsadapter.NewCoordinator(ctx, n.JS, log)
		})
		if err != nil {
			return err
		}
		a := partition.NewAssigner(cfg.InstanceID, n.Topology.Partitions, n.Topology.LeaseTTL, coord, w, log)
		lc.Append(fx.Hook{
			OnStart: func(context.Context) error { a.Start(); return nil },
			OnStop: func(ctx context.Context) error {
				defer coord.Close()
				return a.Stop(ctx)
			},
		})
		return nil
	}),
)

// edgeModule serves the API: ingest and the lobby view.
var edgeModule = fx.Module("edge",
	ingest.Module,
	fx.Provide(
		fx.Annotate(func(n *NATS) ingest.Option { return ingest.WithPartitions(n.Topology.Partitions) },
			fx.ResultTags(`group:"`+ingest.OptionsGroup+`"`)),
		fx.Annotate(jsadapter.NewEventPublisher, fx.As(new(ingest.Publisher))),
		fx.Annotate(func(s *ingest.Service) *ingest.Service { return s }, fx.As(new(httpapi.EventSubmitter))),
		func(c *domain.Catalog, reg prometheus.Registerer) *lobby.View { return lobby.NewView(c, reg) },
		fx.Annotate(func(v *lobby.View) *lobby.View { return v }, fx.As(new(httpapi.LobbyLists))),
		// Push: one coalescing broadcaster feeds the SSE streams and the NATS publisher.
		func(lc fx.Lifecycle, v *lobby.View) *lobby.Broadcaster {
			b := lobby.NewBroadcaster(v, lobby.DefaultBroadcastInterval)
			lc.Append(fx.StartStopHook(b.Start, b.Stop))
			return b
		},
		fx.Annotate(func(b *lobby.Broadcaster) *lobby.Broadcaster { return b }, fx.As(new(httpapi.LobbyStreams))),
	),
	fx.Invoke(func(lc fx.Lifecycle, n *NATS, v *lobby.View, log *slog.Logger) {
		v.SetPartitions(n.Topology.Partitions)
		w := jsadapter.NewShardWatcher(n.JS, v.Catalog(), v, log.With("component", "lobby"))
		lc.Append(fx.Hook{
			OnStart: func(ctx context.Context) error {
				_, err := untilJetStreamCtx(ctx, log, "the lobby view's watch", startAttempt, func(ctx context.Context) (struct{}, error) {
					return struct{}{}, w.Start(ctx)
				})
				return err
			},
			OnStop: func(context.Context) error { w.Stop(); return nil },
		})
	}),
	fx.Invoke(func(lc fx.Lifecycle, cfg config.Config, n *NATS, b *lobby.Broadcaster, reg prometheus.Registerer, log *slog.Logger) {
		p := jsadapter.NewPopularPublisher(n.JS, b, jsadapter.PopularPublisherConfig{Member: cfg.InstanceID, LeaseTTL: n.Topology.LeaseTTL, Refresh: jsadapter.DefaultPopularRefresh},
			log.With("component", "popular"), reg)
		lc.Append(fx.Hook{
			OnStart: func(ctx context.Context) error {
				_, err := untilJetStreamCtx(ctx, log, "the lobby list publisher", startAttempt, func(ctx context.Context) (struct{}, error) {
					return struct{}{}, p.Start(ctx)
				})
				return err
			},
			OnStop: p.Stop,
		})
	}),
)

// opsModule serves the operations page at / and its status at
// /api/v1/ops/status on an edge (unless --no-ops-page).
var opsModule = fx.Module("ops",
	fx.Provide(fx.Annotate(func(lc fx.Lifecycle, cfg config.Config, n *NATS, v *lobby.View, m *ingest.Metrics) *ops.Service {
		s := ops.NewService(ops.Config{InstanceID: cfg.InstanceID, Roles: cfg.Roles}, ops.Deps{
			Counts: v, Cluster: jsadapter.NewOpsReader(n.JS, v.Catalog(), n.Topology.Partitions),
			Accepted: m.Accepted, Rejected: m.Rejected,
		})
		lc.Append(fx.StartStopHook(s.Start, s.Stop))
		return s
	}, fx.As(new(httpapi.OpsStatus)))),
)

// archiverModule archives every event in Postgres. Without --postgres-url it
// only creates the durable consumer, which keeps the backlog for later.
func archiverModule(cfg config.Config) fx.Option {
	feed := fx.Provide(func(lc fx.Lifecycle, n *NATS, log *slog.Logger) (*jsadapter.ArchiveFeed, error) {
		f, err := untilJetStream(log, "the archiver's feed", startAttempt, func(ctx context.Context) (*jsadapter.ArchiveFeed, error) {
			return jsadapter.NewArchiveFeed(ctx, n.JS, jsadapter.ArchiveFeedConfig{})
		})
		if err != nil {
			return nil, err
		}
		lc.Append(fx.StopHook(f.Close))
		return f, nil
	})
	if cfg.PostgresURL == "" {
		return fx.Module("archiver", feed, fx.Invoke(func(f *jsadapter.ArchiveFeed, log *slog.Logger) {
			log.Warn("archiver role without --postgres-url: not archiving; events wait in the stream for the durable consumer \"archiver\" (kept for --events-max-age)")
		}))
	}
	return fx.Module("archiver",
		feed,
		fx.Provide(
			func(lc fx.Lifecycle) (*pgxpool.Pool, error) {
				pool, err := postgres.Open(context.Background(), cfg.PostgresURL)
				if err != nil {
					return nil, fmt.Errorf("--postgres-url: %w", err)
				}
				lc.Append(fx.StopHook(pool.Close))
				return pool, nil
			},
			fx.Annotate(postgres.NewArchive, fx.As(new(archive.Store))),
			fx.Annotate(func(f *jsadapter.ArchiveFeed) *jsadapter.ArchiveFeed { return f }, fx.As(new(archive.Source))),
			func(f *jsadapter.ArchiveFeed, log *slog.Logger) archive.Config {
				c := archive.Config{Partitions: f.Partitions()}
				if !cfg.NoMigrate {
					c.Prepare = func(ctx context.Context) error {
						_, err := schema.MigrateURL(ctx, cfg.PostgresURL, log)
						return err
					}
				}
				return c
			},
		),
		archive.Module,
	)
}

// httpConfig builds the HTTP server settings: authentication and limits.
func httpConfig(cfg config.Config, log *slog.Logger) (httpapi.Config, error) {
	auth, err := httpapi.NewAuthenticator(httpapi.AuthConfig{SecretFile: cfg.JWTSecretFile, PublicKeyFile: cfg.JWTPublicKeyFile})
	if err != nil {
		return httpapi.Config{}, fmt.Errorf("--jwt-secret-file/--jwt-public-key-file: %w", err)
	}
	if auth != nil {
		log.Info("authentication of POST /api/v1/event on", "algorithms", auth.Algorithms())
	}
	if err := checkHTTPS(cfg); err != nil {
		return httpapi.Config{}, err
	}
	hc := httpapi.Config{
		Addr: cfg.HTTPAddr, Auth: auth, TLSCertFile: cfg.TLSCert, TLSKeyFile: cfg.TLSKey,
		UserRateLimit: cfg.RateLimitUser, UserRateBurst: cfg.RateBurstUser,
		AddrRateLimit: cfg.RateLimitAddr, AddrRateBurst: cfg.RateBurstAddr,
		TrustedProxies: cfg.TrustedProxies, MaxInflight: cfg.MaxInflight,
		ConsistencyWait: cfg.ConsistencyWait, MaxConsistencyWaiters: cfg.ConsistencyWaiters,
		MaxStreams: cfg.MaxStreams, DrainDelay: cfg.DrainDelay,
	}
	if err := hc.Validate(); err != nil {
		return httpapi.Config{}, fmt.Errorf("HTTP limits: %w", err)
	}
	return hc, nil
}
