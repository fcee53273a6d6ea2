package httpapi_test

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/adapters/httpapi"
	jsadapter "github.com/gamemodes/gamemodes/adapters/jetstream"
	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/modules/ingest"
	"github.com/gamemodes/gamemodes/modules/lobby"
	"github.com/gamemodes/gamemodes/nats/natstest"
	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"
)

// countingSubmitter counts the calls reaching the real submitter.
type countingSubmitter struct {
	inner httpapi.EventSubmitter
	calls atomic.Int64
}

func (c *countingSubmitter) Submit(ctx context.Context, body []byte) (ingest.Receipt, error) {
	c.calls.Add(1)
	return c.inner.Submit(ctx, body)
}

// within runs f and fails the test if it does not return within d.
func within[T any](t *testing.T, d time.Duration, what string, f func() T) T {
	t.Helper()
	done := make(chan T, 1)
	go func() { done <- f() }()
	select {
	case v := <-done:
		return v
	case <-time.After(d):
		t.Fatalf("%s did not answer within %v", what, d)
		panic("unreachable")
	}
}

func TestNATSOutageIs503AtOnceAndRecovers(t *testing.T) {
	dir := t.TempDir()
	port := natstest.FreePort(t)
	ns := natstest.RunServerInDir(t, dir, port)
	nc, js := natstest.Connect(t, ns.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := topology.Ensure(ctx, js, topology.Config{}); err != nil {
		t.Fatalf("ensure topology: %v", err)
	}
	stream, err := js.Stream(ctx, topology.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	count := func() uint64 {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		info, err := stream.Info(ctx)
		if err != nil {
			t.Fatalf("stream info: %v", err)
		}
		return info.State.Msgs
	}
	catalog := domain.DefaultCatalog()
	sub := &countingSubmitter{inner: ingest.NewService(catalog, jsadapter.NewEventPublisher(js), ingest.NewMetrics(prometheus.NewRegistry()))}
	// A SubmitTimeout far longer than the test's patience: an answer in
	// time cannot be the Submit timing out.
	srv := httpapi.New(httpapi.Config{SubmitTimeout: time.Minute}, httpapi.Deps{
		Events: sub, Lobby: lobby.NewView(catalog, nil), Connected: nc.IsConnected,
	})

	before := count()
	if r := post(t, srv, event(set("event_id", "outage-before"))); r.status != http.StatusAccepted {
		t.Fatalf("before the outage: %d %s", r.status, r.body)
	}
	if got := count(); got != before+1 {
		t.Fatalf("stream %d -> %d", before, got)
	}
	stored := before + 1

	ns.Shutdown()
	ns.WaitForShutdown()
	deadline := time.Now().Add(10 * time.Second)
	for nc.IsConnected() {
		if time.Now().After(deadline) {
			t.Fatal("the client did not notice the outage")
		}
		time.Sleep(10 * time.Millisecond)
	}

	calls := sub.calls.Load()
	for i := 0; i < 3; i++ {
		r := within(t, 10*time.Second, "POST during the outage", func() response {
			return post(t, srv, event(set("event_id", "outage-during")))
		})
		if r.status != http.StatusServiceUnavailable || r.errorCode(t) != httpapi.CodeUnavailable {
			t.Fatalf("during the outage: %d %s; want 503 unavailable", r.status, r.body)
		}
		if got := r.header.Get("Retry-After"); got != "1" {
			t.Errorf("Retry-After %q, want 1", got)
		}
	}
	if got := sub.calls.Load(); got != calls {
		t.Fatalf("Submit was called %d times during the outage; want none", got-calls)
	}
	r := do(t, srv, newRequest(http.MethodGet, httpapi.PathReadyz, "", ""))
	if r.status != http.StatusServiceUnavailable || r.json(t)["status"] != "not_ready" || !strings.Contains(r.json(t)["reason"].(string), "NATS") {
		t.Fatalf("readyz during the outage: %d %s", r.status, r.body)
	}
	// GETs are still served from memory.
	if r := do(t, srv, newRequest(http.MethodGet, httpapi.PathPopular+"?region=US", "", "")); r.status != http.StatusOK {
		t.Fatalf("lobby list during the outage: %d %s", r.status, r.body)
	}

	// NATS comes back on the same port and store: the edge recovers by itself.
	natstest.RunServerInDir(t, dir, port)
	deadline = time.Now().Add(30 * time.Second)
	for {
		r := within(t, 70*time.Second, "POST after the outage", func() response {
			return post(t, srv, event(set("event_id", "outage-after")))
		})
		if r.status == http.StatusAccepted {
			break
		}
		if r.status != http.StatusServiceUnavailable || r.errorCode(t) != httpapi.CodeUnavailable {
			t.Fatalf("while recovering: %d %s; want 202 or 503 unavailable", r.status, r.body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("POST still %d %s 30s after NATS returned", r.status, r.body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := count(); got != stored+1 {
		t.Fatalf("stream holds %d messages after recovery, want %d (nothing from the refused requests)", got, stored+1)
	}
	if r := do(t, srv, newRequest(http.MethodGet, httpapi.PathReadyz, "", "")); r.status != http.StatusOK {
		t.Fatalf("readyz after recovery: %d %s", r.status, r.body)
	}
}

// /readyz says when the events stream is not connected.
func TestReadyzReportsDisconnected(t *testing.T) {
	var up atomic.Bool
	srv := httpapi.New(httpapi.Config{}, httpapi.Deps{Events: unavailable{}, Lobby: lobby.NewView(domain.DefaultCatalog(), nil), Connected: up.Load})
	r := do(t, srv, newRequest(http.MethodGet, httpapi.PathReadyz, "", ""))
	if r.status != http.StatusServiceUnavailable || r.json(t)["reason"] != "the events stream (NATS) is not connected" {
		t.Fatalf("disconnected: %d %s", r.status, r.body)
	}
	up.Store(true)
	r = do(t, srv, newRequest(http.MethodGet, httpapi.PathReadyz, "", ""))
	if r.status != http.StatusOK {
		t.Fatalf("connected: %d %s", r.status, r.body)
	}
}

func TestFxModulePassesConnected(t *testing.T) {
	var srv *httpapi.Server
	app := fx.New(
		fx.NopLogger,
		fx.Supply(httpapi.Config{Addr: "127.0.0.1:0"}),
		fx.Supply(httpapi.ConnectedFunc(func() bool { return false })),
		fx.Supply(fx.Annotate(unavailable{}, fx.As(new(httpapi.EventSubmitter)))),
		fx.Supply(fx.Annotate(lobby.NewView(domain.DefaultCatalog(), nil), fx.As(new(httpapi.LobbyLists)))),
		httpapi.Module,
		fx.Populate(&srv),
	)
	if err := app.Err(); err != nil {
		t.Fatalf("fx: %v", err)
	}
	if r := do(t, srv, newRequest(http.MethodGet, httpapi.PathReadyz, "", "")); r.status != http.StatusServiceUnavailable {
		t.Fatalf("readyz: %d %s; want 503 from the supplied ConnectedFunc", r.status, r.body)
	}
}
