package httpapi_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/adapters/httpapi"
	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/modules/lobby"
	"github.com/prometheus/client_golang/prometheus"
)

// waitEnv is an edge serving lobby reads from a view the test drives: the
// view's shards and applied sequences change only when the test says so.
type waitEnv struct {
	srv  *httpapi.Server
	view *lobby.View
	reg  *prometheus.Registry
}

const waitPartitions = 8

func newWaitEnv(t *testing.T, cfg httpapi.Config) *waitEnv {
	t.Helper()
	reg := prometheus.NewRegistry()
	view := lobby.NewView(domain.DefaultCatalog(), nil)
	view.SetPartitions(waitPartitions)
	srv := httpapi.New(cfg, httpapi.Deps{Lobby: view, Gatherer: reg, Registerer: reg})
	return &waitEnv{srv: srv, view: view, reg: reg}
}

// setUS sets partition p's shard to n players in US mode 1, applied up to seq.
func (e *waitEnv) setUS(p int, n int64, seq uint64) {
	c := domain.DefaultCatalog()
	counts := domain.NewCounts(c)
	slot, _ := c.SlotOf("US", 1)
	counts.Add(slot, n)
	e.view.SetShard(p, 0, seq, counts)
}

func afterURL(region, token string) string {
	return httpapi.PathPopular + "?region=" + region + "&" + httpapi.QueryAfter + "=" + url.QueryEscape(token)
}

func (e *waitEnv) get(t *testing.T, target string) response {
	t.Helper()
	return do(t, e.srv, newRequest(http.MethodGet, target, "", ""))
}

// getAsync sends a GET in the background; the answer comes on the channel
// (status 0 when the request failed, reported with t.Errorf).
func getAsync(t *testing.T, send func() (*http.Response, error)) <-chan response {
	got := make(chan response, 1)
	go func() {
		res, err := send()
		if err != nil {
			t.Errorf("GET: %v", err)
			got <- response{}
			return
		}
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		if err != nil {
			t.Errorf("GET body: %v", err)
		}
		got <- response{status: res.StatusCode, header: res.Header, body: body}
	}()
	return got
}

// inApp sends a GET through the fiber app in the background.
func (e *waitEnv) inApp(t *testing.T, target string) <-chan response {
	return getAsync(t, func() (*http.Response, error) {
		return e.srv.App().Test(newRequest(http.MethodGet, target, "", ""), -1)
	})
}

