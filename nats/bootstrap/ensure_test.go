package bootstrap_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/nats/bootstrap"
	"github.com/gamemodes/gamemodes/nats/natstest"
	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// warnLog counts the warnings logged.
type warnLog struct {
	mu sync.Mutex
	n  int
}

func (w *warnLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n += strings.Count(string(p), "level=WARN")
	return len(p), nil
}

func (w *warnLog) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// serverWithoutJetStream starts a NATS server whose JetStream is off (its
// API has no responders) and connects to it.
func serverWithoutJetStream(t *testing.T) (*server.Server, jetstream.JetStream) {
	t.Helper()
	ns := natstest.RunServerWith(t, &server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	_, js := natstest.Connect(t, ns.ClientURL())
	return ns, js
}

// TestEnsureTopologyAsksAgainUntilJetStreamAnswers: a server whose
// JetStream does not answer yet (here: not enabled at first) is asked again,
// after a pause, until it does, instead of the process giving up at the
// first attempt; a server that never answers is given up after the wait.
func TestEnsureTopologyAsksAgainUntilJetStreamAnswers(t *testing.T) {
	retry := bootstrap.Retry{Attempt: 200 * time.Millisecond, Wait: time.Minute, Pause: time.Second, PauseMax: 15 * time.Second}

	// The pause after a failed attempt tells the test and waits for it, so
	// JetStream is enabled between two attempts, never during one (a stream
	// created while nats-server enables JetStream fails with a store error).
	paused, resume := make(chan time.Duration), make(chan struct{})
	retry.Sleep = func(d time.Duration) {
		paused <- d
		<-resume
	}

	ns, js := serverWithoutJetStream(t)
	logs := &warnLog{}
	log := slog.New(slog.NewTextHandler(logs, nil))

	done := make(chan error, 1)
	var topo topology.Topology
	go func() {
		var err error
		topo, err = bootstrap.EnsureTopology(js, topology.Config{Partitions: 4}, retry, log)
		done <- err
	}()
	var d time.Duration
	select {
	case d = <-paused:
	case err := <-done:
		t.Fatalf("ensure returned %v before JetStream was enabled, want it to wait", err)
	case <-time.After(20 * time.Second):
		t.Fatal("no failed attempt")
	}
	if d <= 0 || d > retry.Pause {
		t.Fatalf("pause after a failed attempt %v, want within (0, %v]", d, retry.Pause)
	}
	if n := logs.count(); n != 1 {
		t.Fatalf("%d warnings after the first failed attempt, want 1", n)
	}
	if err := ns.EnableJetStream(&server.JetStreamConfig{StoreDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	close(resume)
	if err := <-done; err != nil {
		t.Fatalf("ensure after JetStream came up: %v", err)
	}
	if topo.Partitions != 4 {
		t.Fatalf("topology %+v", topo)
	}

	// A server that never answers is given up after Wait, asked at most
	// once per Pause meanwhile.
	retry.Wait, retry.Pause, retry.Sleep = 500*time.Millisecond, 100*time.Millisecond, nil
	_, qjs := serverWithoutJetStream(t)
	quiet := &warnLog{}
	if _, err := bootstrap.EnsureTopology(qjs, topology.Config{Partitions: 4}, retry, slog.New(slog.NewTextHandler(quiet, nil))); err == nil || !strings.Contains(err.Error(), "did not answer") {
		t.Fatalf("ensure against a server without JetStream: %v, want gave up", err)
	}
	if n := quiet.count(); n < 1 || n > 7 {
		t.Fatalf("%d attempts logged in 500 ms with a 100 ms pause, want 1 to 7 (no busy loop)", n)
	}
}

// TestEnsureTopologyGivesUpAtOnceOnARefusal: a configuration the server
// refuses, and will refuse again (three replicas on a server that is not
// in a cluster), ends the wait at once with the server's answer.
func TestEnsureTopologyGivesUpAtOnceOnARefusal(t *testing.T) {
	retry := bootstrap.DefaultRetry
	retry.Sleep = func(time.Duration) { t.Error("a refused configuration was asked again") }
	single := natstest.RunServer(t)
	_, js := natstest.Connect(t, single.ClientURL())
	_, err := bootstrap.EnsureTopology(js, topology.Config{Partitions: 4, Replicas: 3, PlayerTTL: time.Hour}, retry, slog.New(slog.NewTextHandler(io.Discard, nil)))
	var api *jetstream.APIError
	if !errors.As(err, &api) || api.ErrorCode != 10074 {
		t.Fatalf("three replicas on a single server: %v, want the server's refusal (10074) at once", err)
	}
}

// TestNotReady: the answers of a JetStream that is starting or
// forming its cluster are waited out; refusals that will not go away are not.
// The API errors are the ones nats-server sends (codes from its errors.json;
// the placement one as seen while a test cluster was forming).
func TestNotReady(t *testing.T) {
	apiErr := func(code int, errCode jetstream.ErrorCode, desc string) error {
		return fmt.Errorf("create events stream: %w", &jetstream.APIError{Code: code, ErrorCode: errCode, Description: desc})
	}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"attempt timed out", fmt.Errorf("ensure topology: %w", context.DeadlineExceeded), true},
		{"request timed out", nats.ErrTimeout, true},
		{"no responders", fmt.Errorf("ensure bucket: %w", nats.ErrNoResponders), true},
		{"JetStream not enabled", jetstream.ErrJetStreamNotEnabled, true},
		{"placement while the cluster forms", apiErr(400, 10005, "no suitable peers for placement, peer offline"), true},
		{"temporarily unavailable", apiErr(503, 10008, "JetStream system temporarily unavailable"), true},
		{"no meta leader", apiErr(500, 10009, "JetStream cluster can not handle request"), true},
		{"incomplete results", apiErr(500, 10004, "incomplete results"), true},
		{"replicas on a single server", apiErr(500, 10074, "replicas > 1 not supported in non-clustered mode"), false},
		{"insufficient resources", apiErr(503, 10023, "insufficient resources"), false},
		{"stream differs", apiErr(400, 10058, "stream name already in use with a different configuration"), false},
		{"not enabled for the account", jetstream.ErrJetStreamNotEnabledForAccount, false},
		{"permission", errors.New("nats: permissions violation for publish to \"$JS.API.STREAM.CREATE.GAMEMODES_EVENTS\""), false},
	} {
		if got := bootstrap.NotReady(tc.err); got != tc.want {
			t.Errorf("%s (%v): not ready %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

// Found by the chaos soak: a worker, archiver or edge (re)started while a
// NATS node was down or cut off failed its start requests (partition store,
// coordinator, archive feed, lobby watch: one 10 s attempt each) and
// exited. They now ask again while JetStream is not ready, as the topology
// does, and still give up at once on an error that stays.
func TestRoleStartRequestsWaitForJetStream(t *testing.T) {
	var slept int
	r := bootstrap.StartRetry
	r.Attempt = time.Second
	r.Sleep = func(time.Duration) { slept++ }
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	calls := 0
	v, err := bootstrap.Until(context.Background(), "a test request", r, log, func(ctx context.Context) (int, error) {
		calls++
		switch calls {
		case 1:
			return 0, nats.ErrNoResponders
		case 2:
			return 0, fmt.Errorf("stream: %w", context.DeadlineExceeded)
		case 3:
			return 0, &jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "JetStream system temporarily unavailable"}
		}
		return 42, nil
	})
	if err != nil || v != 42 || calls != 4 || slept != 3 {
		t.Fatalf("got %d, %v after %d calls and %d pauses; want 42 after 4 calls and 3 pauses", v, err, calls, slept)
	}

	calls = 0
	refused := errors.New("stream not found")
	if _, err := bootstrap.Until(context.Background(), "a test request", r, log, func(context.Context) (int, error) {
		calls++
		return 0, refused
	}); !errors.Is(err, refused) || calls != 1 {
		t.Fatalf("an error that stays: %v after %d calls, want it at once", err, calls)
	}

	// A start hook's context that ends stops the wait.
	ctx, cancel := context.WithCancel(context.Background())
	calls = 0
	if _, err := bootstrap.Until(ctx, "a test request", r, log, func(context.Context) (int, error) {
		calls++
		cancel()
		return 0, nats.ErrNoResponders
	}); !errors.Is(err, nats.ErrNoResponders) || calls != 1 {
		t.Fatalf("after the hook's context ended: %v after %d calls", err, calls)
	}
}
