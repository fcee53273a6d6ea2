package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/adapters/httpapi"
	jsadapter "github.com/gamemodes/gamemodes/adapters/jetstream"
	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/modules/lobby"
	"github.com/gamemodes/gamemodes/modules/ops"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
)

func init() {
	// Bodies that kin-openapi validates as plain strings.
	openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.PlainBodyDecoder)
	openapi3filter.RegisterBodyDecoder("text/event-stream", openapi3filter.PlainBodyDecoder)
	openapi3filter.RegisterBodyDecoder("text/javascript", openapi3filter.PlainBodyDecoder)
	openapi3filter.RegisterBodyDecoder("text/css", openapi3filter.PlainBodyDecoder)
	openapi3filter.RegisterBodyDecoder("image/svg+xml", openapi3filter.PlainBodyDecoder)
}

// loadDocument fetches the served document and validates it (examples
// included, against their schemas).
func loadDocument(t *testing.T) *openapi3.T {
	t.Helper()
	srv := httpapi.New(httpapi.Config{}, httpapi.Deps{})
	r := do(t, srv, newRequest(http.MethodGet, httpapi.PathOpenAPI, "", ""))
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET %s: %d %q", httpapi.PathOpenAPI, r.status, r.header.Get("Content-Type"))
	}
	if !bytes.Equal(r.body, httpapi.OpenAPIDocument()) {
		t.Fatal("the served document is not OpenAPIDocument()")
	}
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(r.body)
	if err != nil {
		t.Fatalf("load the OpenAPI document: %v", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("invalid OpenAPI document: %v", err)
	}
	return doc
}

func TestOpenAPIDocumentIsValid(t *testing.T) {
	doc := loadDocument(t)
	if doc.OpenAPI != "3.0.3" || doc.Paths.Len() == 0 {
		t.Fatalf("openapi %q with %d paths", doc.OpenAPI, doc.Paths.Len())
	}
	// Every event error code of the domain is documented for POST /api/v1/event.
	codes := fmt.Sprint(doc.Paths.Value(httpapi.PathEvent).Post.Responses.Status(400).Value.Content.Get("application/json").Schema.Value.AllOf[1].Value.Properties["error"].Value.Properties["code"].Value.Enum)
	for _, c := range []string{domain.CodeMalformedJSON, domain.CodeInvalidEventID, domain.CodeMissingUserID, domain.CodeInvalidUserID,
		domain.CodeMissingEventType, domain.CodeInvalidEventType, domain.CodeMissingPayload, domain.CodeInvalidPayload,
		domain.CodeMissingRegion, domain.CodeInvalidRegion, domain.CodeMissingGameMode, domain.CodeInvalidGameMode,
		domain.CodeInvalidTimestamp, httpapi.CodeBadRequest} {
		if !strings.Contains(codes, c) {
			t.Errorf("code %s not documented for POST %s (%s)", c, httpapi.PathEvent, codes)
		}
	}
}

// operations returns the document's operations by "METHOD PATH".
func operations(doc *openapi3.T) map[string]*openapi3.Operation {
	ops := map[string]*openapi3.Operation{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			ops[method+" "+path] = op
		}
	}
	return ops
}

// opsService is the operations status over e's NATS, lobby view and ingest counters.
func opsService(t *testing.T, e *env) *ops.Service {
	t.Helper()
	s := ops.NewService(ops.Config{InstanceID: "openapi-test", Roles: []string{"edge"}}, ops.Deps{
		Counts: e.view, Cluster: jsadapter.NewOpsReader(e.js, e.view.Catalog(), e.topo.Partitions),
		Accepted: e.metrics.Accepted, Rejected: e.metrics.Rejected,
	})
	return s
}

func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	doc := loadDocument(t)
	e := newEnv(t, httpapi.Config{})
	// Every optional capability on, so that every route is registered.
	srv := httpapi.New(httpapi.Config{}, httpapi.Deps{Events: e.svc, Lobby: e.view, Gatherer: e.reg,
		Streams: lobby.NewBroadcaster(e.view, lobby.DefaultBroadcastInterval), Ops: opsService(t, e)})
	registered := map[string]bool{}
	for _, r := range srv.App().GetRoutes(true) {
		if r.Method == http.MethodHead || r.Method == http.MethodOptions {
			continue // fiber adds HEAD to every GET
		}
		registered[r.Method+" "+r.Path] = true
	}
	documented := operations(doc)
	for route := range registered {
		if documented[route] == nil {
			t.Errorf("route %s is served but not documented in adapters/httpapi/openapi.json", route)
		}
	}
	for route := range documented {
		if !registered[route] {
			t.Errorf("route %s is documented but not served", route)
		}
	}
}

