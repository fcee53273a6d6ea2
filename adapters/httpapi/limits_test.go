package httpapi_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/adapters/httpapi"
	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/modules/ingest"
	"github.com/gamemodes/gamemodes/modules/lobby"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"
)

// A rate so slow that no token comes back during a test: the burst is all
// there is, and Retry-After is long.
const glacial = 0.001

func expectRateLimited(t *testing.T, r response) {
	t.Helper()
	if r.status != http.StatusTooManyRequests {
		t.Fatalf("status %d body %s; want 429", r.status, r.body)
	}
	if code := r.errorCode(t); code != httpapi.CodeRateLimited {
		t.Fatalf("code %q; want %q", code, httpapi.CodeRateLimited)
	}
	ra, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil || ra < 1 {
		t.Fatalf("Retry-After %q; want whole seconds >= 1", r.header.Get("Retry-After"))
	}
}

func TestDefaultsLeaveLimitsOff(t *testing.T) {
	cfg := httpapi.Config{}.WithDefaults()
	if cfg.Auth != nil || cfg.UserRateLimit != 0 || cfg.AddrRateLimit != 0 || len(cfg.TrustedProxies) != 0 {
		t.Fatalf("defaults turn a protection on: %+v", cfg)
	}
	if cfg.MaxInflight != httpapi.DefaultMaxInflight || cfg.RateLimitKeys != httpapi.DefaultRateLimitKeys {
		t.Fatalf("defaults %+v", cfg)
	}
	cfg = httpapi.Config{UserRateLimit: 2.5, AddrRateLimit: 0.1}.WithDefaults()
	if cfg.UserRateBurst != 3 || cfg.AddrRateBurst != 1 {
		t.Fatalf("default bursts %d %d; want 3 1", cfg.UserRateBurst, cfg.AddrRateBurst)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (httpapi.Config{}).Validate(); err != nil {
		t.Fatalf("zero config: %v", err)
	}
	good := httpapi.Config{UserRateLimit: 5, AddrRateLimit: 50, TrustedProxies: []string{"10.0.0.0/8", "192.168.1.1", "fd00::/8", "::1"}}
	if err := good.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for name, tc := range map[string]struct {
		cfg   httpapi.Config
		field string
	}{
		"negative user rate":  {httpapi.Config{UserRateLimit: -1}, "UserRateLimit"},
		"negative addr rate":  {httpapi.Config{AddrRateLimit: -1}, "AddrRateLimit"},
		"negative burst":      {httpapi.Config{UserRateBurst: -1}, "UserRateBurst"},
		"negative addr burst": {httpapi.Config{AddrRateBurst: -1}, "AddrRateBurst"},
		"negative wait":       {httpapi.Config{ConsistencyWait: -time.Second}, "ConsistencyWait"},
		"bad proxy":           {httpapi.Config{TrustedProxies: []string{"lb.internal"}}, "TrustedProxies"},
		"bad proxy range":     {httpapi.Config{TrustedProxies: []string{"10.0.0.0/33"}}, "TrustedProxies"},
	} {
		var ce *httpapi.ConfigError
		if err := tc.cfg.Validate(); !errors.As(err, &ce) || ce.Field != tc.field {
			t.Errorf("%s: %v, want a *ConfigError of %s", name, err, tc.field)
		}
	}
	// The fx constructor refuses an invalid config.
	app := fx.New(fx.NopLogger,
		fx.Supply(httpapi.Config{Addr: "127.0.0.1:0", TrustedProxies: []string{"not-an-ip"}}),
		httpapi.Module)
	if err := app.Err(); err == nil || !strings.Contains(err.Error(), "not-an-ip") {
		t.Fatalf("fx: %v; want the invalid trusted proxy refused", err)
	}
}

func TestUserRateLimit(t *testing.T) {
	e := newEnv(t, httpapi.Config{UserRateLimit: glacial, UserRateBurst: 2})
	id := 0
	ev := func(userID any) string {
		id++
		return event(func(ev, _ map[string]any) { ev["user_id"] = userID; ev["event_id"] = "rl-" + strconv.Itoa(id) })
	}
	// User 1's burst: 1 and "1" are the same user.
	before := e.count()
	expectStored(t, e, post(t, e.srv, ev(1)), before)
	before = e.count()
	expectStored(t, e, post(t, e.srv, ev("1")), before)
	for _, userID := range []any{1, "1"} {
		before = e.count()
		r := post(t, e.srv, ev(userID))
		expectRateLimited(t, r)
		if ra, _ := strconv.Atoi(r.header.Get("Retry-After")); ra < 100 {
			t.Errorf("Retry-After %d; the next token comes in about %v s", ra, 1/glacial)
		}
		if got := e.count(); got != before {
			t.Fatalf("a rate limited event was stored: %d -> %d", before, got)
		}
	}
	// Another user is not affected.
	before = e.count()
	expectStored(t, e, post(t, e.srv, ev(2)), before)
	// An invalid user_id is refused before it could take a budget.
	before = e.count()
	expectRefused(t, e, post(t, e.srv, ev(true)), before, http.StatusBadRequest, domain.CodeInvalidUserID)
	expectRefused(t, e, post(t, e.srv, `{"user_id":"2"`), before, http.StatusBadRequest, domain.CodeMalformedJSON)
}

// client returns an HTTP client whose connections come from localIP, so that
// tests can be several client addresses on the loopback network.
func client(localIP string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(localIP)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext}}
}

