package client_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/client"
	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/nats/natstest"
	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// env is a client on a real embedded JetStream server, plus a second
// connection to inspect what the server holds.
type env struct {
	t      *testing.T
	ns     *server.Server
	nc     *nats.Conn // the client's connection
	js     jetstream.JetStream
	client *client.Client
}

// newEnv starts a server with the real topology (unless noTopology) and a
// client on it.
func newEnv(t *testing.T, noTopology bool, opts ...client.Option) *env {
	t.Helper()
	ns := natstest.RunServer(t)
	return newEnvOn(t, ns, noTopology, opts...)
}

func newEnvOn(t *testing.T, ns *server.Server, noTopology bool, opts ...client.Option) *env {
	t.Helper()
	_, js := natstest.Connect(t, ns.ClientURL())
	if !noTopology {
		ensure(t, js)
	}
	nc, _ := natstest.Connect(t, ns.ClientURL())
	c, err := client.New(nc, opts...)
	if err != nil {
		t.Fatalf("client.New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return &env{t: t, ns: ns, nc: nc, js: js, client: c}
}

func ensure(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := topology.Ensure(ctx, js, topology.Config{}); err != nil {
		t.Fatalf("ensure topology: %v", err)
	}
}

func ctx10(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// stored returns every message of the events stream, in order.
func (e *env) stored() []*jetstream.RawStreamMsg {
	e.t.Helper()
	ctx := ctx10(e.t)
	stream, err := e.js.Stream(ctx, topology.EventsStream)
	if err != nil {
		e.t.Fatalf("events stream: %v", err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		e.t.Fatalf("stream info: %v", err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if err != nil {
			e.t.Fatalf("get msg %d: %v", seq, err)
		}
		out = append(out, m)
	}
	if uint64(len(out)) != info.State.Msgs {
		e.t.Fatalf("read %d messages, stream holds %d", len(out), info.State.Msgs)
	}
	return out
}

// storedSubject is where the stream's transform stores an event of user in region.
func storedSubject(user, region string) string {
	return fmt.Sprintf("%d.gamemodes.events.%s", domain.PartitionOf(domain.UserToken(user), topology.DefaultPartitions), region)
}

func TestEventsAreStoredAsTheContractSays(t *testing.T) {
	e := newEnv(t, false)
	ctx := ctx10(t)
	at := time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)
	type sent struct {
		receipt client.Receipt
		user    string
		body    string
	}
	var all []sent
	publish := func(f func(context.Context, string, string, int, ...client.EventOption) (client.Receipt, error), id, user, region string, mode int, typ string) {
		t.Helper()
		r, err := f(ctx, user, region, mode, client.WithEventID(id), client.WithTimestamp(at))
		if err != nil {
			t.Fatalf("%s %s: %v", typ, id, err)
		}
		body := fmt.Sprintf(`{"event_id":%q,"user_id":%q,"event_type":%q,"event_payload":{"game_mode":%d,"region":%q},"timestamp":"2026-11-26T01:00:00Z"}`, id, user, typ, mode, region)
		all = append(all, sent{r, user, body})
	}
	publish(e.client.Enter, "e-1", "42", "US", 3, "ENTER_GAME_MODE")
	publish(e.client.Heartbeat, "e-2", "42", "US", 3, "HEARTBEAT_GAME_MODE")
	publish(e.client.Leave, "e-3", "42", "US", 3, "LEAVE_GAME_MODE")
	// Not a plain token: "=" + base64url of the id, hashed to its partition by the stream.
	publish(e.client.Enter, "e-4", "player@example.com", "EU", 7, "ENTER_GAME_MODE")

	if tok := domain.UserToken("player@example.com"); tok != "=cGxheWVyQGV4YW1wbGUuY29t" {
		t.Fatalf("user token %q", tok)
	}
	msgs := e.stored()
	if len(msgs) != len(all) {
		t.Fatalf("stream holds %d messages, want %d", len(msgs), len(all))
	}
	catalog := domain.DefaultCatalog()
	for i, s := range all {
		want := client.Receipt{EventID: fmt.Sprintf("e-%d", i+1), Stream: topology.EventsStream, Sequence: uint64(i + 1), Attempts: 1}
		if s.receipt != want {
			t.Errorf("receipt %d: got %+v want %+v", i, s.receipt, want)
		}
		m := msgs[i]
		region := map[bool]string{true: "EU", false: "US"}[i == 3]
		if m.Subject != storedSubject(s.user, region) {
			t.Errorf("message %d stored under %q, want %q", i, m.Subject, storedSubject(s.user, region))
		}
		if string(m.Data) != s.body {
			t.Errorf("message %d payload\n got %s\nwant %s", i, m.Data, s.body)
		}
		if got := m.Header.Get(jetstream.MsgIDHeader); got != s.receipt.EventID {
			t.Errorf("message %d Nats-Msg-Id %q", i, got)
		}
		// The worker's own check: the stored subject's partition and region fit the payload.
		p, r, ok := topology.ParseStoredEventSubject(m.Subject)
		if !ok {
			t.Fatalf("stored subject %q", m.Subject)
		}
		if _, _, err := catalog.DecodeStored(p, r, topology.DefaultPartitions, m.Data, m.Time); err != nil {
			t.Errorf("message %d refused by the worker's check: %v", i, err)
		}
	}
}

func TestGeneratedEventIDIsTheMsgID(t *testing.T) {
	e := newEnv(t, false)
	r, err := e.client.Enter(ctx10(t), "7", "BR", 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.EventID) != 22 { // a nuid
		t.Fatalf("generated event id %q", r.EventID)
	}
	msgs := e.stored()
	if len(msgs) != 1 {
		t.Fatalf("stream holds %d messages", len(msgs))
	}
	if got := msgs[0].Header.Get(jetstream.MsgIDHeader); got != r.EventID {
		t.Fatalf("Nats-Msg-Id %q, event id %q", got, r.EventID)
	}
	if !strings.HasPrefix(string(msgs[0].Data), `{"event_id":"`+r.EventID+`","user_id":"7","event_type":"ENTER_GAME_MODE","event_payload":{"game_mode":2,"region":"BR"},"timestamp":"`) {
		t.Fatalf("payload %s", msgs[0].Data)
	}
}

func TestSameEventIDIsStoredOnce(t *testing.T) {
	e := newEnv(t, false)
	ctx := ctx10(t)
	first, err := e.client.Enter(ctx, "1", "US", 1, client.WithEventID("once"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := e.client.Publish(ctx, client.Event{ID: "once", UserID: "1", Type: client.EventEnter, Region: "US", GameMode: 1})
	if err != nil {
		t.Fatal(err)
	}
	if first.Duplicate || !again.Duplicate || again.Sequence != first.Sequence {
		t.Fatalf("first %+v, again %+v: want the second reported as a duplicate of the first", first, again)
	}
	if n := len(e.stored()); n != 1 {
		t.Fatalf("stream holds %d messages, want 1", n)
	}
}

func TestInvalidInputIsRefusedBeforePublishing(t *testing.T) {
	e := newEnv(t, false)
	ctx := ctx10(t)
	// Everything the client's connection publishes on the events subjects.
	spy, err := e.nc.SubscribeSync(topology.EventsSubjects)
	if err != nil {
		t.Fatal(err)
	}
	valid := client.Event{ID: "ok", UserID: "1", Type: client.EventEnter, Region: "US", GameMode: 1}
	with := func(f func(*client.Event)) client.Event { ev := valid; f(&ev); return ev }
	cases := []struct {
		name string
		ev   client.Event
		code string
	}{
		{"unknown region", with(func(e *client.Event) { e.Region = "XX" }), domain.CodeInvalidRegion},
		{"empty region", with(func(e *client.Event) { e.Region = "" }), domain.CodeInvalidRegion},
		{"region with a dot", with(func(e *client.Event) { e.Region = "US.x" }), domain.CodeInvalidRegion},
		{"unknown game mode", with(func(e *client.Event) { e.GameMode = 99 }), domain.CodeInvalidGameMode},
		{"empty user", with(func(e *client.Event) { e.UserID = "" }), domain.CodeInvalidUserID},
		{"user with a control character", with(func(e *client.Event) { e.UserID = "a\x00b" }), domain.CodeInvalidUserID},
		{"user not UTF-8", with(func(e *client.Event) { e.UserID = "\xff" }), domain.CodeInvalidUserID},
		{"user too long", with(func(e *client.Event) { e.UserID = strings.Repeat("u", 129) }), domain.CodeInvalidUserID},
		{"event id with white space", with(func(e *client.Event) { e.ID = " x" }), domain.CodeInvalidEventID},
		{"event id too long", with(func(e *client.Event) { e.ID = strings.Repeat("i", 129) }), domain.CodeInvalidEventID},
		{"unknown event type", with(func(e *client.Event) { e.Type = 0 }), domain.CodeInvalidEventType},
		{"timestamp before 1970", with(func(e *client.Event) { e.Timestamp = time.Date(1969, 1, 1, 0, 0, 0, 0, time.UTC) }), domain.CodeInvalidTimestamp},
	}
	for _, c := range cases {
		_, err := e.client.Publish(ctx, c.ev)
		var v *client.ValidationError
		if !errors.As(err, &v) || v.Code != c.code {
			t.Errorf("%s: Publish error %v, want code %s", c.name, err, c.code)
		}
		p, err := e.client.PublishAsync(ctx, c.ev)
		if !errors.As(err, &v) || v.Code != c.code || p != nil {
			t.Errorf("%s: PublishAsync error %v, want code %s", c.name, err, c.code)
		}
	}
	if _, err := e.client.Enter(ctx, "1", "ZZ", 1); err == nil {
		t.Error("Enter with an unknown region accepted")
	}
	// A region the service is configured with, which the defaults lack.
	custom, err := client.New(e.nc, client.WithRegions("MARS"), client.WithGameModes(100))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := custom.Enter(ctx, "1", "US", 1); err == nil {
		t.Error("a client configured for MARS accepted US")
	}
	for _, r := range []struct{ region, code string }{{"", domain.CodeMissingRegion}, {"XX", domain.CodeInvalidRegion}} {
		_, err := e.client.SubscribeRegion(r.region, func(client.List) {})
		var v *client.ValidationError
		if !errors.As(err, &v) || v.Code != r.code {
			t.Errorf("SubscribeRegion(%q): %v, want code %s", r.region, err, r.code)
		}
	}

	// Nothing was published: the first message the spy sees is the next valid one.
	if _, err := e.client.Publish(ctx, valid); err != nil {
		t.Fatal(err)
	}
	m, err := spy.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Get(jetstream.MsgIDHeader) != "ok" {
		t.Fatalf("an invalid event was published: %s", m.Data)
	}
	if n := len(e.stored()); n != 1 {
		t.Fatalf("stream holds %d messages, want 1", n)
	}
}

// retries records the retry hook's calls.
type retries struct {
	mu    sync.Mutex
	errs  []error
	calls chan struct{}
}

func newRetries() *retries { return &retries{calls: make(chan struct{}, 1000)} }

func (r *retries) hook(_ string, _ int, err error) {
	r.mu.Lock()
	r.errs = append(r.errs, err)
	r.mu.Unlock()
	r.calls <- struct{}{}
}

// wait waits for n more retry hook calls.
func (r *retries) wait(t *testing.T, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		select {
		case <-r.calls:
		case <-time.After(20 * time.Second):
			t.Fatalf("no retry after %d", i)
		}
	}
}

func TestNoRespondersIsRetriedUntilTheStreamExists(t *testing.T) {
	rs := newRetries()
	e := newEnv(t, true, client.WithBackoff(10*time.Millisecond, 50*time.Millisecond), client.WithMaxAttempts(1000), client.WithRetryHook(rs.hook))
	type result struct {
		r   client.Receipt
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := e.client.Enter(ctx10(t), "5", "US", 4, client.WithEventID("early"))
		done <- result{r, err}
	}()
	rs.wait(t, 1)
	rs.mu.Lock()
	firstErr := rs.errs[0]
	rs.mu.Unlock()
	if !errors.Is(firstErr, jetstream.ErrNoStreamResponse) {
		t.Fatalf("first retry after %v, want no responders", firstErr)
	}
	ensure(t, e.js)
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	if res.r.Attempts < 2 || res.r.Duplicate || res.r.Sequence != 1 {
		t.Fatalf("receipt %+v", res.r)
	}
	if n := len(e.stored()); n != 1 {
		t.Fatalf("stream holds %d messages, want 1", n)
	}
}

// restartable is a server on a fixed port and store that a test stops and starts again.
type restartable struct {
	t    *testing.T
	dir  string
	port int
	ns   *server.Server
}

func newRestartable(t *testing.T) *restartable {
	r := &restartable{t: t, dir: t.TempDir(), port: natstest.FreePort(t)}
	r.ns = natstest.RunServerInDir(t, r.dir, r.port)
	return r
}

func (r *restartable) stop(nc *nats.Conn) {
	r.ns.Shutdown()
	r.ns.WaitForShutdown()
	deadline := time.Now().Add(10 * time.Second)
	for nc.IsConnected() {
		if time.Now().After(deadline) {
			r.t.Fatal("the client did not notice the server stopped")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (r *restartable) start() { r.ns = natstest.RunServerInDir(r.t, r.dir, r.port) }

func TestRetriedEventIsStoredOnceAfterTheServerComesBack(t *testing.T) {
	srv := newRestartable(t)
	rs := newRetries()
	e := newEnvOn(t, srv.ns, false, client.WithAckTimeout(200*time.Millisecond),
		client.WithBackoff(10*time.Millisecond, 50*time.Millisecond), client.WithMaxAttempts(1000), client.WithRetryHook(rs.hook))
	srv.stop(e.nc)

	type result struct {
		r   client.Receipt
		err error
	}
	done := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		r, err := e.client.Enter(ctx, "9", "JP", 5, client.WithEventID("retried"))
		done <- result{r, err}
	}()
	// Two attempts timed out while the server was down: at least three
	// copies of the event wait in the connection's reconnect buffer.
	rs.wait(t, 2)
	srv.start()
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	// The first copy was stored; the live attempt's copy was a duplicate.
	if res.r.Attempts < 3 || !res.r.Duplicate || res.r.Sequence != 1 {
		t.Fatalf("receipt %+v, want a duplicate of sequence 1 after 3 attempts or more", res.r)
	}
	msgs := e.stored()
	if len(msgs) != 1 {
		t.Fatalf("stream holds %d messages, want 1", len(msgs))
	}
	if msgs[0].Subject != storedSubject("9", "JP") || msgs[0].Header.Get(jetstream.MsgIDHeader) != "retried" {
		t.Fatalf("stored %s %v", msgs[0].Subject, msgs[0].Header)
	}
}

func TestPublishAsyncKeepsAtMostMaxPendingInFlight(t *testing.T) {
	srv := newRestartable(t)
	e := newEnvOn(t, srv.ns, false, client.WithMaxPending(2), client.WithAckTimeout(200*time.Millisecond),
		client.WithBackoff(10*time.Millisecond, 50*time.Millisecond), client.WithMaxAttempts(1000))
	ctx := ctx10(t)
	// With the server up, many events go through the window of two.
	var pend []*client.Pending
	for i := 0; i < 100; i++ {
		p, err := e.client.PublishAsync(ctx, client.Event{UserID: fmt.Sprint(i), Type: client.EventEnter, Region: "US", GameMode: 1 + i%10})
		if err != nil {
			t.Fatal(err)
		}
		pend = append(pend, p)
	}
	if err := e.client.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	seqs := map[uint64]bool{}
	for _, p := range pend {
		r, err := p.Result()
		if err != nil || r.EventID != p.EventID() || r.Duplicate {
			t.Fatalf("pending %s: %+v %v", p.EventID(), r, err)
		}
		seqs[r.Sequence] = true
	}
	if len(seqs) != 100 || len(e.stored()) != 100 {
		t.Fatalf("%d distinct sequences, %d stored; want 100", len(seqs), len(e.stored()))
	}

	// With the server down, two events fill the window and the third waits for room.
	srv.stop(e.nc)
	a, err := e.client.PublishAsync(ctx, client.Event{ID: "a", UserID: "a", Type: client.EventEnter, Region: "US", GameMode: 1})
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.client.PublishAsync(ctx, client.Event{ID: "b", UserID: "b", Type: client.EventEnter, Region: "US", GameMode: 1})
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := e.client.PublishAsync(short, client.Event{ID: "c", UserID: "c", Type: client.EventEnter, Region: "US", GameMode: 1}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("third publish with a full window: %v, want it to wait for room until its context ends", err)
	}
	if _, err := a.Result(); !errors.Is(err, client.ErrNotDone) {
		t.Fatalf("a is done while the server is down: %v", err)
	}
	srv.start()
	for _, p := range []*client.Pending{a, b} {
		if r, err := p.Wait(ctx); err != nil || r.Sequence <= 100 {
			t.Fatalf("pending %s: %+v %v", p.EventID(), r, err)
		}
	}
	if n := len(e.stored()); n != 102 {
		t.Fatalf("stream holds %d messages, want 102", n)
	}
}

func TestClosedClientRefusesWork(t *testing.T) {
	e := newEnv(t, false)
	ctx := ctx10(t)
	sub, err := e.client.SubscribeRegion("US", func(client.List) {})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.client.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if sub.Unsubscribe() != nil {
		t.Fatal("Unsubscribe after Close failed")
	}
	if _, err := e.client.Enter(ctx, "1", "US", 1); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Enter after Close: %v", err)
	}
	if _, err := e.client.SubscribeRegion("US", func(client.List) {}); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("SubscribeRegion after Close: %v", err)
	}
	if !e.nc.IsConnected() {
		t.Fatal("Close closed the caller's connection")
	}
	if n := len(e.stored()); n != 0 {
		t.Fatalf("stream holds %d messages", n)
	}
}

// publishList publishes a live list as the service does.
func publishList(t *testing.T, nc *nats.Conn, region, version, body string) {
	t.Helper()
	m := &nats.Msg{Subject: client.PopularSubject(region), Data: []byte(body), Header: nats.Header{}}
	if version != "" {
		m.Header.Set(client.VersionHeader, version)
	}
	if err := nc.PublishMsg(m); err != nil {
		t.Fatal(err)
	}
}

// collector gathers the lists delivered to a subscription.
type collector struct {
	mu    sync.Mutex
	lists []client.List
	got   chan client.List
}

func newCollector() *collector { return &collector{got: make(chan client.List, 100)} }

func (c *collector) add(l client.List) {
	c.mu.Lock()
	c.lists = append(c.lists, l)
	c.mu.Unlock()
	c.got <- l
}

func (c *collector) all() []client.List {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]client.List(nil), c.lists...)
}

// waitVersion waits until a list of version v is delivered.
func (c *collector) waitVersion(t *testing.T, v uint64) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case l := <-c.got:
			if l.Version == v {
				return
			}
		case <-timeout:
			t.Fatalf("version %d not delivered; got %+v", v, c.all())
		}
	}
}

