package httpapi_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/adapters/httpapi"
	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/modules/lobby"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
)

// streamEnv is an HTTP edge serving lobby streams over a real socket, fed
// by a lobby view the test changes.
type streamEnv struct {
	t       *testing.T
	catalog *domain.Catalog
	view    *lobby.View
	srv     *httpapi.Server
	reg     *prometheus.Registry
	addr    string
}

// newStreamEnv starts the server; sndBuf > 0 shrinks the server's socket
// send buffers (so that a client that does not read blocks writes soon).
func newStreamEnv(t *testing.T, cfg httpapi.Config, catalog *domain.Catalog, interval time.Duration, sndBuf int) *streamEnv {
	t.Helper()
	v := lobby.NewView(catalog, nil)
	b := lobby.NewBroadcaster(v, interval)
	b.Start()
	t.Cleanup(b.Stop)
	reg := prometheus.NewRegistry()
	srv := httpapi.New(cfg, httpapi.Deps{Lobby: v, Streams: b, Registerer: reg, Gatherer: reg})
	if sndBuf > 0 {
		srv.App().Server().ConnState = func(c net.Conn, st fasthttp.ConnState) {
			if bc, ok := c.(interface{ SetWriteBuffer(int) error }); ok && st == fasthttp.StateNew {
				_ = bc.SetWriteBuffer(sndBuf)
			}
		}
	}
	if err := srv.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return &streamEnv{t: t, catalog: catalog, view: v, srv: srv, reg: reg, addr: srv.Addr()}
}

// set replaces the whole lobby with one shard: counts[region][mode].
func (e *streamEnv) set(counts map[string]map[int]int64) {
	sh := domain.NewCounts(e.catalog)
	for r, byMode := range counts {
		for m, n := range byMode {
			slot, ok := e.catalog.SlotOf(r, m)
			if !ok {
				e.t.Fatalf("no slot %s/%d", r, m)
			}
			sh.Add(slot, n)
		}
	}
	e.view.SetShard(0, 0, 0, sh)
}

// get answers GET /api/v1/popular_game_modes over the socket.
func (e *streamEnv) get(region string) string {
	e.t.Helper()
	res, err := http.Get("http://" + e.addr + httpapi.PathPopular + "?region=" + region)
	r := read(e.t, "GET popular", res, err)
	if r.status != 200 {
		e.t.Fatalf("GET popular: %d %s", r.status, r.body)
	}
	return string(r.body)
}

// gauge reads a gauge (or counter) of the server's registry; labels
// select one series ("" for none).
func (e *streamEnv) gauge(name, label string) float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label != "" && (len(m.GetLabel()) == 0 || m.GetLabel()[0].GetValue() != label) {
				continue
			}
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func (e *streamEnv) waitOpenStreams(n float64) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for e.gauge("gamemodes_http_open_streams", "") != n {
		if time.Now().After(deadline) {
			e.t.Fatalf("open streams %v, want %v", e.gauge("gamemodes_http_open_streams", ""), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sseEvent is one message of a stream, or a comment (ping).
type sseEvent struct {
	id      uint64
	data    string
	comment string
}

// sseClient reads a lobby stream over its own TCP connection.
type sseClient struct {
	t      *testing.T
	conn   net.Conn
	res    *http.Response
	events chan sseEvent
	ended  chan error // receives the error that ended the body (io.EOF: a clean end)
}

func dialStream(t *testing.T, addr, region string, rcvBuf int) net.Conn {
	t.Helper()
	d := net.Dialer{}
	if rcvBuf > 0 {
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvBuf)
			}); err != nil {
				return err
			}
			return serr
		}
	}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	req := "GET " + httpapi.PathPopularStream + "?region=" + region + " HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n\r\n"
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	return conn
}

// openSSE connects, reads the answer's head and, on 200, starts reading
// events; on another status it returns the answer.
func openSSE(t *testing.T, addr, region string) (*sseClient, response) {
	t.Helper()
	conn := dialStream(t, addr, region, 0)
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("stream answer: %v", err)
	}
	if res.StatusCode != 200 {
		body, _ := io.ReadAll(res.Body)
		return nil, response{status: res.StatusCode, header: res.Header, body: body}
	}
	c := &sseClient{t: t, conn: conn, res: res, events: make(chan sseEvent, 10000), ended: make(chan error, 1)}
	go c.read(bufio.NewReader(res.Body))
	return c, response{status: 200, header: res.Header}
}

func (c *sseClient) read(r *bufio.Reader) {
	var ev sseEvent
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			c.ended <- err
			close(c.events)
			return
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			c.events <- ev
			ev = sseEvent{}
		case strings.HasPrefix(line, ":"):
			ev.comment = strings.TrimSpace(strings.TrimPrefix(line, ":"))
		case strings.HasPrefix(line, "id: "):
			id, err := strconv.ParseUint(strings.TrimPrefix(line, "id: "), 10, 64)
			if err != nil {
				c.t.Errorf("bad id line %q", line)
			}
			ev.id = id
		case strings.HasPrefix(line, "data: "):
			ev.data = strings.TrimPrefix(line, "data: ")
		default:
			c.t.Errorf("unexpected stream line %q", line)
		}
	}
}