func listen(t *testing.T, srv *httpapi.Server) string {
	t.Helper()
	if err := srv.Listen("127.0.0.1:0"); err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return "http://" + srv.Addr()
}

func send(t *testing.T, c *http.Client, method, url, body string, header map[string]string) response {
	t.Helper()
	req := newRequest(method, url, "application/json", body)
	if body == "" {
		req.Header.Del("Content-Type")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := c.Do(req)
	return read(t, method+" "+url, res, err)
}

func TestAddrRateLimit(t *testing.T) {
	e := newEnv(t, httpapi.Config{AddrRateLimit: glacial, AddrRateBurst: 2})
	base := listen(t, e.srv)
	one, two := client("127.0.0.1"), client("127.0.0.2")
	id := 0
	postFrom := func(c *http.Client, userID int) response {
		id++
		return send(t, c, http.MethodPost, base+httpapi.PathEvent, event(func(ev, _ map[string]any) {
			ev["user_id"] = userID
			ev["event_id"] = "addr-" + strconv.Itoa(id)
		}), nil)
	}
	before := e.count()
	expectStored(t, e, postFrom(one, 1), before)
	before = e.count()
	expectStored(t, e, postFrom(one, 2), before) // another user, same address
	before = e.count()
	expectRateLimited(t, postFrom(one, 3))
	if got := e.count(); got != before {
		t.Fatalf("a rate limited event was stored: %d -> %d", before, got)
	}
	// The lobby list counts against the same address budget.
	expectRateLimited(t, send(t, one, http.MethodGet, base+httpapi.PathPopular+"?region=US", "", nil))
	// Operations routes are not limited (probes come from fixed addresses).
	for _, p := range []string{httpapi.PathHealthz, httpapi.PathReadyz, httpapi.PathMetrics} {
		if r := send(t, one, http.MethodGet, base+p, "", nil); r.status != http.StatusOK {
			t.Errorf("GET %s: %d", p, r.status)
		}
	}
	// Without trusted proxies, X-Forwarded-For does not make another client.
	expectRateLimited(t, send(t, one, http.MethodGet, base+httpapi.PathPopular+"?region=US", "", map[string]string{"X-Forwarded-For": "203.0.113.1"}))
	// Another address is not affected.
	before = e.count()
	expectStored(t, e, postFrom(two, 4), before)
	if r := send(t, two, http.MethodGet, base+httpapi.PathPopular+"?region=US", "", nil); r.status != http.StatusOK {
		t.Fatalf("GET from another address: %d %s", r.status, r.body)
	}
}

func TestAddrRateLimitBehindTrustedProxy(t *testing.T) {
	e := newEnv(t, httpapi.Config{AddrRateLimit: glacial, AddrRateBurst: 1, TrustedProxies: []string{"127.0.0.1", "10.0.0.0/8"}})
	base := listen(t, e.srv)
	proxy, direct := client("127.0.0.1"), client("127.0.0.2")
	get := func(c *http.Client, xff string) response {
		var h map[string]string
		if xff != "" {
			h = map[string]string{"X-Forwarded-For": xff}
		}
		return send(t, c, http.MethodGet, base+httpapi.PathPopular+"?region=US", "", h)
	}
	ok := func(r response) {
		t.Helper()
		if r.status != http.StatusOK {
			t.Fatalf("status %d body %s; want 200", r.status, r.body)
		}
	}
	// Clients behind the proxy have their own budgets.
	ok(get(proxy, "203.0.113.1"))
	expectRateLimited(t, get(proxy, "203.0.113.1"))
	ok(get(proxy, "203.0.113.2"))
	// A client cannot escape by forging entries left of the proxy's.
	expectRateLimited(t, get(proxy, "198.51.100.7, 203.0.113.1"))
	// Trusted hops (an inner proxy) are skipped from the right.
	expectRateLimited(t, get(proxy, "198.51.100.8, 203.0.113.1, 10.1.2.3"))
	// An untrusted peer's X-Forwarded-For is ignored: it is keyed by its own address.
	ok(get(direct, "203.0.113.3"))
	expectRateLimited(t, get(direct, "203.0.113.4"))
}

// blockingSubmitter holds every Submit until released: it tests the HTTP
// mapping of the in-flight cap only.
type blockingSubmitter struct {
	calls   atomic.Int64
	entered chan struct{}
	release chan struct{}
}

func (b *blockingSubmitter) Submit(ctx context.Context, _ []byte) (ingest.Receipt, error) {
	n := b.calls.Add(1)
	b.entered <- struct{}{}
	select {
	case <-b.release:
	case <-ctx.Done():
		return ingest.Receipt{}, ctx.Err()
	}
	return ingest.Receipt{EventID: "held-" + strconv.FormatInt(n, 10)}, nil
}

func TestInflightCap(t *testing.T) {
	sub := &blockingSubmitter{entered: make(chan struct{}, 8), release: make(chan struct{})}
	srv := httpapi.New(httpapi.Config{MaxInflight: 2, SubmitTimeout: time.Minute}, httpapi.Deps{Events: sub, Lobby: lobby.NewView(domain.DefaultCatalog(), nil)})
	var wg sync.WaitGroup
	held := make(chan response, 2)
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := srv.App().Test(newRequest(http.MethodPost, httpapi.PathEvent, "application/json", event(nil)), -1)
			if err != nil {
				t.Error(err)
				return
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			held <- response{status: res.StatusCode, body: body}
		}()
	}
	<-sub.entered
	<-sub.entered

	// Both slots are taken: the third answers at once, without calling Submit.
	done := make(chan response, 1)
	go func() { done <- post(t, srv, event(nil)) }()
	var r response
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the request beyond the cap waited instead of answering 503 at once")
	}
	if r.status != http.StatusServiceUnavailable || r.errorCode(t) != httpapi.CodeOverloaded {
		t.Fatalf("status %d body %s; want 503 overloaded", r.status, r.body)
	}
	if got := r.header.Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After %q, want 1", got)
	}
	if got := sub.calls.Load(); got != 2 {
		t.Fatalf("Submit called %d times, want 2: the refused request reached the stream", got)
	}

	close(sub.release)
	wg.Wait()
	close(held)
	for r := range held {
		if r.status != http.StatusAccepted {
			t.Fatalf("held request: %d %s", r.status, r.body)
		}
	}
	// The slots are free again.
	if r := post(t, srv, event(nil)); r.status != http.StatusAccepted {
		t.Fatalf("after release: %d %s", r.status, r.body)
	}
}

