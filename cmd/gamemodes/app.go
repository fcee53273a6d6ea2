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
	"github.com/gamemodes/gamemodes/modules/ingest"
	"github.com/gamemodes/gamemodes/modules/lease"
	"github.com/gamemodes/gamemodes/modules/livelist"
	"github.com/gamemodes/gamemodes/modules/lobby"
	"github.com/gamemodes/gamemodes/modules/ops"
	"github.com/gamemodes/gamemodes/modules/partition"
	"github.com/gamemodes/gamemodes/nats/bootstrap"
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
	link, err := bootstrap.Connect(url, cfg.InstanceID, sec, log, func(error) { _ = sd.Shutdown(fx.ExitCode(1)) }, inProcess...)
	if err != nil {
		return nil, err
	}
	nc := link.Conn
	lc.Append(fx.StopHook(link.Close))
	n.Conn = nc
	if n.JS, err = jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(65536), jetstream.WithPublishAsyncTimeout(5*time.Second)); err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if n.Topology, err = bootstrap.EnsureTopology(n.JS, cfg.Topology(), bootstrap.DefaultRetry, log); err != nil {
		return nil, err
	}
	if n.Topology.PlayerTTL != cfg.PlayerTTL {
		log.Warn("players bucket TTL differs from --player-ttl", "bucket", n.Topology.PlayerTTL, "flag", cfg.PlayerTTL)
	}
	log.Info("NATS topology ready", "partitions", n.Topology.Partitions, "player_ttl", n.Topology.PlayerTTL, "replicas", cfg.Replicas)
	return n, nil
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
	partition.Module,
	fx.Provide(
		func(lc fx.Lifecycle, n *NATS, log *slog.Logger) (*jsadapter.PartitionStore, error) {
			s, err := bootstrap.Until(context.Background(), "the worker's partition store", bootstrap.StartRetry, log,
				func(ctx context.Context) (*jsadapter.PartitionStore, error) {
					return jsadapter.NewPartitionStore(ctx, n.JS)
				})
			if err != nil {
				return nil, err
			}
			lc.Append(fx.StopHook(s.Close))
			return s, nil
		},
		func(s *jsadapter.PartitionStore) partition.Store { return s },
		func(n *NATS) partition.Feed { return jsadapter.NewSharedPartitionFeed(n.JS, n.Topology.Partitions) },
		func(lc fx.Lifecycle, n *NATS, log *slog.Logger) (partition.Coordinator, error) {
			coord, err := bootstrap.Until(context.Background(), "the worker's coordinator", bootstrap.StartRetry, log,
				func(ctx context.Context) (*jsadapter.Coordinator, error) {
					return jsadapter.NewCoordinator(ctx, n.JS, log.With("component", "worker"))
				})
			if err != nil {
				return nil, err
			}
			lc.Append(fx.StopHook(coord.Close)) // after the assigner has stopped
			return coord, nil
		},
		func(cfg config.Config, n *NATS, store *jsadapter.PartitionStore) partition.Config {
			return partition.Config{Owner: partition.OwnerConfig{
				OwnerID: cfg.InstanceID, Partitions: n.Topology.Partitions, PlayerTTL: n.Topology.PlayerTTL,
				Writes: store.PlayerWriteLimits(), FlushInterval: cfg.FlushEvery,
			}, Member: cfg.InstanceID, Partitions: n.Topology.Partitions, LeaseTTL: n.Topology.LeaseTTL}
		},
	),
)

// edgeModule serves the API: ingest and the lobby view.
var edgeModule = fx.Module("edge",
	ingest.Module,
	lobby.Module,
	fx.Provide(
		fx.Annotate(func(n *NATS) ingest.Option { return ingest.WithPartitions(n.Topology.Partitions) },
			fx.ResultTags(`group:"`+ingest.OptionsGroup+`"`)),
		fx.Annotate(jsadapter.NewEventPublisher, fx.As(new(ingest.Publisher))),
		fx.Annotate(func(s *ingest.Service) *ingest.Service { return s }, fx.As(new(httpapi.EventSubmitter))),
		fx.Annotate(func(v *lobby.View) *lobby.View { return v }, fx.As(new(httpapi.LobbyLists))),
		// Push: one coalescing broadcaster feeds the SSE streams and the NATS publisher.
		fx.Annotate(func(b *lobby.Broadcaster) *lobby.Broadcaster { return b }, fx.As(new(httpapi.LobbyStreams))),
	),
	fx.Invoke(func(lc fx.Lifecycle, n *NATS, v *lobby.View, log *slog.Logger) {
		v.SetPartitions(n.Topology.Partitions)
		w := jsadapter.NewShardWatcher(n.JS, v.Catalog(), v, log.With("component", "lobby"))
		lc.Append(fx.Hook{
			OnStart: func(ctx context.Context) error {
				_, err := bootstrap.Until(ctx, "the lobby view's watch", bootstrap.StartRetry, log, func(ctx context.Context) (struct{}, error) {
					return struct{}{}, w.Start(ctx)
				})
				return err
			},
			OnStop: func(context.Context) error { w.Stop(); return nil },
		})
	}),
	// The live lists on NATS: one publisher at a time, the holder of the lease.
	livelist.Module,
	fx.Provide(
		func(cfg config.Config, n *NATS) livelist.Config {
			return livelist.Config{Member: cfg.InstanceID, LeaseTTL: n.Topology.LeaseTTL, Refresh: livelist.DefaultRefresh}
		},
		func(b *lobby.Broadcaster) livelist.Source { return b },
		func(cfg config.Config, n *NATS) livelist.Sender {
			return jsadapter.NewPopularSender(n.Conn, cfg.InstanceID)
		},
		fx.Annotate(func(n *NATS, log *slog.Logger) (lease.Lease, error) {
			return bootstrap.Until(context.Background(), "the lobby list publisher's lease", bootstrap.StartRetry, log,
				func(ctx context.Context) (lease.Lease, error) {
					return jsadapter.OpenLease(ctx, n.JS, topology.PopularPublisherKey)
				})
		}, fx.ResultTags(`name:"`+livelist.LeaseName+`"`)),
	),
)

// opsModule serves the operations page at / and its status at
// /api/v1/ops/status on an edge (unless --no-ops-page).
var opsModule = fx.Module("ops",
	fx.Provide(fx.Annotate(func(lc fx.Lifecycle, cfg config.Config, n *NATS, v *lobby.View, m *ingest.Metrics) *ops.Service {
		oc := ops.Config{InstanceID: cfg.InstanceID, Roles: cfg.Roles}
		if cfg.Has(config.RoleArchiver) && cfg.PostgresURL == "" {
			oc.ArchiveOff = "no --postgres-url"
		}
		s := ops.NewService(oc, ops.Deps{
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
		f, err := bootstrap.Until(context.Background(), "the archiver's feed", bootstrap.StartRetry, log, func(ctx context.Context) (*jsadapter.ArchiveFeed, error) {
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
	return hc, nil // checked by httpapi.NewWithLifecycle (startFailure names the flag)
}