// exampleCase is one request built from the document with the answer it
// must get.
type exampleCase struct {
	key          string // "METHOD PATH example NAME"
	method, path string
	name         string
	item         *openapi3.PathItem
	op           *openapi3.Operation
	status       int               // the documented status holding the example
	mediaType    string            // the example's media type
	value        any               // the example's value
	compare      string            // "schema": only the status and the schema are checked
	query        string            // the request's query string
	headers      map[string]string // the request's headers
	body         string            // the request's body
	validRequest bool              // the request must satisfy the document
}

// exampleCases pairs each response example with its request: the request
// body example of the same name, or the example's x-request. It fails on a
// response status without example, an example without request and a
// request example without answer.
func exampleCases(t *testing.T, doc *openapi3.T) []exampleCase {
	t.Helper()
	var cases []exampleCase
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			requests := map[string]any{}
			if op.RequestBody != nil {
				for name, ex := range op.RequestBody.Value.Content.Get("application/json").Examples {
					requests[name] = ex.Value.Value
				}
			}
			seen := map[string]bool{}
			for code, resp := range op.Responses.Map() {
				status, err := strconv.Atoi(code)
				if err != nil {
					t.Fatalf("%s %s: response %q is not a status", method, path, code)
				}
				examples := 0
				for mediaType, media := range resp.Value.Content {
					for name, ex := range media.Examples {
						examples++
						if seen[name] {
							t.Errorf("%s %s: example name %s used twice", method, path, name)
						}
						seen[name] = true
						c := exampleCase{key: method + " " + path + " example " + name, method: method, path: path, name: name,
							item: item, op: op, status: status, mediaType: mediaType, value: ex.Value.Value}
						c.compare, _ = ex.Value.Extensions["x-compare"].(string)
						if v, ok := requests[name]; ok {
							b, err := json.Marshal(v)
							if err != nil {
								t.Fatal(err)
							}
							c.body, c.validRequest = string(b), true
							delete(requests, name)
						} else if xr, ok := ex.Value.Extensions["x-request"].(map[string]any); ok {
							c.query, _ = xr["query"].(string)
							c.body, _ = xr["body"].(string)
							c.headers = map[string]string{}
							if hs, ok := xr["headers"].(map[string]any); ok {
								for k, v := range hs {
									c.headers[k] = fmt.Sprint(v)
								}
							}
							c.validRequest = status < 300
						} else {
							t.Errorf("%s: neither a request body example named %s nor x-request", c.key, name)
							continue
						}
						cases = append(cases, c)
					}
				}
				if examples == 0 {
					t.Errorf("%s %s: response %d has no example to test it with", method, path, status)
				}
			}
			for name := range requests {
				t.Errorf("%s %s: request example %s has no response example of the same name", method, path, name)
			}
		}
	}
	slices.SortFunc(cases, func(a, b exampleCase) int { return strings.Compare(a.key, b.key) })
	return cases
}

// exampleRequest is a request a case sends, rebuilt for every use.
type exampleRequest struct {
	method, url string
	header      http.Header
	body        []byte
}

func (r exampleRequest) build(ctx context.Context) *http.Request {
	req, err := http.NewRequestWithContext(ctx, r.method, r.url, bytes.NewReader(r.body))
	if err != nil {
		panic(err)
	}
	if len(r.body) == 0 {
		req.Body, req.ContentLength = http.NoBody, 0
	}
	req.Header = r.header.Clone()
	return req
}

func (r exampleRequest) send(t *testing.T) response {
	t.Helper()
	c := &http.Client{Timeout: 30 * time.Second}
	res, err := c.Do(r.build(context.Background()))
	return read(t, r.method+" "+r.url, res, err)
}

// sendFirstEvent sends a request answered with an endless event stream
// and reads its first event.
func (r exampleRequest) sendFirstEvent(t *testing.T) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := http.DefaultClient.Do(r.build(ctx))
	if err != nil {
		t.Fatalf("%s %s: %v", r.method, r.url, err)
	}
	defer res.Body.Close()
	if !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		body, _ := io.ReadAll(res.Body)
		return response{status: res.StatusCode, header: res.Header, body: body}
	}
	var event bytes.Buffer
	br := bufio.NewReader(res.Body)
	for !bytes.HasSuffix(event.Bytes(), []byte("\n\n")) {
		line, err := br.ReadBytes('\n')
		event.Write(line)
		if err != nil {
			t.Fatalf("%s %s: reading the first event %q: %v", r.method, r.url, event.String(), err)
		}
	}
	return response{status: res.StatusCode, header: res.Header, body: event.Bytes()}
}

