package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/adapters/httpapi"
	jsadapter "github.com/gamemodes/gamemodes/adapters/jetstream"
	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/modules/ingest"
	"github.com/gamemodes/gamemodes/modules/lobby"
	"github.com/gamemodes/gamemodes/modules/ops"
	"github.com/gamemodes/gamemodes/nats/natstest"
	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"
)

// env is an HTTP edge over a real embedded JetStream server.
type env struct {
	t      *testing.T
	ns     *server.Server
	js     jetstream.JetStream
	topo   topology.Topology
	stream jetstream.Stream
	reg    *prometheus.Registry
	// metrics are the ingest counters of svc.
	metrics *ingest.Metrics
	svc     *ingest.Service
	view    *lobby.View
	srv     *httpapi.Server
	// streams serves lobby streams where a test sets it (nil: not served).
	streams *lobby.Broadcaster
	// ops serves the operations page and status where a test sets it (nil: not served).
	ops *ops.Service
}

func newEnv(t *testing.T, cfg httpapi.Config) *env {
	t.Helper()
	ns := natstest.RunServer(t)
	_, js := natstest.Connect(t, ns.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	topo, err := topology.Ensure(ctx, js, topology.Config{})
	if err != nil {
		t.Fatalf("ensure topology: %v", err)
	}
	stream, err := js.Stream(ctx, topology.EventsStream)
	if err != nil {
		t.Fatalf("events stream: %v", err)
	}
	reg := prometheus.NewRegistry()
	catalog := domain.DefaultCatalog()
	metrics := ingest.NewMetrics(reg)
	svc := ingest.NewService(catalog, jsadapter.NewEventPublisher(js), metrics, ingest.WithPartitions(topo.Partitions))
	view := lobby.NewView(catalog, nil)
	view.SetPartitions(topo.Partitions)
	srv := httpapi.New(cfg, httpapi.Deps{Events: svc, Lobby: view, Gatherer: reg})
	return &env{t: t, ns: ns, js: js, topo: topo, stream: stream, reg: reg, metrics: metrics, svc: svc, view: view, srv: srv}
}

// count returns the number of messages in the events stream.
func (e *env) count() uint64 {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := e.stream.Info(ctx)
	if err != nil {
		e.t.Fatalf("stream info: %v", err)
	}
	return info.State.Msgs
}

// lastStored returns the canonical JSON of the last stored event.
func (e *env) lastStored() map[string]any {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := e.stream.Info(ctx)
	if err != nil {
		e.t.Fatalf("stream info: %v", err)
	}
	msg, err := e.stream.GetMsg(ctx, info.State.LastSeq)
	if err != nil {
		e.t.Fatalf("get msg %d: %v", info.State.LastSeq, err)
	}
	var m map[string]any
	if err := json.Unmarshal(msg.Data, &m); err != nil {
		e.t.Fatalf("stored payload %q: %v", msg.Data, err)
	}
	return m
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response body %q is not a JSON object: %v", r.body, err)
	}
	return m
}

// errorCode returns error.code of an error answer, failing if the shape is wrong.
func (r response) errorCode(t *testing.T) string {
	t.Helper()
	var b struct {
		Error *struct {
			Code    *string `json:"code"`
			Message *string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(r.body, &b); err != nil || b.Error == nil || b.Error.Code == nil || b.Error.Message == nil {
		t.Fatalf("response body %q is not {\"error\":{\"code\",\"message\"}} (%v)", r.body, err)
	}
	return *b.Error.Code
}

func do(t *testing.T, srv *httpapi.Server, req *http.Request) response {
	t.Helper()
	res, err := srv.App().Test(req, -1)
	return read(t, req.Method+" "+req.URL.String(), res, err)
}

// doTCP sends req over a real connection to e's server, which it starts
// listening on a random loopback port (until the end of e's test) if it is
// not yet. It is for requests fasthttp refuses while reading, before any
// handler (the body limit): app.Test returns an error for those instead of
// the answer. It writes the request line and headers, announcing the body's
// length, but not the body: fasthttp refuses an over-limit Content-Length
// before reading the body and closes the connection, and a client still
// writing the body may then see a reset instead of the answer.
func doTCP(t *testing.T, e *env, req *http.Request) response {
	t.Helper()
	if e.srv.Addr() == "" {
		if err := e.srv.Listen("127.0.0.1:0"); err != nil {
			t.Fatalf("listen: %v", err)
		}
		e.t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := e.srv.Shutdown(ctx); err != nil {
				e.t.Errorf("shutdown: %v", err)
			}
		})
	}
	return headersOnly(t, e.srv.Addr(), req)
}

// headersOnly writes req's request line and headers (with its
// Content-Length) to addr and reads the answer.
func headersOnly(t *testing.T, addr string, req *http.Request) response {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n", req.Method, req.URL.RequestURI(), addr, req.ContentLength)
	for k, vs := range req.Header {
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Fatalf("write headers: %v", err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), req)
	return read(t, req.Method+" "+req.URL.String(), res, err)
}