// TestSlowHeadersAreDisconnected: a client that sends its headers a byte
// at a time and never ends them is disconnected by the read timeout (with
// none it would stay open). The test gives up only after 30 s or more: it
// asserts no speed, only that the connection ends.
func TestSlowHeadersAreDisconnected(t *testing.T) {
	const readTimeout = 300 * time.Millisecond
	srv := httpapi.New(httpapi.Config{ReadTimeout: readTimeout}, httpapi.Deps{Events: unavailable{}, Lobby: lobby.NewView(domain.DefaultCatalog(), nil)})
	base := listen(t, srv)
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Headers that never end: 1,500 bytes, one per 20 ms or slower (30 s or
	// more), far below the header limit.
	request := "GET " + httpapi.PathPopular + "?region=US HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("s", 1500)

	// Read whatever the server answers until it closes the connection.
	closed := make(chan []byte, 1)
	go func() {
		_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		b, _ := io.ReadAll(bufio.NewReader(conn))
		closed <- b
	}()
	start := time.Now()
	sent := 0
	var answer []byte
write:
	for sent < len(request) {
		select {
		case answer = <-closed:
			break write
		case <-time.After(20 * time.Millisecond):
		}
		if _, err := conn.Write([]byte{request[sent]}); err != nil {
			break // reset by the server
		}
		sent++
	}
	if answer == nil {
		select {
		case answer = <-closed:
		case <-time.After(5 * time.Second):
		}
	}
	elapsed := time.Since(start)
	if answer == nil {
		t.Fatalf("the server kept a connection open %v while its headers never ended (%d bytes sent): the read timeout does not bound a slow client", elapsed, sent)
	}
	t.Logf("disconnected after %v, %d bytes sent; answer %q", elapsed, sent, answer)
	if len(answer) > 0 && !strings.HasPrefix(string(answer), "HTTP/1.1 408") {
		t.Errorf("answer %q; want none or 408", answer)
	}
}

func TestRefusedRequestsAreCounted(t *testing.T) {
	reg := prometheus.NewRegistry()
	sub := &blockingSubmitter{entered: make(chan struct{}, 8), release: make(chan struct{})}
	close(sub.release)
	var up atomic.Bool
	srv := httpapi.New(httpapi.Config{Auth: hs256Auth(t), UserRateLimit: glacial, UserRateBurst: 1},
		httpapi.Deps{Events: sub, Lobby: lobby.NewView(domain.DefaultCatalog(), nil), Registerer: reg, Connected: up.Load})
	token := "Bearer " + hs256(t, claims("1"))
	postAuth(t, srv, "", event(nil))                              // unauthorized
	postAuth(t, srv, "Bearer "+hs256(t, claims("2")), event(nil)) // forbidden
	postAuth(t, srv, token, event(nil))                           // stream_disconnected (takes the user's token)
	up.Store(true)
	postAuth(t, srv, token, event(nil)) // rate_limited_user
	want := map[string]float64{"unauthorized": 1, "forbidden": 1, "stream_disconnected": 1, "rate_limited_user": 1}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "gamemodes_http_refused_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	for reason, n := range want {
		if got[reason] != n {
			t.Errorf("refused{reason=%q} = %v, want %v (all: %v)", reason, got[reason], n, got)
		}
	}
	if sub.calls.Load() != 0 {
		t.Errorf("Submit called %d times", sub.calls.Load())
	}
}