// next returns the next message (comments skipped).
func (c *sseClient) next() sseEvent {
	c.t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case ev, ok := <-c.events:
			if !ok {
				c.t.Fatal("stream ended")
			}
			if ev.comment == "" {
				return ev
			}
		case <-timeout:
			c.t.Fatal("no stream message")
		}
	}
}

func usList(counts ...[2]int64) string {
	var b strings.Builder
	b.WriteString(`{"region":"US","game_modes":[`)
	for i, mc := range counts {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"game_mode":%d,"player_count":%d}`, mc[0], mc[1])
	}
	b.WriteString("]}")
	return b.String()
}

// TestStreamSendsCurrentListThenEveryChangeInOrder: over a real socket, the
// stream starts with the current list, then carries every change spaced
// beyond the broadcast interval, in order; a burst ends with the final list
// and ids only increase.
func TestStreamSendsCurrentListThenEveryChangeInOrder(t *testing.T) {
	e := newStreamEnv(t, httpapi.Config{}, domain.MustCatalog([]string{"US", "EU"}, []int{1, 2, 3}), lobby.DefaultBroadcastInterval, 0)
	e.set(map[string]map[int]int64{"US": {1: 4}})
	c, res := openSSE(t, e.addr, "US")
	if ct := res.header.Get("Content-Type"); ct != httpapi.ContentTypeEventStream {
		t.Fatalf("Content-Type %q", ct)
	}
	if cc := res.header.Get("Cache-Control"); cc != "no-cache" {
		t.Fatalf("Cache-Control %q", cc)
	}
	want := []string{usList([2]int64{1, 4})}
	got := []sseEvent{c.next()}
	steps := []map[string]map[int]int64{
		{"US": {1: 4, 2: 5}},
		{"US": {1: 4, 2: 5}, "EU": {1: 9}}, // EU only: nothing on a US stream
		{"US": {1: 6, 2: 5}, "EU": {1: 9}},
		{"US": {3: 1}, "EU": {1: 9}},
		{"EU": {1: 9}},
	}
	wantSteps := []string{usList([2]int64{2, 5}, [2]int64{1, 4}), "", usList([2]int64{1, 6}, [2]int64{2, 5}), usList([2]int64{3, 1}), usList()}
	for i, st := range steps {
		e.set(st)
		if wantSteps[i] == "" {
			continue
		}
		want = append(want, wantSteps[i])
		got = append(got, c.next()) // lockstep: no two changes in one interval
	}
	for i, ev := range got {
		if ev.data != want[i] {
			t.Fatalf("message %d: %s, want %s", i, ev.data, want[i])
		}
		if i > 0 && ev.id <= got[i-1].id {
			t.Fatalf("message %d: id %d after %d", i, ev.id, got[i-1].id)
		}
	}
	if g := e.get("US"); g != want[len(want)-1] {
		t.Fatalf("GET %s, want %s", g, want[len(want)-1])
	}

	// A burst faster than the interval: coalesced, ending with the final list.
	const burst = 300
	for i := int64(1); i <= burst; i++ {
		e.set(map[string]map[int]int64{"US": {1: i}})
	}
	final := usList([2]int64{1, burst})
	last := got[len(got)-1]
	n := 0
	for ev := c.next(); ; ev = c.next() {
		n++
		if ev.id <= last.id {
			t.Fatalf("burst message id %d after %d", ev.id, last.id)
		}
		last = ev
		if ev.data == final {
			break
		}
	}
	if n > burst {
		t.Fatalf("%d messages for %d changes", n, burst)
	}
	t.Logf("a burst of %d changes arrived as %d messages", burst, n)
}

// TestStreamSlowClientDoesNotHoldUpOthersAndIsDisconnected: a client that
// connects and never reads (small socket buffers, large lists) does not
// delay a fast stream nor GET answers, and is disconnected once it cannot
// take a write for WriteTimeout.
func TestStreamSlowClientDoesNotHoldUpOthersAndIsDisconnected(t *testing.T) {
	modes := make([]int, 100)
	for i := range modes {
		modes[i] = i + 1
	}
	c := domain.MustCatalog([]string{"US"}, modes)
	e := newStreamEnv(t, httpapi.Config{WriteTimeout: 500 * time.Millisecond}, c, 5*time.Millisecond, 4096)
	lobbyAt := func(i int64) map[string]map[int]int64 {
		counts := map[int]int64{}
		for _, m := range modes {
			counts[m] = i*1000 + int64(m)
		}
		return map[string]map[int]int64{"US": counts}
	}
	slow := dialStream(t, e.addr, "US", 2048) // never read
	fast, _ := openSSE(t, e.addr, "US")
	first := fast.next()
	e.waitOpenStreams(2)

	deadline := time.Now().Add(60 * time.Second)
	var i int64
	for e.gauge("gamemodes_http_open_streams", "") == 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the slow client is still connected after %d changes", i)
		}
		i++
		e.set(lobbyAt(i))
		want, _ := e.view.Snapshot(0)
		ev := fast.next()
		if ev.data != string(want) || ev.id != first.id+uint64(i) {
			t.Fatalf("change %d: fast stream got id %d %.60s..., want id %d", i, ev.id, ev.data, first.id+uint64(i))
		}
		if g := e.get("US"); g != string(want) {
			t.Fatalf("change %d: GET %.60s...", i, g)
		}
	}
	t.Logf("slow client disconnected after %d changes", i)
	e.waitOpenStreams(1)

	// The server closed the slow connection: reading it ends (EOF or reset)
	// after what the buffers held.
	_ = slow.SetReadDeadline(time.Now().Add(30 * time.Second))
	held, err := io.ReadAll(slow)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("slow connection still open: %v", err)
	}
	if !strings.HasPrefix(string(held), "HTTP/1.1 200 OK") {
		t.Fatalf("slow connection held %.40q", held)
	}
	// The fast stream goes on.
	e.set(lobbyAt(i + 1))
	if ev := fast.next(); ev.id != first.id+uint64(i+1) {
		t.Fatalf("fast stream after the slow one left: id %d", ev.id)
	}
}

// TestStreamRefusals: a missing or unknown region is a JSON 400 before any
// stream; beyond MaxStreams the answer is 503 overloaded; a client that
// leaves is noticed at the next keep-alive comment, freeing its place.
func TestStreamRefusals(t *testing.T) {
	e := newStreamEnv(t, httpapi.Config{MaxStreams: 1, StreamPingInterval: 20 * time.Millisecond},
		domain.MustCatalog([]string{"US"}, []int{1}), 0, 0)
	for region, code := range map[string]string{"": domain.CodeMissingRegion, "XX": domain.CodeInvalidRegion, "us": domain.CodeInvalidRegion} {
		_, r := openSSE(t, e.addr, region)
		if r.status != 400 || r.errorCode(t) != code || r.header.Get("Content-Type") != "application/json" {
			t.Fatalf("region %q: %d %s %s", region, r.status, r.header.Get("Content-Type"), r.body)
		}
	}
	c, _ := openSSE(t, e.addr, "US")
	if ev := c.next(); ev.data != `{"region":"US","game_modes":[]}` || ev.id != 0 {
		t.Fatalf("first message %+v", ev)
	}
	_, r := openSSE(t, e.addr, "US")
	if r.status != 503 || r.errorCode(t) != httpapi.CodeOverloaded || r.header.Get("Retry-After") == "" {
		t.Fatalf("stream beyond the cap: %d %s (Retry-After %q)", r.status, r.body, r.header.Get("Retry-After"))
	}
	if n := e.gauge("gamemodes_http_refused_total", "too_many_streams"); n != 1 {
		t.Fatalf("refused streams counted %v, want 1", n)
	}
	// Keep-alive comments flow while nothing changes.
	for ev := range c.events {
		if ev.comment == "ping" {
			break
		}
		t.Fatalf("unexpected message %+v", ev)
	}
	c.conn.Close()
	e.waitOpenStreams(0)
	c2, r := openSSE(t, e.addr, "US")
	if r.status != 200 {
		t.Fatalf("stream after the first left: %d %s", r.status, r.body)
	}
	c2.next()
}

// TestShutdownEndsOpenStreams: Shutdown does not wait for streams: a
// reading client sees its stream end cleanly, one that does not read is
// cut, and Shutdown returns before its deadline.
func TestShutdownEndsOpenStreams(t *testing.T) {
	modes := make([]int, 100)
	for i := range modes {
		modes[i] = i + 1
	}
	c := domain.MustCatalog([]string{"US"}, modes)
	e := newStreamEnv(t, httpapi.Config{}, c, time.Millisecond, 4096) // WriteTimeout 10s
	slow := dialStream(t, e.addr, "US", 2048)
	fast, _ := openSSE(t, e.addr, "US")
	fast.next()
	e.waitOpenStreams(2)
	for i := int64(1); i <= 50; i++ { // more than the slow client's buffers hold
		counts := map[int]int64{}
		for _, m := range modes {
			counts[m] = i*1000 + int64(m)
		}
		e.set(map[string]map[int]int64{"US": counts})
		fast.next()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with open streams: %v", err)
	}
	select {
	case err := <-fast.ended:
		if err != io.EOF {
			t.Fatalf("fast stream ended with %v, want a clean end (EOF)", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("fast stream not ended by shutdown")
	}
	_ = slow.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err := io.ReadAll(slow)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("slow connection still open after shutdown: %v", err)
	}
	if n := e.gauge("gamemodes_http_open_streams", ""); n != 0 {
		t.Fatalf("open streams after shutdown: %v", n)
	}
}