func read(t *testing.T, what string, res *http.Response, err error) response {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return response{status: res.StatusCode, header: res.Header, body: body}
}

func newRequest(method, target, contentType, body string) *http.Request {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, target, r)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return req
}

func post(t *testing.T, srv *httpapi.Server, body string) response {
	t.Helper()
	return do(t, srv, newRequest(http.MethodPost, httpapi.PathEvent, "application/json", body))
}

// event returns a valid event body changed by mod.
func event(mod func(ev, payload map[string]any)) string {
	payload := map[string]any{"game_mode": 1, "region": "US"}
	ev := map[string]any{
		"event_id":      "e-1",
		"user_id":       1,
		"event_type":    "ENTER_GAME_MODE",
		"event_payload": payload,
		"timestamp":     "2026-11-26T01:00:00Z",
	}
	if mod != nil {
		mod(ev, payload)
	}
	b, err := json.Marshal(ev)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func set(key string, v any) func(ev, payload map[string]any) {
	return func(ev, _ map[string]any) { ev[key] = v }
}

func del(key string) func(ev, payload map[string]any) {
	return func(ev, _ map[string]any) { delete(ev, key) }
}

func setPayload(key string, v any) func(ev, payload map[string]any) {
	return func(_, p map[string]any) { p[key] = v }
}

func delPayload(key string) func(ev, payload map[string]any) {
	return func(_, p map[string]any) { delete(p, key) }
}

func raw(s string) json.RawMessage { return json.RawMessage(s) }

func TestPostEventStoresInStream(t *testing.T) {
	e := newEnv(t, httpapi.Config{})
	before := e.count()

	r := post(t, e.srv, event(set("event_id", "happy-1")))
	if r.status != http.StatusAccepted {
		t.Fatalf("status %d, body %s; want 202", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var receipt ingest.Receipt
	if err := json.Unmarshal(r.body, &receipt); err != nil {
		t.Fatalf("receipt %q: %v", r.body, err)
	}
	// The token names the user's partition and the event's stream sequence.
	token := domain.ConsistencyToken{Partition: domain.PartitionOf("1", topology.DefaultPartitions), Seq: before + 1}.String()
	if receipt != (ingest.Receipt{EventID: "happy-1", Duplicate: false, ConsistencyToken: token}) {
		t.Fatalf("receipt %+v, want token %s", receipt, token)
	}
	if string(r.body) != `{"event_id":"happy-1","duplicate":false,"consistency_token":"`+token+`"}` {
		t.Errorf("body %s", r.body)
	}
	if got := e.count(); got != before+1 {
		t.Fatalf("stream holds %d messages, want %d", got, before+1)
	}
	stored := e.lastStored()
	if stored["event_id"] != "happy-1" || stored["user_id"] != "1" || stored["event_type"] != "ENTER_GAME_MODE" {
		t.Fatalf("stored payload %v", stored)
	}
}

func TestPostEventRetryIsDuplicate(t *testing.T) {
	e := newEnv(t, httpapi.Config{})
	before := e.count()
	body := event(set("event_id", "retry-1"))

	first := post(t, e.srv, body)
	if first.status != http.StatusAccepted || first.json(t)["duplicate"] != false {
		t.Fatalf("first: %d %s", first.status, first.body)
	}
	second := post(t, e.srv, body)
	if second.status != http.StatusAccepted {
		t.Fatalf("retry: %d %s", second.status, second.body)
	}
	// The retry's token names the copy stored first.
	if want := `{"event_id":"retry-1","duplicate":true,"consistency_token":"` + first.json(t)["consistency_token"].(string) + `"}`; string(second.body) != want {
		t.Fatalf("retry body %s, want %s", second.body, want)
	}
	if got := e.count(); got != before+1 {
		t.Fatalf("stream holds %d messages after a retry, want %d", got, before+1)
	}
}

func TestPostEventAcceptedForms(t *testing.T) {
	e := newEnv(t, httpapi.Config{})
	ts := time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)
	const tsText = "2026-11-26T01:00:00Z"
	cases := []struct {
		name        string
		contentType string
		body        string
		userID      string
		timestamp   string // "" = not checked
	}{
		{"user_id integer", "application/json", event(set("user_id", 1)), "1", tsText},
		{"user_id string", "application/json", event(set("user_id", "1")), "1", tsText},
		{"user_id zero", "application/json", event(set("user_id", 0)), "0", tsText},
		{"user_id unicode string", "application/json", event(set("user_id", "spieler-ü")), "spieler-ü", tsText},
		{"user_id 128 bytes", "application/json", event(set("user_id", strings.Repeat("u", 128))), strings.Repeat("u", 128), tsText},
		{"timestamp RFC 3339 with offset", "application/json", event(set("timestamp", "2026-11-26T02:00:00+01:00")), "1", tsText},
		{"timestamp epoch seconds", "application/json", event(set("timestamp", ts.Unix())), "1", tsText},
		{"timestamp epoch millis", "application/json", event(set("timestamp", ts.UnixMilli())), "1", tsText},
		{"timestamp absent", "application/json", event(del("timestamp")), "1", ""},
		{"leave event", "application/json", event(set("event_type", "LEAVE_GAME_MODE")), "1", tsText},
		{"charset parameter", "application/json; charset=utf-8", event(nil), "1", tsText},
		{"upper case media type", "Application/JSON", event(nil), "1", tsText},
		{"unknown fields ignored", "application/json", event(set("extra", map[string]any{"x": 1})), "1", tsText},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// A distinct event_id per case, so none is a duplicate of another.
			var m map[string]any
			if err := json.Unmarshal([]byte(tc.body), &m); err != nil {
				t.Fatal(err)
			}
			m["event_id"] = "accepted-" + strconv.Itoa(i)
			body, _ := json.Marshal(m)

			before := e.count()
			r := do(t, e.srv, newRequest(http.MethodPost, httpapi.PathEvent, tc.contentType, string(body)))
			if r.status != http.StatusAccepted {
				t.Fatalf("status %d, body %s; want 202", r.status, r.body)
			}
			if got := r.json(t); got["event_id"] != m["event_id"] || got["duplicate"] != false {
				t.Fatalf("receipt %s", r.body)
			}
			if got := e.count(); got != before+1 {
				t.Fatalf("stream holds %d messages, want %d", got, before+1)
			}
			stored := e.lastStored()
			if stored["event_id"] != m["event_id"] || stored["user_id"] != tc.userID {
				t.Fatalf("stored %v, want event_id %v user_id %q", stored, m["event_id"], tc.userID)
			}
			if tc.timestamp != "" && stored["timestamp"] != tc.timestamp {
				t.Fatalf("stored timestamp %v, want %s", stored["timestamp"], tc.timestamp)
			}
		})
	}
}