func TestSubscribeRegionDeliversNewerListsInOrder(t *testing.T) {
	e := newEnv(t, false)
	pub, _ := natstest.Connect(t, e.ns.ClientURL())
	us, eu := newCollector(), newCollector()
	subUS, err := e.client.SubscribeRegion("US", us.add)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.SubscribeRegion("EU", eu.add); err != nil {
		t.Fatal(err)
	}
	if err := e.nc.Flush(); err != nil { // the subscriptions are registered on the server
		t.Fatal(err)
	}
	publishList(t, pub, "US", "1", `{"region":"US","game_modes":[{"game_mode":1,"player_count":2000},{"game_mode":2,"player_count":1000}]}`)
	publishList(t, pub, "US", "3", `{"region":"US","game_modes":[{"game_mode":2,"player_count":5}]}`)
	publishList(t, pub, "US", "2", `{"region":"US","game_modes":[{"game_mode":9,"player_count":1}]}`)  // older: dropped
	publishList(t, pub, "US", "3", `{"region":"US","game_modes":[{"game_mode":9,"player_count":1}]}`)  // repeated: dropped
	publishList(t, pub, "US", "", `{"region":"US","game_modes":[{"game_mode":9,"player_count":1}]}`)   // no version: dropped
	publishList(t, pub, "US", "x4", `{"region":"US","game_modes":[{"game_mode":9,"player_count":1}]}`) // bad version: dropped
	publishList(t, pub, "US", "5", `{"region":"US","game_modes":[{"game_mode":9,"player_count":`)      // bad JSON: dropped
	publishList(t, pub, "US", "6", `{"region":"EU","game_modes":[{"game_mode":9,"player_count":1}]}`)  // another region: dropped
	publishList(t, pub, "EU", "1", `{"region":"EU","game_modes":[{"game_mode":4,"player_count":3}]}`)  // EU's own versions
	publishList(t, pub, "US", "7", `{"region":"US","game_modes":[]}`)
	us.waitVersion(t, 7)
	eu.waitVersion(t, 1)

	want := []string{
		`1 US [{1 2000} {2 1000}]`,
		`3 US [{2 5}]`,
		`7 US []`,
	}
	got := us.all()
	if len(got) != len(want) {
		t.Fatalf("US got %d lists %+v, want %d", len(got), got, len(want))
	}
	for i, l := range got {
		if s := fmt.Sprintf("%d %s %v", l.Version, l.Region, l.GameModes); s != want[i] {
			t.Errorf("US list %d: %s, want %s", i, s, want[i])
		}
	}
	if l := eu.all(); len(l) != 1 || fmt.Sprintf("%d %s %v", l[0].Version, l[0].Region, l[0].GameModes) != "1 EU [{4 3}]" {
		t.Fatalf("EU got %+v", l)
	}

	// After Unsubscribe, nothing more arrives (EU is the barrier: its list comes after US's).
	if err := subUS.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	publishList(t, pub, "US", "8", `{"region":"US","game_modes":[]}`)
	publishList(t, pub, "EU", "2", `{"region":"EU","game_modes":[]}`)
	eu.waitVersion(t, 2)
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := len(us.all()); n != 3 {
		t.Fatalf("US got %d lists after Unsubscribe", n)
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	ns := natstest.RunServer(t)
	nc, _ := natstest.Connect(t, ns.ClientURL())
	for name, opt := range map[string]client.Option{
		"ack timeout":  client.WithAckTimeout(0),
		"max attempts": client.WithMaxAttempts(0),
		"backoff":      client.WithBackoff(time.Second, time.Millisecond),
		"max pending":  client.WithMaxPending(0),
		"regions":      client.WithRegions("US", "US"),
		"game modes":   client.WithGameModes(),
	} {
		if _, err := client.New(nc, opt); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := client.New(nil); err == nil {
		t.Error("nil connection accepted")
	}
}