// metric returns the value of a counter or gauge of e's registry with the
// given label value ("" for none); 0 when absent.
func (e *waitEnv) metric(t *testing.T, name, label string) float64 {
	t.Helper()
	families, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if label != "" && (len(m.GetLabel()) != 1 || m.GetLabel()[0].GetValue() != label) {
				continue
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// waitWaiting waits until n reads wait for their consistency token.
func (e *waitEnv) waitWaiting(t *testing.T, n float64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for e.metric(t, "gamemodes_consistency_waiting", "") != n {
		if time.Now().After(deadline) {
			t.Fatalf("%v reads waiting, want %v", e.metric(t, "gamemodes_consistency_waiting", ""), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func token(p int, seq uint64) string {
	return domain.ConsistencyToken{Partition: p, Seq: seq}.String()
}

func TestMalformedConsistencyTokenIs400(t *testing.T) {
	e := newWaitEnv(t, httpapi.Config{})
	for _, tok := range []string{
		"", "nope", token(3, 42) + "=", "v1.3.42", "AQN", strings.Repeat("A", 65),
		token(waitPartitions, 1), // a partition the stream does not have
		token(3, 42)[:2],
	} {
		r := e.get(t, afterURL("US", tok))
		if r.status != http.StatusBadRequest || r.errorCode(t) != domain.CodeInvalidConsistencyToken {
			t.Errorf("after=%q: status %d body %s; want 400 %s", tok, r.status, r.body, domain.CodeInvalidConsistencyToken)
		}
	}
	// The region is checked first, without waiting.
	r := e.get(t, afterURL("XX", token(3, 42)))
	if r.status != http.StatusBadRequest || r.errorCode(t) != domain.CodeInvalidRegion {
		t.Fatalf("unknown region with a token: status %d body %s", r.status, r.body)
	}
	if got := e.metric(t, "gamemodes_consistency_reads_total", "invalid"); got != 8 {
		t.Fatalf("invalid reads counted %v, want 8", got)
	}
}

func TestConsistencyTokenNotReflectedIs504(t *testing.T) {
	e := newWaitEnv(t, httpapi.Config{ConsistencyWait: 50 * time.Millisecond})
	e.setUS(3, 1, 41) // the view never reaches 42
	r := e.get(t, afterURL("US", token(3, 42)))
	if r.status != http.StatusGatewayTimeout || r.errorCode(t) != httpapi.CodeTimeout {
		t.Fatalf("status %d body %s; want 504 timeout", r.status, r.body)
	}
	if r.header.Get("Retry-After") != "" {
		t.Errorf("504 with Retry-After %q", r.header.Get("Retry-After"))
	}
	if got := e.metric(t, "gamemodes_consistency_reads_total", "timeout"); got != 1 {
		t.Fatalf("timeouts counted %v, want 1", got)
	}
	if got := e.metric(t, "gamemodes_consistency_waiting", ""); got != 0 {
		t.Fatalf("%v reads still waiting", got)
	}
}

func TestConsistencyTokenAnswersOnceReflected(t *testing.T) {
	e := newWaitEnv(t, httpapi.Config{ConsistencyWait: time.Minute})
	e.setUS(3, 1, 41)
	got := e.inApp(t, afterURL("US", token(3, 42)))
	e.waitWaiting(t, 1)
	// Other partitions advancing do not answer it; its own does.
	e.setUS(4, 5, 1000)
	e.setUS(3, 2, 42)
	r := <-got
	want := `{"region":"US","game_modes":[{"game_mode":1,"player_count":7}]}`
	if r.status != http.StatusOK || string(r.body) != want {
		t.Fatalf("status %d body %s; want 200 %s", r.status, r.body, want)
	}
	// Reflected already: answered at once.
	if r := e.get(t, afterURL("US", token(3, 40))); r.status != http.StatusOK || string(r.body) != want {
		t.Fatalf("reflected token: status %d body %s", r.status, r.body)
	}
	if w, i := e.metric(t, "gamemodes_consistency_reads_total", "waited"), e.metric(t, "gamemodes_consistency_reads_total", "immediate"); w != 1 || i != 1 {
		t.Fatalf("waited %v immediate %v, want 1 and 1", w, i)
	}
}

func TestConsistencyWaitersAreCapped(t *testing.T) {
	e := newWaitEnv(t, httpapi.Config{ConsistencyWait: time.Minute, MaxConsistencyWaiters: 2})
	waiters := []<-chan response{e.inApp(t, afterURL("US", token(1, 10))), e.inApp(t, afterURL("US", token(1, 10)))}
	e.waitWaiting(t, 2)
	r := e.get(t, afterURL("EU", token(2, 10)))
	if r.status != http.StatusServiceUnavailable || r.errorCode(t) != httpapi.CodeOverloaded || r.header.Get("Retry-After") != "1" {
		t.Fatalf("third waiter: status %d Retry-After %q body %s; want 503 overloaded", r.status, r.header.Get("Retry-After"), r.body)
	}
	// A reflected token needs no waiting slot.
	e.setUS(5, 3, 7)
	if r := e.get(t, afterURL("US", token(5, 7))); r.status != http.StatusOK {
		t.Fatalf("reflected token while the waiters are full: status %d body %s", r.status, r.body)
	}
	e.setUS(1, 1, 10)
	for _, got := range waiters {
		if r := <-got; r.status != http.StatusOK || string(r.body) != `{"region":"US","game_modes":[{"game_mode":1,"player_count":4}]}` {
			t.Fatalf("waiter: status %d body %s", r.status, r.body)
		}
	}
	if got := e.metric(t, "gamemodes_consistency_reads_total", "refused"); got != 1 {
		t.Fatalf("refused reads counted %v, want 1", got)
	}
}

func TestShutdownEndsConsistencyWaits(t *testing.T) {
	e := newWaitEnv(t, httpapi.Config{ConsistencyWait: time.Hour})
	if err := e.srv.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	got := getAsync(t, func() (*http.Response, error) {
		return http.Get("http://" + e.srv.Addr() + afterURL("US", token(1, 10)))
	})
	e.waitWaiting(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with a read waiting an hour: %v", err)
	}
	r := <-got
	if r.status != http.StatusServiceUnavailable || r.errorCode(t) != httpapi.CodeUnavailable {
		t.Fatalf("waiting read at shutdown: status %d body %s; want 503 unavailable", r.status, r.body)
	}
	if got := e.metric(t, "gamemodes_consistency_reads_total", "canceled"); got != 1 {
		t.Fatalf("canceled reads counted %v, want 1", got)
	}
}

// plainLobby serves lists but cannot wait for consistency tokens.
type plainLobby struct{}

func (plainLobby) Popular(string) ([]byte, error) {
	return []byte(`{"region":"US","game_modes":[]}`), nil
}

func TestConsistencyTokenWithoutWaiterIs501(t *testing.T) {
	srv := httpapi.New(httpapi.Config{}, httpapi.Deps{Lobby: plainLobby{}})
	r := do(t, srv, newRequest(http.MethodGet, afterURL("US", token(1, 1)), "", ""))
	if r.status != http.StatusNotImplemented || r.errorCode(t) != httpapi.CodeNotImplemented {
		t.Fatalf("status %d body %s; want 501 not_implemented", r.status, r.body)
	}
	if r := do(t, srv, newRequest(http.MethodGet, afterURL("US", "nope"), "", "")); r.status != http.StatusBadRequest {
		t.Fatalf("malformed token: status %d body %s; want 400", r.status, r.body)
	}
	// Without after= nothing changes.
	if r := do(t, srv, newRequest(http.MethodGet, httpapi.PathPopular+"?region=US", "", "")); r.status != http.StatusOK {
		t.Fatalf("plain read: status %d", r.status)
	}
}

func TestNegativeConsistencyWaitIsInvalid(t *testing.T) {
	if err := (httpapi.Config{ConsistencyWait: -time.Second}).Validate(); err == nil {
		t.Fatal("negative consistency wait accepted")
	}
	c := httpapi.Config{}.WithDefaults()
	if c.ConsistencyWait != 2*time.Second || c.MaxConsistencyWaiters != 4096 {
		t.Fatalf("defaults: wait %v waiters %d", c.ConsistencyWait, c.MaxConsistencyWaiters)
	}
}