func TestPostEventWithoutEventIDGetsOne(t *testing.T) {
	e := newEnv(t, httpapi.Config{})
	before := e.count()
	r := post(t, e.srv, event(del("event_id")))
	if r.status != http.StatusAccepted {
		t.Fatalf("status %d body %s", r.status, r.body)
	}
	id, _ := r.json(t)["event_id"].(string)
	if id == "" {
		t.Fatalf("no generated event_id in %s", r.body)
	}
	if got := e.count(); got != before+1 {
		t.Fatalf("stream holds %d messages, want %d", got, before+1)
	}
	if stored := e.lastStored(); stored["event_id"] != id {
		t.Fatalf("stored event_id %v, receipt %s", stored["event_id"], id)
	}
}

func TestBadInputIsRejectedAndNotStored(t *testing.T) {
	e := newEnv(t, httpapi.Config{})
	valid := event(nil)
	type tc struct {
		name        string
		method      string
		target      string
		contentType string
		body        string
		status      int
		code        string
		tcp         bool // send over a real connection (see doTCP)
	}
	bad := func(name, body string, code string) tc {
		return tc{name, http.MethodPost, httpapi.PathEvent, "application/json", body, http.StatusBadRequest, code, false}
	}
	other := func(name, method, target, contentType, body string, status int, code string) tc {
		return tc{name, method, target, contentType, body, status, code, false}
	}
	oversized := `{"user_id":"` + strings.Repeat("x", 64<<10) + `"}`
	cases := []tc{
		bad("malformed JSON", `{"user_id":`, domain.CodeMalformedJSON),
		bad("not JSON at all", `hello`, domain.CodeMalformedJSON),
		bad("empty body", ``, domain.CodeMalformedJSON),
		bad("whitespace body", "  \n ", domain.CodeMalformedJSON),
		bad("JSON array", `[1,2,3]`, domain.CodeMalformedJSON),
		bad("JSON string", `"ENTER_GAME_MODE"`, domain.CodeMalformedJSON),
		bad("JSON number", `42`, domain.CodeMalformedJSON),
		bad("JSON null", `null`, domain.CodeMalformedJSON),
		bad("trailing garbage", valid+` garbage`, domain.CodeMalformedJSON),
		bad("second object", valid+valid, domain.CodeMalformedJSON),
		bad("invalid UTF-8", "{\"user_id\":\"\xff\"}", domain.CodeMalformedJSON),
		bad("raw control character in string", "{\"user_id\":\"a\x01b\"}", domain.CodeMalformedJSON),
		bad("missing user_id", event(del("user_id")), domain.CodeMissingUserID),
		bad("null user_id", event(set("user_id", nil)), domain.CodeMissingUserID),
		bad("missing event_type", event(del("event_type")), domain.CodeMissingEventType),
		bad("missing event_payload", event(del("event_payload")), domain.CodeMissingPayload),
		bad("event_payload not an object", event(set("event_payload", []int{1})), domain.CodeInvalidPayload),
		bad("missing region", event(delPayload("region")), domain.CodeMissingRegion),
		bad("missing game_mode", event(delPayload("game_mode")), domain.CodeMissingGameMode),
		bad("user_id bool", event(set("user_id", true)), domain.CodeInvalidUserID),
		bad("user_id object", event(set("user_id", map[string]any{"id": 1})), domain.CodeInvalidUserID),
		bad("user_id array", event(set("user_id", []int{1})), domain.CodeInvalidUserID),
		bad("event_type number", event(set("event_type", 1)), domain.CodeInvalidEventType),
		bad("region number", event(setPayload("region", 1)), domain.CodeInvalidRegion),
		bad("game_mode string", event(setPayload("game_mode", "1")), domain.CodeInvalidGameMode),
		bad("game_mode float", event(setPayload("game_mode", raw("1.5"))), domain.CodeInvalidGameMode),
		bad("game_mode exponent", event(setPayload("game_mode", raw("1e0"))), domain.CodeInvalidGameMode),
		bad("negative user_id", event(set("user_id", -1)), domain.CodeInvalidUserID),
		bad("negative zero user_id", event(set("user_id", raw("-0"))), domain.CodeInvalidUserID),
		bad("fractional user_id", event(set("user_id", raw("1.5"))), domain.CodeInvalidUserID),
		bad("exponent user_id", event(set("user_id", raw("1e3"))), domain.CodeInvalidUserID),
		bad("control character in user_id", event(set("user_id", "a\u0001b")), domain.CodeInvalidUserID),
		bad("DEL in user_id", event(set("user_id", "a\u007fb")), domain.CodeInvalidUserID),
		bad("C1 control in user_id", event(set("user_id", "a\u0085b")), domain.CodeInvalidUserID),
		bad("newline in user_id", event(set("user_id", "a\nb")), domain.CodeInvalidUserID),
		bad("control character in event_id", event(set("event_id", "e\u0007")), domain.CodeInvalidEventID),
		bad("newline in event_id", event(set("event_id", "e-1\r\nX-Evil: 1")), domain.CodeInvalidEventID),
		bad("empty user_id", event(set("user_id", "")), domain.CodeInvalidUserID),
		bad("user_id string longer than 128 bytes", event(set("user_id", strings.Repeat("u", 129))), domain.CodeInvalidUserID),
		bad("user_id multibyte longer than 128 bytes", event(set("user_id", strings.Repeat("ü", 65))), domain.CodeInvalidUserID),
		bad("user_id number longer than 128 digits", event(set("user_id", raw(strings.Repeat("9", 129)))), domain.CodeInvalidUserID),
		bad("empty event_id", event(set("event_id", "")), domain.CodeInvalidEventID),
		bad("event_id longer than 128 bytes", event(set("event_id", strings.Repeat("e", 129))), domain.CodeInvalidEventID),
		bad("event_id number", event(set("event_id", 7)), domain.CodeInvalidEventID),
		bad("unknown event_type", event(set("event_type", "JUMP")), domain.CodeInvalidEventType),
		bad("lower case event_type", event(set("event_type", "enter_game_mode")), domain.CodeInvalidEventType),
		bad("unknown region", event(setPayload("region", "XX")), domain.CodeInvalidRegion),
		bad("lower case region", event(setPayload("region", "us")), domain.CodeInvalidRegion),
		bad("unknown game_mode", event(setPayload("game_mode", 99)), domain.CodeInvalidGameMode),
		bad("game_mode zero", event(setPayload("game_mode", 0)), domain.CodeInvalidGameMode),
		bad("timestamp word", event(set("timestamp", "yesterday")), domain.CodeInvalidTimestamp),
		bad("timestamp month 13", event(set("timestamp", "2026-13-01T00:00:00Z")), domain.CodeInvalidTimestamp),
		bad("timestamp negative", event(set("timestamp", -5)), domain.CodeInvalidTimestamp),
		bad("timestamp bool", event(set("timestamp", true)), domain.CodeInvalidTimestamp),
		bad("timestamp object", event(set("timestamp", map[string]any{})), domain.CodeInvalidTimestamp),
		bad("timestamp without zone", event(set("timestamp", "2026-11-26T01:00:00")), domain.CodeInvalidTimestamp),
		bad("timestamp too far", event(set("timestamp", raw("1e300"))), domain.CodeInvalidTimestamp),
		{name: "oversized body", method: http.MethodPost, target: httpapi.PathEvent, contentType: "application/json",
			body: oversized, status: http.StatusRequestEntityTooLarge, code: httpapi.CodeBodyTooLarge, tcp: true},
		{name: "oversized valid event", method: http.MethodPost, target: httpapi.PathEvent, contentType: "application/json",
			body: event(set("padding", strings.Repeat("p", 64<<10))), status: http.StatusRequestEntityTooLarge, code: httpapi.CodeBodyTooLarge, tcp: true},
		other("text/plain", http.MethodPost, httpapi.PathEvent, "text/plain", valid, http.StatusUnsupportedMediaType, httpapi.CodeUnsupportedMediaType),
		other("no content type", http.MethodPost, httpapi.PathEvent, "", valid, http.StatusUnsupportedMediaType, httpapi.CodeUnsupportedMediaType),
		other("no content type and no body", http.MethodPost, httpapi.PathEvent, "", "", http.StatusUnsupportedMediaType, httpapi.CodeUnsupportedMediaType),
		other("json suffix type", http.MethodPost, httpapi.PathEvent, "application/problem+json", valid, http.StatusUnsupportedMediaType, httpapi.CodeUnsupportedMediaType),
		other("form", http.MethodPost, httpapi.PathEvent, "application/x-www-form-urlencoded", "user_id=1", http.StatusUnsupportedMediaType, httpapi.CodeUnsupportedMediaType),
		other("popular without region", http.MethodGet, httpapi.PathPopular, "", "", http.StatusBadRequest, domain.CodeMissingRegion),
		other("popular with empty region", http.MethodGet, httpapi.PathPopular+"?region=", "", "", http.StatusBadRequest, domain.CodeMissingRegion),
		other("popular with unknown region", http.MethodGet, httpapi.PathPopular+"?region=XX", "", "", http.StatusBadRequest, domain.CodeInvalidRegion),
		other("unknown route", http.MethodGet, "/api/v1/nope", "", "", http.StatusNotFound, httpapi.CodeNotFound),
		other("GET on event route", http.MethodGet, httpapi.PathEvent, "", "", http.StatusMethodNotAllowed, httpapi.CodeMethodNotAllowed),
		other("PUT on event route", http.MethodPut, httpapi.PathEvent, "application/json", valid, http.StatusMethodNotAllowed, httpapi.CodeMethodNotAllowed),
		other("POST on popular route", http.MethodPost, httpapi.PathPopular+"?region=US", "application/json", valid, http.StatusMethodNotAllowed, httpapi.CodeMethodNotAllowed),
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := e.count()
			req := newRequest(c.method, c.target, c.contentType, c.body)
			var r response
			if c.tcp {
				r = doTCP(t, e, req)
			} else {
				r = do(t, e.srv, req)
			}
			if r.status != c.status {
				t.Errorf("status %d, want %d (body %s)", r.status, c.status, r.body)
			}
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			if code := r.errorCode(t); code != c.code {
				t.Errorf("code %q, want %q (body %s)", code, c.code, r.body)
			}
			if got := e.count(); got != before {
				t.Errorf("stream went from %d to %d messages for a rejected request", before, got)
			}
		})
	}
}