// scenario is what an example needs besides its request.
type scenario struct {
	// setup changes the server's settings and dependencies.
	setup func(t *testing.T, cfg *httpapi.Config, deps *httpapi.Deps)
	// before runs once the server listens, before the request; it may change the request.
	before func(t *testing.T, srv *httpapi.Server, req *exampleRequest)
	// headersOnly sends the request line and headers only (the body is announced).
	headersOnly bool
}

// sendFirst is a scenario's before that sends the request once already.
func sendFirst(t *testing.T, _ *httpapi.Server, req *exampleRequest) {
	if r := req.send(t); r.status >= 300 {
		t.Fatalf("first send: %d %s", r.status, r.body)
	}
}

func withAuth(t *testing.T, cfg *httpapi.Config, _ *httpapi.Deps) { cfg.Auth = hs256Auth(t) }

// scenarioFor returns the scenario of an example name; an example not
// listed runs on a default server.
func scenarioFor(name string) scenario {
	switch name {
	case "duplicate":
		return scenario{before: sendFirst}
	case "rate_limited":
		return scenario{
			setup: func(_ *testing.T, cfg *httpapi.Config, _ *httpapi.Deps) {
				cfg.UserRateLimit, cfg.UserRateBurst, cfg.AddrRateLimit, cfg.AddrRateBurst = glacial, 1, glacial, 1
			},
			before: sendFirst,
		}
	case "unauthorized":
		return scenario{setup: withAuth}
	case "forbidden":
		return scenario{setup: withAuth, before: func(t *testing.T, _ *httpapi.Server, req *exampleRequest) {
			req.header.Set("Authorization", "Bearer "+hs256(t, claims("2")))
		}}
	case "body_too_large":
		return scenario{headersOnly: true, before: func(_ *testing.T, _ *httpapi.Server, req *exampleRequest) {
			req.body = append(req.body, bytes.Repeat([]byte(" "), httpapi.DefaultBodyLimit+1-len(req.body))...)
		}}
	case "unavailable":
		return scenario{setup: func(_ *testing.T, _ *httpapi.Config, deps *httpapi.Deps) {
			deps.Connected = func() bool { return false }
		}}
	case "overloaded":
		// One event held in flight by a submitter that never stores it
		// (as in TestInflightCap): the example's is over the cap of one.
		sub := &blockingSubmitter{entered: make(chan struct{}, 1), release: make(chan struct{})}
		return scenario{
			setup: func(_ *testing.T, cfg *httpapi.Config, deps *httpapi.Deps) {
				cfg.MaxInflight, cfg.SubmitTimeout, deps.Events = 1, time.Minute, sub
			},
			before: func(t *testing.T, srv *httpapi.Server, _ *exampleRequest) {
				held := make(chan error, 1)
				go func() {
					_, err := srv.App().Test(newRequest(http.MethodPost, httpapi.PathEvent, "application/json", event(nil)), -1)
					held <- err
				}()
				<-sub.entered
				t.Cleanup(func() {
					close(sub.release)
					if err := <-held; err != nil {
						t.Errorf("held request: %v", err)
					}
				})
			},
		}
	case "not_ready":
		return scenario{setup: func(_ *testing.T, _ *httpapi.Config, deps *httpapi.Deps) {
			deps.Readiness = httpapi.ReadinessFunc(func() error { return errors.New("lobby view not synced yet") })
		}}
	case "timeout":
		// The consistency token of an event that no worker applies (there
		// is none here): the read waits for it in vain.
		return scenario{before: func(t *testing.T, srv *httpapi.Server, req *exampleRequest) {
			r := exampleRequest{method: http.MethodPost, url: "http://" + srv.Addr() + httpapi.PathEvent,
				header: http.Header{"Content-Type": {"application/json"}}, body: []byte(event(set("event_id", "e-504")))}.send(t)
			var receipt struct {
				Token string `json:"consistency_token"`
			}
			if err := json.Unmarshal(r.body, &receipt); r.status != http.StatusAccepted || err != nil || receipt.Token == "" {
				t.Fatalf("POST for a consistency token: %d %s", r.status, r.body)
			}
			u, q, _ := strings.Cut(req.url, "?")
			params := slices.DeleteFunc(strings.Split(q, "&"), func(p string) bool { return strings.HasPrefix(p, "after=") })
			req.url = u + "?" + strings.Join(append(params, "after="+url.QueryEscape(receipt.Token)), "&")
		}}
	}
	return scenario{}
}

