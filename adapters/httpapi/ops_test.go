package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
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
	"github.com/prometheus/client_golang/prometheus"
)

// opsEnv is an edge with the operations page over a real embedded server:
// real ingest, lobby view, NATS status reader and ops service.
type opsEnv struct {
	srv  *httpapi.Server
	view *lobby.View
}

func newOpsEnv(t *testing.T) *opsEnv {
	t.Helper()
	ns := natstest.RunServer(t)
	_, js := natstest.Connect(t, ns.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	topo, err := topology.Ensure(ctx, js, topology.Config{Partitions: 4})
	if err != nil {
		t.Fatalf("ensure topology: %v", err)
	}
	reg := prometheus.NewRegistry()
	catalog := domain.MustCatalog([]string{"US", "EU"}, []int{1, 2})
	metrics := ingest.NewMetrics(reg)
	view := lobby.NewView(catalog, nil)
	svc := ops.NewService(ops.Config{InstanceID: "edge-test", Roles: []string{"edge"}}, ops.Deps{
		Counts: view, Cluster: jsadapter.NewOpsReader(js, catalog, topo.Partitions),
		Accepted: metrics.Accepted, Rejected: metrics.Rejected,
	})
	srv := httpapi.New(httpapi.Config{}, httpapi.Deps{
		Events: ingest.NewService(catalog, jsadapter.NewEventPublisher(js), metrics),
		Lobby:  view, Gatherer: reg, Ops: svc,
	})
	return &opsEnv{srv: srv, view: view}
}

func TestOpsStatusReportsCountsIngestAndCluster(t *testing.T) {
	e := newOpsEnv(t)
	for _, body := range []string{
		`{"user_id":1,"event_type":"ENTER_GAME_MODE","event_payload":{"game_mode":1,"region":"US"}}`,
		`{"user_id":2,"event_type":"ENTER_GAME_MODE","event_payload":{"game_mode":2,"region":"EU"}}`,
		`{"user_id":3,"event_type":"ENTER_GAME_MODE","event_payload":{"game_mode":1,"region":"XX"}}`,
	} {
		post(t, e.srv, body)
	}
	counts := domain.NewCounts(e.view.Catalog())
	slot, _ := e.view.Catalog().SlotOf("EU", 2)
	counts.Add(slot, 3)
	e.view.SetShard(1, 0, 0, counts)

	r := do(t, e.srv, newRequest(http.MethodGet, httpapi.PathOpsStatus, "", ""))
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/json" || r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("status %d headers %v body %s", r.status, r.header, r.body)
	}
	var st ops.Status
	if err := json.Unmarshal(r.body, &st); err != nil {
		t.Fatalf("body %s: %v", r.body, err)
	}
	if st.InstanceID != "edge-test" || st.Counts.Total != 3 || st.Counts.PlayerCounts[1][1] != 3 || st.Counts.RegionTotals[1] != 3 {
		t.Fatalf("identity or counts: %s", r.body)
	}
	if st.Ingest.Accepted["http"] != 2 || st.Ingest.Rejected["http"] != 1 {
		t.Fatalf("ingest: %+v", st.Ingest)
	}
	cl := st.Cluster
	if cl.Stream.Error != "" || cl.Stream.Messages != 2 || cl.Stream.LastSeq != 2 {
		t.Fatalf("stream: %+v", cl.Stream)
	}
	if cl.Archive.Error == "" || cl.Workers.Error != "" || cl.Partitions.Count != 4 || len(cl.Partitions.Items) != 4 {
		t.Fatalf("cluster: %s", r.body)
	}
	// No worker has written a shard: every partition is behind by the
	// whole stream.
	for _, p := range cl.Partitions.Items {
		if p.Owner != "" || p.Lag != 2 {
			t.Fatalf("partition %+v", p)
		}
	}

	// The exact field names the page and the OpenAPI document rely on.
	var raw map[string]any
	if err := json.Unmarshal(r.body, &raw); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{
		"instance_id", "roles", "build.version", "build.go_version", "build.modified", "started_at", "generated_at",
		"counts.regions", "counts.game_modes", "counts.player_counts", "counts.region_totals", "counts.total",
		"counts.shards", "counts.synced", "counts.last_change",
		"ingest.accepted.http", "ingest.rejected.http", "ingest.window_seconds", "ingest.rates",
		"cluster.read_at", "cluster.stream.name", "cluster.stream.messages", "cluster.stream.bytes",
		"cluster.stream.first_seq", "cluster.stream.last_seq", "cluster.stream.consumers",
		"cluster.archive.consumer", "cluster.archive.num_pending", "cluster.archive.num_ack_pending",
		"cluster.archive.lag", "cluster.archive.ack_floor_seq", "cluster.archive.error",
		"cluster.workers.members", "cluster.partitions.count", "cluster.partitions.items",
	} {
		var v any = raw
		for _, k := range strings.Split(path, ".") {
			m, ok := v.(map[string]any)
			if !ok {
				v = nil
				break
			}
			v = m[k]
		}
		if v == nil {
			t.Errorf("field %s missing in %s", path, r.body)
		}
	}
	item := raw["cluster"].(map[string]any)["partitions"].(map[string]any)["items"].([]any)[0].(map[string]any)
	for _, k := range []string{"partition", "owner", "shard_owner", "applied_seq", "delivered_seq", "durable_lag", "lag"} {
		if _, ok := item[k]; !ok {
			t.Errorf("partition field %s missing in %v", k, item)
		}
	}
}