func TestGzipBodyIsRefused(t *testing.T) {
	e := newEnv(t, httpapi.Config{})
	before := e.count()
	req := newRequest(http.MethodPost, httpapi.PathEvent, "application/json", event(nil))
	req.Header.Set("Content-Encoding", "gzip")
	r := do(t, e.srv, req)
	if r.status != http.StatusUnsupportedMediaType || r.errorCode(t) != httpapi.CodeUnsupportedMediaType {
		t.Fatalf("status %d body %s; want 415 unsupported_media_type", r.status, r.body)
	}
	if got := e.count(); got != before {
		t.Fatalf("stream went from %d to %d", before, got)
	}
}

func TestBodyLimitIsConfigurable(t *testing.T) {
	e := newEnv(t, httpapi.Config{BodyLimit: 200})
	before := e.count()
	r := doTCP(t, e, newRequest(http.MethodPost, httpapi.PathEvent, "application/json", event(set("padding", strings.Repeat("p", 200)))))
	if r.status != http.StatusRequestEntityTooLarge || r.errorCode(t) != httpapi.CodeBodyTooLarge {
		t.Fatalf("status %d body %s; want 413 body_too_large", r.status, r.body)
	}
	// A chunked body has no Content-Length: the limit applies while reading it.
	conn, err := net.DialTimeout("tcp", e.srv.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	chunk := strings.Repeat("c", 120)
	chunked := "POST " + httpapi.PathEvent + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
		strings.Repeat(fmt.Sprintf("%x\r\n%s\r\n", len(chunk), chunk), 2) + "0\r\n\r\n"
	if _, err := io.WriteString(conn, chunked); err != nil { // one write: all of it reaches the server at once
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	r = read(t, "chunked POST", res, err)
	if r.status != http.StatusRequestEntityTooLarge || r.errorCode(t) != httpapi.CodeBodyTooLarge {
		t.Fatalf("chunked: status %d body %s; want 413 body_too_large", r.status, r.body)
	}
	if r := post(t, e.srv, event(nil)); r.status != http.StatusAccepted {
		t.Fatalf("small body: status %d body %s", r.status, r.body)
	}
	if got := e.count(); got != before+1 {
		t.Fatalf("stream went from %d to %d, want +1", before, got)
	}
}

func TestPopularGameModes(t *testing.T) {
	e := newEnv(t, httpapi.Config{})
	r := do(t, e.srv, newRequest(http.MethodGet, httpapi.PathPopular+"?region=US", "", ""))
	if r.status != http.StatusOK {
		t.Fatalf("status %d body %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if string(r.body) != `{"region":"US","game_modes":[]}` {
		t.Fatalf("body %s", r.body)
	}

	catalog := domain.DefaultCatalog()
	counts := domain.NewCounts(catalog)
	add := func(region string, mode int, n int64) {
		slot, ok := catalog.SlotOf(region, mode)
		if !ok {
			t.Fatalf("no slot %s/%d", region, mode)
		}
		counts.Add(slot, n)
	}
	add("EU", 1, 1000)
	add("EU", 2, 2000)
	add("EU", 3, 1000)
	e.view.SetShard(0, 0, 0, counts)
	r = do(t, e.srv, newRequest(http.MethodGet, httpapi.PathPopular+"?region=EU", "", ""))
	want := `{"region":"EU","game_modes":[{"game_mode":2,"player_count":2000},{"game_mode":1,"player_count":1000},{"game_mode":3,"player_count":1000}]}`
	if r.status != http.StatusOK || string(r.body) != want {
		t.Fatalf("status %d body %s; want %s", r.status, r.body, want)
	}
}

func TestHealthz(t *testing.T) {
	e := newEnv(t, httpapi.Config{})
	r := do(t, e.srv, newRequest(http.MethodGet, httpapi.PathHealthz, "", ""))
	if r.status != http.StatusOK || string(r.body) != `{"status":"ok"}` {
		t.Fatalf("status %d body %s", r.status, r.body)
	}
}

func TestReadyz(t *testing.T) {
	e := newEnv(t, httpapi.Config{})
	var mu sync.Mutex
	var why error = errors.New("lobby view not synced")
	srv := httpapi.New(httpapi.Config{}, httpapi.Deps{
		Events: e.svc, Lobby: e.view, Gatherer: e.reg,
		Readiness: httpapi.ReadinessFunc(func() error { mu.Lock(); defer mu.Unlock(); return why }),
	})
	r := do(t, srv, newRequest(http.MethodGet, httpapi.PathReadyz, "", ""))
	if r.status != http.StatusServiceUnavailable {
		t.Fatalf("not ready: status %d body %s", r.status, r.body)
	}
	if m := r.json(t); m["status"] != "not_ready" || m["reason"] != "lobby view not synced" {
		t.Fatalf("not ready body %s", r.body)
	}
	mu.Lock()
	why = nil
	mu.Unlock()
	r = do(t, srv, newRequest(http.MethodGet, httpapi.PathReadyz, "", ""))
	if r.status != http.StatusOK || string(r.body) != `{"status":"ready"}` {
		t.Fatalf("ready: status %d body %s", r.status, r.body)
	}
	// Without a Readiness the server is always ready.
	r = do(t, e.srv, newRequest(http.MethodGet, httpapi.PathReadyz, "", ""))
	if r.status != http.StatusOK {
		t.Fatalf("nil readiness: status %d body %s", r.status, r.body)
	}
}

func TestMetricsCountAcceptedEvents(t *testing.T) {
	e := newEnv(t, httpapi.Config{})
	if r := post(t, e.srv, event(nil)); r.status != http.StatusAccepted {
		t.Fatalf("post: %d %s", r.status, r.body)
	}
	post(t, e.srv, event(setPayload("region", "XX")))
	r := do(t, e.srv, newRequest(http.MethodGet, httpapi.PathMetrics, "", ""))
	if r.status != http.StatusOK {
		t.Fatalf("metrics: %d %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("metrics Content-Type %q", ct)
	}
	for _, line := range []string{
		`gamemodes_events_accepted_total{source="http"} 1`,
		`gamemodes_events_rejected_total{reason="invalid_region",source="http"} 1`,
	} {
		if !strings.Contains(string(r.body), line) {
			t.Errorf("metrics lack %q:\n%s", line, r.body)
		}
	}
}

// unavailable is a submitter whose stream is always down: it tests the
// HTTP mapping of ingest.ErrUnavailable only.
type unavailable struct{}

func (unavailable) Submit(context.Context, []byte) (ingest.Receipt, error) {
	return ingest.Receipt{}, fmt.Errorf("%w: nats: secret internal detail", ingest.ErrUnavailable)
}

func TestUnavailableIs503WithRetryAfter(t *testing.T) {
	srv := httpapi.New(httpapi.Config{}, httpapi.Deps{Events: unavailable{}, Lobby: lobby.NewView(domain.DefaultCatalog(), nil)})
	r := post(t, srv, event(nil))
	if r.status != http.StatusServiceUnavailable {
		t.Fatalf("status %d body %s", r.status, r.body)
	}
	if got := r.header.Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After %q, want 1", got)
	}
	if code := r.errorCode(t); code != httpapi.CodeUnavailable {
		t.Errorf("code %q", code)
	}
	if strings.Contains(string(r.body), "secret") {
		t.Errorf("503 leaks the cause: %s", r.body)
	}
}

func TestStreamDownIs503(t *testing.T) {
	e := newEnv(t, httpapi.Config{SubmitTimeout: 300 * time.Millisecond})
	e.ns.Shutdown()
	e.ns.WaitForShutdown()
	r := post(t, e.srv, event(nil))
	if r.status != http.StatusServiceUnavailable || r.errorCode(t) != httpapi.CodeUnavailable {
		t.Fatalf("status %d body %s; want 503 unavailable", r.status, r.body)
	}
	if got := r.header.Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After %q, want 1", got)
	}
}

// failingLobby returns an unexpected error, to test the 500 mapping.
type failingLobby struct{}

func (failingLobby) Popular(string) ([]byte, error) {
	return nil, errors.New("secret internal detail")
}

// panickingLobby panics, to test that a panic is a 500 and not a crash.
type panickingLobby struct{}

func (panickingLobby) Popular(string) ([]byte, error) { panic("boom") }

func TestInternalErrorsDoNotLeak(t *testing.T) {
	for _, l := range []httpapi.LobbyLists{failingLobby{}, panickingLobby{}} {
		srv := httpapi.New(httpapi.Config{}, httpapi.Deps{Events: unavailable{}, Lobby: l})
		r := do(t, srv, newRequest(http.MethodGet, httpapi.PathPopular+"?region=US", "", ""))
		if r.status != http.StatusInternalServerError || r.errorCode(t) != httpapi.CodeInternal {
			t.Fatalf("%T: status %d body %s; want 500 internal", l, r.status, r.body)
		}
		if strings.Contains(string(r.body), "secret") || strings.Contains(string(r.body), "boom") {
			t.Fatalf("%T: 500 leaks the cause: %s", l, r.body)
		}
	}
}

func TestListenServeAndShutdown(t *testing.T) {
	e := newEnv(t, httpapi.Config{})
	if e.srv.Addr() != "" {
		t.Fatalf("Addr before Listen: %q", e.srv.Addr())
	}
	if err := e.srv.Listen("127.0.0.1:0"); err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := e.srv.Addr()
	if addr == "" {
		t.Fatal("no Addr after Listen")
	}
	before := e.count()
	res, err := http.Post("http://"+addr+httpapi.PathEvent, "application/json", strings.NewReader(event(nil)))
	if err != nil {
		t.Fatalf("post over TCP: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d", res.StatusCode)
	}
	if got := e.count(); got != before+1 {
		t.Fatalf("stream went from %d to %d", before, got)
	}

	// Over a real connection too, an oversized body is JSON 413.
	big := `{"user_id":"` + strings.Repeat("x", 64<<10) + `"}`
	r := headersOnly(t, addr, newRequest(http.MethodPost, httpapi.PathEvent, "application/json", big))
	if r.status != http.StatusRequestEntityTooLarge || r.errorCode(t) != httpapi.CodeBodyTooLarge {
		t.Fatalf("oversized over TCP: %d %s", r.status, r.body)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Fatalf("still accepting on %s after Shutdown", addr)
	}
	if got := e.srv.Addr(); got != "" {
		t.Errorf("Addr after Shutdown: %q", got)
	}
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
}

func TestListenOnBusyPortFails(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv := httpapi.New(httpapi.Config{}, httpapi.Deps{Events: unavailable{}, Lobby: lobby.NewView(domain.DefaultCatalog(), nil)})
	if err := srv.Listen(ln.Addr().String()); err == nil {
		t.Fatalf("Listen on busy %s succeeded", ln.Addr())
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown of a server that never listened: %v", err)
	}
}

func TestShutdownRightAfterListen(t *testing.T) {
	for i := 0; i < 20; i++ {
		srv := httpapi.New(httpapi.Config{}, httpapi.Deps{Events: unavailable{}, Lobby: lobby.NewView(domain.DefaultCatalog(), nil)})
		if err := srv.Listen("127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := srv.Shutdown(ctx); err != nil {
			t.Fatalf("shutdown: %v", err)
		}
		cancel()
	}
}

// slowLobby blocks Popular until released, to hold a request in flight.
type slowLobby struct {
	entered chan struct{}
	release chan struct{}
}

func (l slowLobby) Popular(region string) ([]byte, error) {
	close(l.entered)
	<-l.release
	return []byte(`{"region":"US","game_modes":[]}`), nil
}

func TestShutdownFinishesInFlightRequests(t *testing.T) {
	l := slowLobby{entered: make(chan struct{}), release: make(chan struct{})}
	srv := httpapi.New(httpapi.Config{}, httpapi.Deps{Events: unavailable{}, Lobby: l})
	if err := srv.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	type result struct {
		status int
		err    error
	}
	got := make(chan result, 1)
	go func() {
		res, err := http.Get("http://" + srv.Addr() + httpapi.PathPopular + "?region=US")
		if err != nil {
			got <- result{err: err}
			return
		}
		res.Body.Close()
		got <- result{status: res.StatusCode}
	}()
	<-l.entered

	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stopped <- srv.Shutdown(ctx)
	}()
	select {
	case err := <-stopped:
		t.Fatalf("Shutdown returned (%v) with a request in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(l.release)
	if r := <-got; r.err != nil || r.status != http.StatusOK {
		t.Fatalf("in-flight request: status %d err %v", r.status, r.err)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

func TestFxModule(t *testing.T) {
	e := newEnv(t, httpapi.Config{})
	var srv *httpapi.Server
	app := fx.New(
		fx.NopLogger,
		fx.Supply(httpapi.Config{Addr: "127.0.0.1:0"}),
		fx.Supply(fx.Annotate(e.svc, fx.As(new(httpapi.EventSubmitter)))),
		fx.Supply(fx.Annotate(e.view, fx.As(new(httpapi.LobbyLists)))),
		fx.Supply(fx.Annotate(e.reg, fx.As(new(prometheus.Gatherer)))),
		httpapi.Module,
		fx.Populate(&srv),
	)
	if err := app.Err(); err != nil {
		t.Fatalf("fx: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := app.Start(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	res, err := http.Get("http://" + srv.Addr() + httpapi.PathHealthz)
	if err != nil {
		t.Fatalf("healthz: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("healthz status %d", res.StatusCode)
	}
	if err := app.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
}

func TestFxModuleReportsBusyPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	app := fx.New(
		fx.NopLogger,
		fx.Supply(httpapi.Config{Addr: ln.Addr().String()}),
		fx.Supply(fx.Annotate(unavailable{}, fx.As(new(httpapi.EventSubmitter)))),
		fx.Supply(fx.Annotate(lobby.NewView(domain.DefaultCatalog(), nil), fx.As(new(httpapi.LobbyLists)))),
		httpapi.Module,
	)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := app.Start(ctx); err == nil {
		_ = app.Stop(ctx)
		t.Fatal("start on a busy port succeeded")
	}
}

// nats.go trims leading and trailing spaces from header values, so event_ids
// that differ only by them would share one Nats-Msg-Id and the second event
// would be dropped as a duplicate of a different one: such ids are refused.
func TestEventIDsDifferingBySpacesAreNotDuplicates(t *testing.T) {
	e := newEnv(t, httpapi.Config{})
	if r := post(t, e.srv, event(set("event_id", "ws-1"))); r.status != http.StatusAccepted {
		t.Fatalf("first: %d %s", r.status, r.body)
	}
	for _, id := range []string{" ws-1", "ws-1 "} {
		before := e.count()
		r := post(t, e.srv, event(func(ev, _ map[string]any) { ev["event_id"] = id; ev["user_id"] = "other" }))
		if r.status == http.StatusAccepted && r.json(t)["duplicate"] == true {
			t.Errorf("event_id %q: %s, the event of another user was dropped as a duplicate of \"ws-1\"", id, r.body)
		}
		if r.status == http.StatusAccepted && e.count() != before+1 {
			t.Errorf("event_id %q: accepted but not stored", id)
		}
	}
}

// TestShutdownDrainsBeforeClosingTheListener: with a drain delay, /readyz
// answers 503 draining as soon as Shutdown begins while events are still
// accepted on the open listener (each answer asking to close the
// connection); only after the delay is the listener closed.
func TestShutdownDrainsBeforeClosingTheListener(t *testing.T) {
	e := newEnv(t, httpapi.Config{DrainDelay: 30 * time.Second})
	if err := e.srv.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	addr := e.srv.Addr()
	base := "http://" + addr
	get := func(path string) (*http.Response, error) {
		res, err := http.Get(base + path)
		if err == nil {
			res.Body.Close()
		}
		return res, err
	}
	if res, err := get(httpapi.PathReadyz); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("readyz before shutdown: %v %v", res, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- e.srv.Shutdown(ctx) }()

	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		res, err := get(httpapi.PathReadyz)
		if err != nil {
			t.Fatalf("readyz while draining: %v (the listener closed before the delay)", err)
		}
		if res.StatusCode == http.StatusServiceUnavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("readyz still 200 after Shutdown began")
		}
	}
	before := e.count()
	res, err := http.Post(base+httpapi.PathEvent, "application/json", strings.NewReader(event(nil)))
	if err != nil {
		t.Fatalf("post while draining: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusAccepted || !res.Close {
		t.Fatalf("post while draining: status %d, Connection: close %v; want 202 and close", res.StatusCode, res.Close)
	}
	if got := e.count(); got != before+1 {
		t.Fatalf("stream went from %d to %d while draining", before, got)
	}
	select {
	case err := <-stopped:
		t.Fatalf("Shutdown returned before the drain delay: %v", err)
	default:
	}
	cancel() // end the delay early: the listener closes now
	if err := <-stopped; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("shutdown: %v", err)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Fatalf("still accepting on %s after the drain", addr)
	}
}
