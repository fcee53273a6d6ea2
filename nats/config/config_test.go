// Package config_test proves the NATS server configuration in this directory:
// every file parses, and the users of auth.conf can do what their role needs
// and nothing the tests try beyond it, on a real nats-server loaded from
// single.conf.
package config_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	jsadapter "github.com/gamemodes/gamemodes/adapters/jetstream"
	"github.com/gamemodes/gamemodes/modules/archive"
	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/modules/livelist"
	"github.com/gamemodes/gamemodes/modules/lobby"
	"github.com/gamemodes/gamemodes/modules/partition"
	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// users of auth.conf and the environment variables holding their passwords.
var passwordEnv = map[string]string{
	"admin":       "ADMIN_PASSWORD",
	"edge":        "EDGE_PASSWORD",
	"worker":      "WORKER_PASSWORD",
	"archiver":    "ARCHIVER_PASSWORD",
	"game_server": "GAME_SERVER_PASSWORD",
	"sys":         "SYS_PASSWORD",
}

func password(user string) string { return user + "-test-secret" }

func setPasswords(t *testing.T) {
	t.Helper()
	for user, env := range passwordEnv {
		t.Setenv(env, password(user))
	}
}

const partitions = 4

var topoConfig = topology.Config{Partitions: partitions, PlayerTTL: time.Minute}

// testServer is a running nats-server and how each user of auth.conf
// authenticates to it.
type testServer struct {
	ns   *server.Server
	auth func(t *testing.T, user string) []nats.Option
}

// serverModes are the two ways the users of auth.conf are served: with
// passwords from single.conf, and in operator mode (the same accounts,
// users and permissions as JWTs, nats/secrets) behind mutual TLS.
var serverModes = []struct {
	name  string
	start func(t *testing.T) *testServer
}{
	{"passwords", runServer},
	{"operator-mtls", runOperatorServer},
}

// runServer starts a nats-server from single.conf on a random loopback port
// with its store in a temp dir.
func runServer(t *testing.T) *testServer {
	t.Helper()
	setPasswords(t)
	opts, err := server.ProcessConfigFile("single.conf")
	if err != nil {
		t.Fatalf("single.conf: %v", err)
	}
	ns := startServer(t, opts)
	return &testServer{ns: ns, auth: func(_ *testing.T, user string) []nats.Option {
		return []nats.Option{nats.UserInfo(user, password(user))}
	}}
}

// startServer starts opts on a random loopback port with its store in a
// temp dir.
func startServer(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	opts.Host, opts.Port = "127.0.0.1", -1
	opts.HTTPPort = 0
	opts.StoreDir = t.TempDir()
	opts.NoSigs, opts.NoLog = true, true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("server: %v", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

// client is a connection as one user, with the asynchronous errors the
// server sent it (permission violations arrive that way).
type client struct {
	user string
	nc   *nats.Conn
	js   jetstream.JetStream
	errs chan error
}

func connect(t *testing.T, srv *testServer, user string) *client {
	t.Helper()
	c := &client{user: user, errs: make(chan error, 256)}
	nc, err := nats.Connect(srv.ns.ClientURL(), append(srv.auth(t, user), nats.Name("test "+user),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case c.errs <- err:
			default:
			}
		}))...)
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	c.nc = nc
	if c.js, err = jetstream.New(nc); err != nil {
		t.Fatalf("jetstream as %s: %v", user, err)
	}
	return c
}

func (c *client) drainErrs() {
	for {
		select {
		case <-c.errs:
		default:
			return
		}
	}
}

// denied runs op, which must fail, and asserts that the server reported a
// permissions violation for kind ("Publish" or "Subscription") on subject
// (or on any subject under prefix, for a subject "prefix.>").
// op is cancelled as soon as the violation arrives, so a request that would
// wait for a reply that never comes does not slow the test.
func (c *client) denied(t *testing.T, kind, subject string, op func(ctx context.Context) error) {
	t.Helper()
	c.drainErrs()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	opErr := make(chan error, 1)
	go func() { opErr <- op(ctx) }()
	want := strings.ToLower(fmt.Sprintf("Permissions Violation for %s to %q", kind, subject))
	if prefix, ok := strings.CutSuffix(subject, ".>"); ok { // any subject under prefix
		want = strings.ToLower(fmt.Sprintf("Permissions Violation for %s to \"%s.", kind, prefix))
	}
	timeout := time.After(5 * time.Second)
	for found := false; !found; {
		select {
		case err := <-c.errs:
			found = strings.Contains(strings.ToLower(err.Error()), want)
		case <-timeout:
			t.Fatalf("%s: no %q from the server", c.user, want)
		}
	}
	cancel()
	if err := <-opErr; err == nil {
		t.Fatalf("%s: %s %s succeeded despite the permissions violation", c.user, kind, subject)
	}
}