// TestRequestsAreTimedByRouteAndStatus: every answer, errors included, is
// observed in gamemodes_http_request_duration_seconds under its route and
// final status code.
func TestRequestsAreTimedByRouteAndStatus(t *testing.T) {
	reg := prometheus.NewRegistry()
	sub := &blockingSubmitter{entered: make(chan struct{}, 8), release: make(chan struct{})}
	close(sub.release)
	srv := httpapi.New(httpapi.Config{}, httpapi.Deps{Events: sub, Lobby: lobby.NewView(domain.DefaultCatalog(), nil), Registerer: reg})
	postAuth(t, srv, "", event(nil))                                                     // 202
	do(t, srv, newRequest(http.MethodPost, httpapi.PathEvent, "text/plain", event(nil))) // 415
	do(t, srv, newRequest(http.MethodGet, httpapi.PathPopular+"?region=XX", "", ""))
	do(t, srv, newRequest(http.MethodGet, "/nowhere", "", ""))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for _, mf := range mfs {
		if mf.GetName() != "gamemodes_http_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			got[labels["route"]+" "+labels["code"]] = m.GetHistogram().GetSampleCount()
		}
	}
	want := map[string]uint64{"event 202": 1, "event 415": 1, "popular 400": 1, "other 404": 1}
	if len(got) != len(want) {
		t.Errorf("timed %v, want %v", got, want)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s observed %d times, want %d (all: %v)", k, got[k], n, got)
		}
	}
}