func TestOpenAPIExamplesMatchTheRealHandlers(t *testing.T) {
	doc := loadDocument(t)
	e := newEnv(t, httpapi.Config{})
	// The lobby shows the document's US example: 2000 players in mode 1, 1000 in mode 2.
	catalog := domain.DefaultCatalog()
	counts := domain.NewCounts(catalog)
	for mode, n := range map[int]int64{1: 2000, 2: 1000} {
		slot, _ := catalog.SlotOf("US", mode)
		counts.Add(slot, n)
	}
	e.view.SetShard(0, 0, 0, counts)
	streams := lobby.NewBroadcaster(e.view, lobby.DefaultBroadcastInterval)
	streams.Start()
	t.Cleanup(streams.Stop)
	e.streams = streams
	e.ops = opsService(t, e)

	for _, c := range exampleCases(t, doc) {
		t.Run(strings.ReplaceAll(c.key, "/", "_"), func(t *testing.T) { checkExample(t, e, doc, c) })
	}
}

// checkExample sends a case's request to a real server and checks the answer
// against the document: the example's status, the response's schema (and
// headers), and the example's value.
func checkExample(t *testing.T, e *env, doc *openapi3.T, c exampleCase) {
	sc := scenarioFor(c.name)
	cfg := httpapi.Config{}
	deps := httpapi.Deps{Events: e.svc, Lobby: e.view, Streams: e.streams, Ops: e.ops, Gatherer: e.reg}
	if sc.setup != nil {
		sc.setup(t, &cfg, &deps)
	}
	srv := httpapi.New(cfg, deps)
	base := listen(t, srv)
	req := exampleRequest{method: c.method, url: base + c.path, header: http.Header{}, body: []byte(c.body)}
	if c.query != "" {
		req.url += "?" + c.query
	}
	if c.body != "" && c.op.RequestBody != nil {
		req.header.Set("Content-Type", "application/json")
	}
	for k, v := range c.headers {
		if k != "Authorization" { // documentation only: scenarios sign real tokens
			req.header.Set(k, v)
		}
	}
	if sc.before != nil {
		sc.before(t, srv, &req)
	}
	var res response
	switch {
	case sc.headersOnly:
		res = headersOnly(t, srv.Addr(), req.build(context.Background()))
	case c.mediaType == "text/event-stream":
		res = req.sendFirstEvent(t)
	default:
		res = req.send(t)
	}
	if res.status != c.status {
		t.Fatalf("status %d body %s; the example is under %d", res.status, res.body, c.status)
	}

	ctx := context.Background()
	reqInput := &openapi3filter.RequestValidationInput{
		Request: req.build(ctx),
		Route:   &routers.Route{Spec: doc, Path: c.path, PathItem: c.item, Method: c.method, Operation: c.op},
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
	}
	if c.validRequest {
		if err := openapi3filter.ValidateRequest(ctx, reqInput); err != nil {
			t.Errorf("the example's request does not satisfy the document: %v", err)
		}
		reqInput.Request = req.build(ctx)
	}
	if err := openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
		RequestValidationInput: reqInput,
		Status:                 res.status,
		Header:                 res.header,
		Body:                   io.NopCloser(bytes.NewReader(res.body)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true},
	}); err != nil {
		t.Errorf("the answer does not satisfy the document: %v\nbody: %s", err, res.body)
	}
	compareExample(t, c, res)
}

// compareExample checks a JSON answer against the example's value: the
// error code of an error, else every field but those that vary (the
// message, a readiness reason, a consistency token, an event_id the server
// generated). An example marked "x-compare": "schema" is not compared.
func compareExample(t *testing.T, c exampleCase, res response) {
	t.Helper()
	if c.compare == "schema" || c.mediaType != "application/json" {
		return
	}
	var want, got map[string]any
	b, _ := json.Marshal(c.value)
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatalf("example value %s: %v", b, err)
	}
	if err := json.Unmarshal(res.body, &got); err != nil {
		t.Fatalf("answer %s: %v", res.body, err)
	}
	if _, isError := want["error"]; isError {
		if code := res.errorCode(t); code != want["error"].(map[string]any)["code"] {
			t.Errorf("error code %q, the example says %v", code, want["error"])
		}
		return
	}
	volatile := []string{"reason", "consistency_token"}
	var sent map[string]any
	if json.Unmarshal([]byte(c.body), &sent) != nil || sent["event_id"] == nil {
		volatile = append(volatile, "event_id")
	}
	for _, k := range volatile {
		delete(want, k)
		delete(got, k)
	}
	if !reflect.DeepEqual(want, got) {
		t.Errorf("answer %s differs from the example %s (fields %v aside)", res.body, b, volatile)
	}
}