func TestOpsPageIsServedWithAStrictPolicy(t *testing.T) {
	e := newOpsEnv(t)
	page := do(t, e.srv, newRequest(http.MethodGet, "/", "", ""))
	if page.status != http.StatusOK || page.header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("GET /: status %d headers %v", page.status, page.header)
	}
	if csp := page.header.Get("Content-Security-Policy"); csp != httpapi.ContentSecurityPolicy ||
		!strings.HasPrefix(csp, "default-src 'self'; script-src 'self'; style-src 'self';") || strings.Contains(csp, "unsafe") {
		t.Fatalf("Content-Security-Policy %q", csp)
	}
	if page.header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("headers %v", page.header)
	}
	if idx := do(t, e.srv, newRequest(http.MethodGet, "/index.html", "", "")); idx.status != http.StatusOK || string(idx.body) != string(page.body) {
		t.Fatalf("GET /index.html: status %d", idx.status)
	}
	// Nothing inline (the policy would block it) and nothing from elsewhere.
	html := string(page.body)
	if regexp.MustCompile(`<script(\s[^>]*)?>[^<]+</script>|<style|\sstyle=|\son[a-z]+=|https?://`).MatchString(html) {
		t.Fatalf("the page has inline script or style, or an external reference:\n%s", html)
	}
	// Every asset the page names is served with its type and the policy.
	wantType := map[string]string{".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
	refs := regexp.MustCompile(`(?:src|href)="([^"]+)"`).FindAllStringSubmatch(html, -1)
	if len(refs) != 3 {
		t.Fatalf("assets %v, want the script, the style sheet and the icon", refs)
	}
	for _, ref := range refs {
		a := do(t, e.srv, newRequest(http.MethodGet, ref[1], "", ""))
		ext := ref[1][strings.LastIndex(ref[1], "."):]
		if a.status != http.StatusOK || len(a.body) == 0 || a.header.Get("Content-Type") != wantType[ext] ||
			a.header.Get("Content-Security-Policy") != httpapi.ContentSecurityPolicy {
			t.Fatalf("GET %s: status %d headers %v", ref[1], a.status, a.header)
		}
	}
	if a := do(t, e.srv, newRequest(http.MethodGet, "/ops/missing.js", "", "")); a.status != http.StatusNotFound {
		t.Fatalf("GET /ops/missing.js: status %d", a.status)
	}
}

func TestNoOpsPageWithoutOpsStatus(t *testing.T) {
	e := newEnv(t, httpapi.Config{})
	for _, path := range []string{"/", httpapi.PathOpsStatus, "/ops/ops.js"} {
		if r := do(t, e.srv, newRequest(http.MethodGet, path, "", "")); r.status != http.StatusNotFound {
			t.Errorf("GET %s without ops: status %d", path, r.status)
		}
	}
}