func streamMsgs(t *testing.T, admin *client, stream string) uint64 {
	t.Helper()
	s, err := admin.js.Stream(context.Background(), stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatalf("stream %s info: %v", stream, err)
	}
	return info.State.Msgs
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func eventPayload(user, region string) []byte {
	return fmt.Appendf(nil, `{"user_id":%q,"event_type":"ENTER_GAME_MODE","event_payload":{"game_mode":1,"region":%q}}`, user, region)
}

// TestConfigFilesParse loads every server configuration with passwords as
// nats-server does. node1-3.conf (compose, operator mode with TLS) include
// the secrets cmd/natssecrets writes: deploy/compose_test.go loads them
// with a generated set.
func TestConfigFilesParse(t *testing.T) {
	setPasswords(t)
	for _, tc := range []struct {
		file, name, store, cluster string
		port, http                 int
	}{
		{"local/node1.conf", "local1", "data/cluster/nats1", "gamemodes-local", 14222, 18222},
		{"local/node2.conf", "local2", "data/cluster/nats2", "gamemodes-local", 14223, 18223},
		{"local/node3.conf", "local3", "data/cluster/nats3", "gamemodes-local", 14224, 18224},
		{"single.conf", "", "data/nats", "", 4222, 0},
	} {
		t.Run(tc.file, func(t *testing.T) {
			o, err := server.ProcessConfigFile(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			if o.ServerName != tc.name || !o.JetStream || o.StoreDir != tc.store || o.Port != tc.port || o.HTTPPort != tc.http {
				t.Errorf("got name %q jetstream %v store %q port %d http %d", o.ServerName, o.JetStream, o.StoreDir, o.Port, o.HTTPPort)
			}
			if o.Cluster.Name != tc.cluster {
				t.Errorf("cluster %q, want %q", o.Cluster.Name, tc.cluster)
			}
			if tc.cluster != "" && len(o.Routes) != 3 {
				t.Errorf("%d routes, want 3", len(o.Routes))
			}
			if o.SystemAccount != "SYS" {
				t.Errorf("system account %q", o.SystemAccount)
			}
			got := map[string]string{}
			for _, u := range o.Users {
				got[u.Username] = u.Account.Name
			}
			want := map[string]string{"admin": "GAMEMODES", "edge": "GAMEMODES", "worker": "GAMEMODES", "archiver": "GAMEMODES", "game_server": "GAME_SERVERS", "sys": "SYS"}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("users %v, want %v", got, want)
			}
			for _, u := range o.Users {
				if u.Password != password(u.Username) {
					t.Errorf("user %s: password not taken from $%s", u.Username, passwordEnv[u.Username])
				}
			}
		})
	}
}

// TestMissingPasswordRefused: there is no built-in password; a server whose
// environment lacks one refuses the configuration.
func TestMissingPasswordRefused(t *testing.T) {
	setPasswords(t)
	os.Unsetenv("GAME_SERVER_PASSWORD") // restored by t.Setenv's cleanup
	if _, err := server.ProcessConfigFile("single.conf"); err == nil || !strings.Contains(err.Error(), "GAME_SERVER_PASSWORD") {
		t.Fatalf("config without GAME_SERVER_PASSWORD: err %v, want a missing variable", err)
	}
}

// TestRolesEnsureTopology: every role creates the topology on an empty
// server and updates it on the next start, as `gamemodes serve` does.
func TestRolesEnsureTopology(t *testing.T) {
	for _, mode := range serverModes {
		for _, user := range []string{"edge", "worker", "archiver"} {
			t.Run(mode.name+"/"+user, func(t *testing.T) {
				testEnsureTopology(t, mode.start(t), user)
			})
		}
	}
}

func testEnsureTopology(t *testing.T, srv *testServer, user string) {
	c := connect(t, srv, user)
	for i := range 2 {
		topo, err := topology.Ensure(ctxT(t), c.js, topoConfig)
		if err != nil {
			t.Fatalf("ensure #%d as %s: %v", i+1, user, err)
		}
		if topo.Partitions != partitions {
			t.Fatalf("partitions %d", topo.Partitions)
		}
	}
	if _, err := topology.Load(ctxT(t), c.js); err != nil {
		t.Fatalf("load as %s: %v", user, err)
	}
}

func TestWrongPasswordRefused(t *testing.T) {
	ns := runServer(t).ns
	if nc, err := nats.Connect(ns.ClientURL(), nats.UserInfo("game_server", "guess")); err == nil {
		nc.Close()
		t.Fatal("connected with a wrong password")
	}
	if nc, err := nats.Connect(ns.ClientURL()); err == nil {
		nc.Close()
		t.Fatal("connected without credentials")
	}
}

// TestPermissions creates the topology as admin, then checks what each user
// can and cannot do, counting what landed as admin.
func TestPermissions(t *testing.T) {
	for _, mode := range serverModes {
		t.Run(mode.name, func(t *testing.T) { testPermissions(t, mode.start(t)) })
	}
}

func testPermissions(t *testing.T, ns *testServer) {
	admin := connect(t, ns, "admin")
	if _, err := topology.Ensure(ctxT(t), admin.js, topoConfig); err != nil {
		t.Fatalf("ensure as admin: %v", err)
	}
	const (
		events  = topology.EventsStream
		players = topology.PlayersStream
		counts  = "KV_" + topology.CountsBucket
	)
	token := "42"
	p := domain.PartitionOf(token, partitions)

	t.Run("game_server", func(t *testing.T) {
		gs := connect(t, ns, "game_server")
		ctx := ctxT(t)
		msg := &nats.Msg{Subject: topology.EventSubject("US", token), Data: eventPayload(token, "US"), Header: nats.Header{}}
		ack, err := gs.js.PublishMsg(ctx, msg, jetstream.WithMsgID("gs-1"))
		if err != nil {
			t.Fatalf("publish event as game_server: %v", err)
		}
		if ack.Stream != events || ack.Duplicate {
			t.Fatalf("ack %+v", ack)
		}
		// Deduplication works through the account import.
		if ack, err = gs.js.PublishMsg(ctx, msg, jetstream.WithMsgID("gs-1")); err != nil || !ack.Duplicate {
			t.Fatalf("republish: ack %+v err %v, want a duplicate", ack, err)
		}

		for _, subject := range []string{
			"$KV.gamemodes_players.0.x",
			"$KV.gamemodes_players._fence.0",
			"$KV.gamemodes_counts.p0",
			"$KV.gamemodes_leases.p0",
			"$KV.gamemodes_workers.w",
			"foo",
			"gamemodes.events.US",
			"gamemodes.events.US.42.extra",
			"_INBOX.fake",
		} {
			gs.denied(t, "Publish", subject, func(ctx context.Context) error {
				_, err := gs.js.Publish(ctx, subject, []byte(`{}`))
				return err
			})
		}
		// No KV handle: the bucket's stream info is out of reach.
		for _, bucket := range []string{topology.PlayersBucket, topology.CountsBucket} {
			gs.denied(t, "Publish", "$JS.API.STREAM.INFO.KV_"+bucket, func(ctx context.Context) error {
				_, err := gs.js.KeyValue(ctx, bucket)
				return err
			})
		}
		for _, api := range []string{"$JS.API.INFO", "$JS.API.STREAM.DELETE." + events, "$JS.API.STREAM.PURGE." + players} {
			gs.denied(t, "Publish", api, func(ctx context.Context) error {
				_, err := gs.nc.RequestWithContext(ctx, api, nil)
				return err
			})
		}
		// It reads nothing: neither the events nor the buckets' subjects.
		for _, subject := range []string{"gamemodes.events.>", "$KV.>", ">"} {
			gs.denied(t, "Subscription", subject, func(context.Context) error {
				sub, err := gs.nc.SubscribeSync(subject)
				if err != nil {
					return err
				}
				_ = gs.nc.Flush()
				if _, err = sub.NextMsg(100 * time.Millisecond); err == nil {
					return errors.New("received a message")
				}
				return err
			})
		}
		// Its inboxes are its own account's: the replies of the gamemodes
		// processes never reach it.
		spy, err := gs.nc.SubscribeSync("_INBOX.>")
		if err != nil {
			t.Fatal(err)
		}
		if err := gs.nc.Flush(); err != nil {
			t.Fatal(err)
		}
		if _, err := admin.js.AccountInfo(ctx); err != nil {
			t.Fatal(err)
		}
		if m, err := spy.NextMsg(200 * time.Millisecond); err == nil {
			t.Fatalf("game_server saw a reply of another account: %s", m.Subject)
		}

		if n := streamMsgs(t, admin, events); n != 1 {
			t.Errorf("events stream holds %d messages, want 1", n)
		}
		for _, s := range []string{players, counts, "KV_" + topology.LeasesBucket, "KV_" + topology.WorkersBucket} {
			if n := streamMsgs(t, admin, s); n != 0 {
				t.Errorf("%s holds %d messages after game_server writes, want 0", s, n)
			}
		}
	})

	// A count shard for the edge to read (written as admin).
	shardCounts := domain.NewCounts(domain.DefaultCatalog())
	shardCounts.Add(domain.Slot{Region: 0, Mode: 0}, 7) // US, mode 1
	shard := domain.DefaultCatalog().EncodeShard(domain.ShardHeader{Partition: 0, Owner: "admin"}, shardCounts)
	adminCounts, err := admin.js.KeyValue(ctxT(t), topology.CountsBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := adminCounts.Put(ctxT(t), topology.ShardKey(0), shard); err != nil {
		t.Fatal(err)
	}

	t.Run("edge", func(t *testing.T) {
		edge := connect(t, ns, "edge")
		ctx := ctxT(t)
		ack, err := jsadapter.NewEventPublisher(edge.js).PublishEvent(ctx, "EU", token, "edge-1", eventPayload(token, "EU"))
		if err != nil || ack.Duplicate || ack.Sequence == 0 {
			t.Fatalf("publish event as edge: ack %+v err %v", ack, err)
		}
		// The lobby view follows the counts bucket (ordered consumer).
		sink := newShardSink()
		w := jsadapter.NewShardWatcher(edge.js, domain.DefaultCatalog(), sink, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err := w.Start(ctx); err != nil {
			t.Fatalf("shard watcher as edge: %v", err)
		}
		t.Cleanup(w.Stop)
		sink.waitShard(t, 0, 7)
		// And a KV handle reads it (direct get) and watches it (push consumer).
		kv, err := edge.js.KeyValue(ctx, topology.CountsBucket)
		if err != nil {
			t.Fatalf("counts bucket as edge: %v", err)
		}
		if e, err := kv.Get(ctx, topology.ShardKey(0)); err != nil || string(e.Value()) != string(shard) {
			t.Fatalf("get shard as edge: %v", err)
		}
		watch, err := kv.WatchAll(ctx)
		if err != nil {
			t.Fatalf("watch counts as edge: %v", err)
		}
		if e := <-watch.Updates(); e == nil || e.Key() != topology.ShardKey(0) {
			t.Fatalf("watch counts as edge: first update %v", e)
		}
		_ = watch.Stop()

		// It writes no bucket.
		edge.denied(t, "Publish", "$KV.gamemodes_counts.p0", func(ctx context.Context) error {
			_, err := kv.Put(ctx, topology.ShardKey(0), []byte("{}"))
			return err
		})
		pkv, err := edge.js.KeyValue(ctx, topology.PlayersBucket) // stream info is allowed (topology)
		if err != nil {
			t.Fatal(err)
		}
		edge.denied(t, "Publish", "$KV.gamemodes_players.0.x", func(ctx context.Context) error {
			_, err := pkv.Put(ctx, "0.x", []byte("{}"))
			return err
		})
		edge.denied(t, "Publish", "$KV.gamemodes_leases.p0", func(ctx context.Context) error {
			_, err := edge.js.Publish(ctx, "$KV.gamemodes_leases.p0", []byte("edge"))
			return err
		})
		// It reads neither the events nor the players.
		edge.denied(t, "Publish", "$JS.API.CONSUMER.CREATE."+events+".>", func(ctx context.Context) error {
			_, err := edge.js.OrderedConsumer(ctx, events, jetstream.OrderedConsumerConfig{})
			return err
		})
		edge.denied(t, "Publish", "$JS.API.DIRECT.GET."+players+".$KV.gamemodes_players.0.x", func(ctx context.Context) error {
			_, err := pkv.Get(ctx, "0.x")
			return err
		})
		edge.denied(t, "Publish", "$JS.API.STREAM.DELETE."+events, func(ctx context.Context) error {
			return edge.js.DeleteStream(ctx, events)
		})

		if n := streamMsgs(t, admin, events); n != 2 {
			t.Errorf("events stream holds %d messages, want 2", n)
		}
		if n := streamMsgs(t, admin, players); n != 0 {
			t.Errorf("players stream holds %d messages after edge writes, want 0", n)
		}
		if n := streamMsgs(t, admin, counts); n != 1 {
			t.Errorf("counts stream holds %d messages, want the admin's 1", n)
		}
	})

	// The lobby lists: an edge holds the publisher lease (create, renew,
	// release, and create again over the deleted key) and publishes on
	// gamemodes.popular.<REGION>; a game server receives them.
	t.Run("lobby lists", func(t *testing.T) {
		gs := connect(t, ns, "game_server")
		got := make(chan *nats.Msg, 100)
		if _, err := gs.nc.ChanSubscribe(topology.PopularSubject("US"), got); err != nil {
			t.Fatal(err)
		}
		if err := gs.nc.Flush(); err != nil {
			t.Fatal(err)
		}
		adminLeases, err := admin.js.KeyValue(ctxT(t), topology.LeasesBucket)
		if err != nil {
			t.Fatal(err)
		}
		leaseRev := func() uint64 {
			e, err := adminLeases.Get(ctxT(t), topology.PopularPublisherKey)
			if err != nil {
				return 0
			}
			return e.Revision()
		}
		startPublisher := func(member string) (*livelist.Publisher, func()) {
			edge := connect(t, ns, "edge")
			view := lobby.NewView(domain.DefaultCatalog(), nil)
			view.SetShard(0, 0, 0, shardCounts)
			view.MarkSynced()
			b := lobby.NewBroadcaster(view, 0)
			b.Start()
			l, err := jsadapter.OpenLease(ctxT(t), edge.js, topology.PopularPublisherKey)
			if err != nil {
				t.Fatalf("popular publisher as edge: %v", err)
			}
			p := livelist.New(l, b, jsadapter.NewPopularSender(edge.js.Conn(), member), livelist.Config{Member: member, LeaseTTL: topology.DefaultLeaseTTL},
				slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
			p.Start()
			return p, func() {
				if err := p.Stop(ctxT(t)); err != nil {
					t.Errorf("stop publisher: %v", err)
				}
				b.Stop()
				select {
				case err := <-edge.errs:
					t.Errorf("edge publishing the lobby lists: %v", err)
				default:
				}
			}
		}
		for i, member := range []string{"edge-1", "edge-2"} {
			p, stop := startPublisher(member)
			select {
			case m := <-got:
				if string(m.Data) != `{"region":"US","game_modes":[{"game_mode":1,"player_count":7}]}` || m.Header.Get(jsadapter.HeaderPopularPublisher) != member {
					t.Fatalf("game_server received %s from %q", m.Data, m.Header.Get(jsadapter.HeaderPopularPublisher))
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("game_server received no lobby list from %s (publishing %v)", member, p.Leader())
			}
			if i == 0 { // renewed
				first := leaseRev()
				deadline := time.Now().Add(10 * time.Second)
				for leaseRev() <= first || !p.Leader() {
					if time.Now().After(deadline) {
						t.Fatal("lease not renewed as edge")
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
			stop()
			if rev := leaseRev(); rev != 0 {
				t.Fatalf("lease of %s not released (revision %d)", member, rev)
			}
		}
		gs.denied(t, "Publish", topology.PopularSubject("US"), func(ctx context.Context) error {
			if err := gs.nc.Publish(topology.PopularSubject("US"), []byte("{}")); err != nil {
				return err
			}
			if err := gs.nc.FlushWithContext(ctx); err != nil {
				return err
			}
			<-ctx.Done()
			return ctx.Err()
		})
		edge := connect(t, ns, "edge")
		edge.denied(t, "Publish", "$KV.gamemodes_leases.other", func(ctx context.Context) error {
			_, err := edge.js.Publish(ctx, "$KV.gamemodes_leases.other", []byte("edge"))
			return err
		})
	})

	t.Run("worker", func(t *testing.T) {
		wk := connect(t, ns, "worker")
		ctx := ctxT(t)
		// The partition feed: an ordered consumer filtered on partition p.
		got := make(chan partition.EventMsg, 10)
		stop, err := jsadapter.NewSharedPartitionFeed(wk.js, 32).Events(ctx, p, 1, func(m partition.EventMsg) { got <- m })
		if err != nil {
			t.Fatalf("events feed as worker: %v", err)
		}
		for _, region := range []string{"US", "EU"} {
			select {
			case m := <-got:
				if m.Partition != p || m.Region != region {
					t.Fatalf("event of partition %d region %q, want %d %q", m.Partition, m.Region, p, region)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("no %s event on partition %d", region, p)
			}
		}
		stop()

		// Fenced player writes and the count shard.
		store, err := jsadapter.NewPartitionStore(ctx, wk.js)
		if err != nil {
			t.Fatalf("partition store as worker: %v", err)
		}
		t.Cleanup(store.Close)
		fence, err := store.Claim(ctx, p, "w1")
		if err != nil {
			t.Fatalf("claim as worker: %v", err)
		}
		player := []byte(`{"r":"US","m":1,"seq":1}`)
		if _, err := wait(func(done func(uint64, error)) {
			store.WritePlayers(p, []partition.PlayerWrite{{Token: token, Value: player}}, fence, done)
		}); err != nil {
			t.Fatalf("write player as worker: %v", err)
		}
		// The same as an atomic batch, as owners write on a replicated bucket.
		batchStore, err := jsadapter.NewPartitionStore(ctx, wk.js, jsadapter.WithAtomicBatches(true))
		if err != nil {
			t.Fatalf("partition store with atomic batches as worker: %v", err)
		}
		t.Cleanup(batchStore.Close)
		if _, err := wait(func(done func(uint64, error)) {
			batchStore.WritePlayers(p, []partition.PlayerWrite{{Token: token, Value: player}, {Token: token + "b", Value: player}}, fence, done)
		}); err != nil {
			t.Fatalf("write a batch of players as worker: %v", err)
		}
		snap, err := store.LoadPartition(ctx, 0, func([]partition.StoredPlayer) {})
		if err != nil {
			t.Fatalf("load partition 0 as worker: %v", err)
		}
		if _, err := wait(func(done func(uint64, error)) { store.WriteShard(0, shard, snap.ShardRev, done) }); err != nil {
			t.Fatalf("write shard as worker: %v", err)
		}
		var loaded []partition.StoredPlayer
		if _, err = store.LoadPartition(ctx, p, func(b []partition.StoredPlayer) { loaded = append(loaded, b...) }); err != nil {
			t.Fatalf("load partition as worker: %v", err)
		}
		if len(loaded) != 2 || loaded[0].Token != token || loaded[1].Token != token+"b" {
			t.Fatalf("loaded players %+v", loaded)
		}
		// The players stream read directly (expiry markers): an ordered
		// consumer filtered on the partition's keys.
		oc, err := wk.js.OrderedConsumer(ctx, players, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{topology.PartitionPlayersSubjects(p)}, HeadersOnly: true})
		if err != nil {
			t.Fatalf("players stream consumer as worker: %v", err)
		}
		if m, err := oc.Next(jetstream.FetchMaxWait(5 * time.Second)); err != nil || m.Subject() != topology.PlayerSubject(p, token) {
			t.Fatalf("players stream as worker: %v", err)
		}
		// A raw revision-checked write, as the owners pipeline them.
		if _, err := wk.js.PublishMsg(ctx, &nats.Msg{Subject: topology.PlayerSubject(0, "x"), Data: []byte("{}")},
			jetstream.WithExpectLastSequencePerSubject(0)); err != nil {
			t.Fatalf("CAS write $KV.gamemodes_players.0.x as worker: %v", err)
		}

		// Membership and leases.
		coord, err := jsadapter.NewCoordinator(ctx, wk.js, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatalf("coordinator as worker: %v", err)
		}
		t.Cleanup(coord.Close)
		if err := coord.Heartbeat(ctx, "w1"); err != nil {
			t.Fatalf("heartbeat: %v", err)
		}
		if m, err := coord.Members(ctx); err != nil || len(m) != 1 || m[0] != "w1" {
			t.Fatalf("members %v err %v", m, err)
		}
		rev, err := coord.Lease(p).Acquire(ctx, "w1")
		if err != nil {
			t.Fatalf("acquire lease: %v", err)
		}
		if rev, err = coord.Lease(p).Renew(ctx, "w1", rev); err != nil {
			t.Fatalf("renew lease: %v", err)
		}
		if err := coord.Lease(p).Release(ctx, "w1", rev); err != nil {
			t.Fatalf("release lease: %v", err)
		}
		leases, err := wk.js.KeyValue(ctx, topology.LeasesBucket)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := leases.Put(ctx, "p99", []byte("w1")); err != nil {
			t.Fatalf("put lease as worker: %v", err)
		}
		if err := coord.Leave(ctx, "w1"); err != nil {
			t.Fatalf("leave: %v", err)
		}

		// Not the archiver's consumer, not events, not deleting anything.
		wk.denied(t, "Publish", "$JS.API.CONSUMER.CREATE."+events+".archiver", func(ctx context.Context) error {
			_, err := wk.js.CreateOrUpdateConsumer(ctx, events, jetstream.ConsumerConfig{Durable: "archiver", AckPolicy: jetstream.AckExplicitPolicy})
			return err
		})
		wk.denied(t, "Publish", "$JS.API.CONSUMER.MSG.NEXT."+events+".archiver", func(ctx context.Context) error {
			_, err := wk.nc.RequestWithContext(ctx, "$JS.API.CONSUMER.MSG.NEXT."+events+".archiver", []byte(`{"batch":1}`))
			return err
		})
		wk.denied(t, "Publish", "gamemodes.events.US.1", func(ctx context.Context) error {
			_, err := wk.js.Publish(ctx, "gamemodes.events.US.1", eventPayload("1", "US"))
			return err
		})
		wk.denied(t, "Publish", "$JS.API.STREAM.PURGE."+players, func(ctx context.Context) error {
			s, err := wk.js.Stream(ctx, players)
			if err != nil {
				return err
			}
			return s.Purge(ctx)
		})
		if n := streamMsgs(t, admin, events); n != 2 {
			t.Errorf("events stream holds %d messages, want 2", n)
		}
	})

	t.Run("archiver", func(t *testing.T) {
		ar := connect(t, ns, "archiver")
		ctx := ctxT(t)
		feed, err := jsadapter.NewArchiveFeed(ctx, ar.js, jsadapter.ArchiveFeedConfig{})
		if err != nil {
			t.Fatalf("archive feed as archiver: %v", err)
		}
		if _, err := feed.Identity(ctx); err != nil {
			t.Fatalf("stream identity as archiver: %v", err)
		}
		if err := feed.Open(ctx, 0); err != nil {
			t.Fatalf("open (consumer reset) as archiver: %v", err)
		}
		var last archive.Message
		for range 2 {
			m, err := feed.Next(ctx)
			if err != nil {
				t.Fatalf("next as archiver: %v", err)
			}
			last = m
		}
		if err := feed.Ack(ctx, last); err != nil {
			t.Fatalf("ack as archiver: %v", err)
		}
		if lag, err := feed.Lag(ctx); err != nil || lag != 0 {
			t.Fatalf("lag %d err %v after acknowledging everything", lag, err)
		}
		feed.Close()

		ar.denied(t, "Publish", "$JS.API.CONSUMER.CREATE."+events+".other", func(ctx context.Context) error {
			_, err := ar.js.CreateOrUpdateConsumer(ctx, events, jetstream.ConsumerConfig{Durable: "other"})
			return err
		})
		ar.denied(t, "Publish", "gamemodes.events.US.1", func(ctx context.Context) error {
			_, err := ar.js.Publish(ctx, "gamemodes.events.US.1", eventPayload("1", "US"))
			return err
		})
		ar.denied(t, "Publish", "$KV.gamemodes_players.0.x", func(ctx context.Context) error {
			_, err := ar.js.Publish(ctx, "$KV.gamemodes_players.0.x", nil)
			return err
		})
		ar.denied(t, "Publish", "$JS.API.STREAM.DELETE."+events, func(ctx context.Context) error {
			return ar.js.DeleteStream(ctx, events)
		})
	})

	// The operations page of an edge reads the stream's state, the
	// archiver's consumer info, and the workers, leases and count shards
	// (batched direct gets): all of it, and nothing more.
	t.Run("edge ops status", func(t *testing.T) {
		edge := connect(t, ns, "edge")
		workers, err := admin.js.KeyValue(ctxT(t), topology.WorkersBucket)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := workers.Put(ctxT(t), "w9", []byte("w9")); err != nil {
			t.Fatal(err)
		}
		leases, err := admin.js.KeyValue(ctxT(t), topology.LeasesBucket)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := leases.Put(ctxT(t), topology.ShardKey(0), []byte("w9")); err != nil {
			t.Fatal(err)
		}
		c := jsadapter.NewOpsReader(edge.js, domain.DefaultCatalog(), partitions).ClusterStatus(ctxT(t))
		if c.Stream.Error != "" || c.Archive.Error != "" || c.Workers.Error != "" || c.Partitions.LeasesError != "" || c.Partitions.ShardsError != "" {
			t.Fatalf("ops status as edge: %+v", c)
		}
		if c.Stream.Messages != 2 || c.Archive.Lag != 0 || len(c.Workers.Members) != 1 || c.Workers.Members[0] != "w9" ||
			c.Partitions.Items[0].Owner != "w9" || c.Partitions.Items[0].ShardOwner != "admin" {
			t.Fatalf("ops status as edge: %+v", c)
		}
		select {
		case err := <-edge.errs:
			t.Fatalf("ops status as edge: %v", err)
		default:
		}
		// Only the archiver's consumer info; no direct get of the players.
		edge.denied(t, "Publish", "$JS.API.CONSUMER.INFO."+events+".other", func(ctx context.Context) error {
			_, err := edge.js.Consumer(ctx, events, "other")
			return err
		})
		edge.denied(t, "Publish", "$JS.API.DIRECT.GET."+players, func(ctx context.Context) error {
			_, err := edge.nc.RequestWithContext(ctx, "$JS.API.DIRECT.GET."+players, []byte(`{"multi_last":["$KV.gamemodes_players.>"]}`))
			return err
		})
	})
}

// wait runs an asynchronous write and waits for its completion.
func wait(write func(done func(uint64, error))) (uint64, error) {
	type result struct {
		seq uint64
		err error
	}
	ch := make(chan result, 1)
	write(func(seq uint64, err error) { ch <- result{seq, err} })
	select {
	case r := <-ch:
		return r.seq, r.err
	case <-time.After(10 * time.Second):
		return 0, errors.New("write not acknowledged")
	}
}

// shardSink records the shards the lobby watcher delivers.
type shardSink struct {
	mu      sync.Mutex
	shards  map[int]domain.Counts
	changed chan struct{}
}

func newShardSink() *shardSink {
	return &shardSink{shards: map[int]domain.Counts{}, changed: make(chan struct{}, 1)}
}

func (s *shardSink) SetShard(p int, _, _ uint64, sh domain.Counts) {
	s.mu.Lock()
	s.shards[p] = sh
	s.mu.Unlock()
	select {
	case s.changed <- struct{}{}:
	default:
	}
}
func (s *shardSink) DeleteShard(p int, _ uint64) { s.mu.Lock(); delete(s.shards, p); s.mu.Unlock() }
func (s *shardSink) MarkSynced()                 {}

func (s *shardSink) waitShard(t *testing.T, p int, us1 int64) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		s.mu.Lock()
		sh, ok := s.shards[p]
		s.mu.Unlock()
		if ok && sh.Get(domain.Slot{Region: 0, Mode: 0}) == us1 {
			return
		}
		select {
		case <-s.changed:
		case <-deadline:
			t.Fatalf("shard %d with US/1=%d not delivered", p, us1)
		}
	}
}
