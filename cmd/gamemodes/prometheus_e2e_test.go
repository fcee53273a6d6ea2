package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/adapters/postgres/pgtest"
	"github.com/gamemodes/gamemodes/cmd/internal/proctest"
	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/nats-io/nats.go"
	yaml "go.yaml.in/yaml/v4"
)

const (
	alertsFile    = "../../deploy/prometheus/alerts.yml"
	dashboardFile = "../../deploy/grafana/gamemodes.json"
	metricsFile   = "../../deploy/metrics.txt"
)

// dashboardVars are the values the test gives the dashboard's variables.
var dashboardVars = strings.NewReplacer("$__rate_interval", "1m", "$region", "US")

// promServer is Debian's prometheus scraping one gamemodes process with the
// repository's alert rules loaded.
type promServer struct {
	url string
}

func startPrometheus(t *testing.T, target string) *promServer {
	t.Helper()
	bin := proctest.Tool(t, "prometheus", "GAMEMODES_REQUIRE_PROMETHEUS")
	rules, err := filepath.Abs(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: gamemodes
    static_configs:
      - targets: [%q]
`, rules, target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	port := proctest.FreePort(t)
	p := &promServer{url: fmt.Sprintf("http://127.0.0.1:%d", port)}
	proctest.Start(t, "prometheus", exec.Command(bin, "--config.file", filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path", filepath.Join(dir, "data"), "--web.listen-address", fmt.Sprintf("127.0.0.1:%d", port)))
	return p
}

// promSample is one element of an instant vector.
type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// query evaluates expr now; it returns the API's error for a bad query.
func (p *promServer) query(expr string) ([]promSample, error) {
	resp, err := http.Get(p.url + "/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if out.Status != "success" {
		return nil, fmt.Errorf("%s", out.Error)
	}
	var samples []promSample
	switch out.Data.ResultType {
	case "vector":
		err = json.Unmarshal(out.Data.Result, &samples)
	case "scalar":
		samples = []promSample{{}}
	default:
		err = fmt.Errorf("result type %s", out.Data.ResultType)
	}
	return samples, err
}

// waitQuery waits until expr returns at least one sample.
func (p *promServer) waitQuery(t *testing.T, expr string, within time.Duration) []promSample {
	t.Helper()
	var err error
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		var s []promSample
		if s, err = p.query(expr); err == nil && len(s) > 0 {
			return s
		}
	}
	t.Fatalf("prometheus: %s empty within %s (%v)", expr, within, err)
	return nil
}

// alertRule is a rule of alerts.yml.
type alertRule struct {
	Alert string `yaml:"alert"`
	Expr  string `yaml:"expr"`
}

func readAlertRules(t *testing.T) []alertRule {
	t.Helper()
	raw, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []alertRule `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	var out []alertRule
	for _, g := range f.Groups {
		out = append(out, g.Rules...)
	}
	if len(out) == 0 {
		t.Fatal("no rules in alerts.yml")
	}
	return out
}

// dashboardTarget is one query of the Grafana dashboard.
type dashboardTarget struct{ panel, expr string }

func readDashboardTargets(t *testing.T) []dashboardTarget {
	t.Helper()
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	var out []dashboardTarget
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			out = append(out, dashboardTarget{p.Title, dashboardVars.Replace(tg.Expr)})
		}
	}
	if len(out) == 0 {
		t.Fatal("no queries in the dashboard")
	}
	return out
}

var seriesName = regexp.MustCompile(`\b(gamemodes_[a-z_]+|up)\b`)

// steadyLoad posts events over HTTP (many users, some lobby reads) until
// stopped, as the dashboards expect to see them.
func steadyLoad(t *testing.T, p *proc, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second}
	regions := []string{"US", "EU", "BR"}
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 99))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
				body := eventBody(fmt.Sprintf("prom-%d-%d", g, i), strconv.Itoa(rng.IntN(5000)), "ENTER_GAME_MODE", regions[rng.IntN(3)], 1+rng.IntN(10))
				if resp, err := client.Post(p.httpURL+"/api/v1/event", "application/json", strings.NewReader(body)); err == nil {
					resp.Body.Close()
				}
				if i%10 == 0 {
					if resp, err := client.Get(p.httpURL + "/api/v1/popular_game_modes?region=US"); err == nil {
						resp.Body.Close()
					}
				}
			}
		}(g)
	}
	return &wg
}

// familyNames lists the gamemodes_ metric families in a /metrics answer,
// as "name type" lines.
func familyNames(t *testing.T, text string) []string {
	t.Helper()
	var out []string
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 4 && f[0] == "#" && f[1] == "TYPE" && strings.HasPrefix(f[2], "gamemodes_") {
			out = append(out, f[2]+" "+f[3])
		}
	}
	slices.Sort(out)
	return out
}

// TestPrometheusEvaluatesDashboardAndAlerts runs gamemodes (every role,
// archiving to Postgres through a proxy the test can cut) under a steady
// load, scraped every second by a real Prometheus loaded with
// deploy/prometheus/alerts.yml, and:
//   - evaluates every query of deploy/grafana/gamemodes.json: each must
//     succeed and return data;
//   - evaluates every alert's expression: each must succeed, every series it
//     reads must exist, every rule must evaluate without error, and none
//     holds on the healthy system;
//   - cuts Postgres: GamemodesArchiveStoreDown must become pending;
//   - compares the metric families the process exports with deploy/metrics.txt
//     (GAMEMODES_UPDATE_METRICS=1 rewrites it), the list the Kubernetes
//     checks hold the autoscaler's metrics against.
func TestPrometheusEvaluatesDashboardAndAlerts(t *testing.T) {
	proctest.Tool(t, "prometheus", "GAMEMODES_REQUIRE_PROMETHEUS")
	pg := pgtest.Schema(t)
	pgProxy := pgtest.NewProxy(t, pg)
	httpPort := proctest.FreePort(t)
	p := startProc(t, httpPort, proctest.FreePort(t), t.TempDir(), "--postgres-url", pgProxy.URL(pg),
		"--rate-limit-user", "20", "--rate-burst-user", "20")
	p.waitReady()
	prom := startPrometheus(t, fmt.Sprintf("127.0.0.1:%d", httpPort))

	stop := make(chan struct{})
	load := steadyLoad(t, p, stop)
	defer func() { close(stop); load.Wait() }()

	// What a healthy system also sees now and then: invalid events over
	// HTTP and NATS, a client over its rate limit, a read given a
	// consistency token.
	for i := 0; i < 3; i++ {
		if code, _ := p.post(eventBody(fmt.Sprintf("bad-%d", i), "9", "ENTER_GAME_MODE", "XX", 1)); code != http.StatusBadRequest {
			t.Fatalf("invalid region: %d", code)
		}
	}
	nc, err := nats.Connect(p.natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := nc.Publish(topology.EventSubject("US", domain.UserToken("7")), []byte(`{"user_id":"8"}`)); err != nil {
		t.Fatal(err)
	}
	limited := 0
	for i := 0; i < 40; i++ {
		if code, _ := p.post(eventBody(fmt.Sprintf("flood-%d", i), "flooder", "ENTER_GAME_MODE", "EU", 2)); code == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited == 0 {
		t.Fatal("no post of the flooding user was rate limited")
	}
	_, out := p.post(eventBody("ryw", "reader", "ENTER_GAME_MODE", "BR", 4))
	tok, _ := out["consistency_token"].(string)
	if resp, err := http.Get(p.httpURL + "/api/v1/popular_game_modes?region=BR&after=" + url.QueryEscape(tok)); err != nil || resp.StatusCode != 200 {
		t.Fatalf("read with after=: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	// Ten scrapes and the rules evaluated: the 1m rates have data.
	prom.waitQuery(t, `count_over_time(up{job="gamemodes"}[1m]) >= 10`, 60*time.Second)
	prom.waitQuery(t, `sum(rate(gamemodes_events_applied_total[1m])) > 0`, 30*time.Second)

	for _, tg := range readDashboardTargets(t) {
		s, err := prom.query(tg.expr)
		if err != nil {
			t.Errorf("dashboard %q: %s: %v", tg.panel, tg.expr, err)
		} else if len(s) == 0 {
			t.Errorf("dashboard %q: %s: no data under load", tg.panel, tg.expr)
		}
	}
	rules := readAlertRules(t)
	for _, r := range rules {
		s, err := prom.query(r.Expr)
		if err != nil {
			t.Errorf("alert %s: %v", r.Alert, err)
			continue
		}
		if len(s) > 0 {
			t.Errorf("alert %s holds on the healthy system: %+v", r.Alert, s)
		}
		for _, name := range slices.Compact(slices.Sorted(slices.Values(seriesName.FindAllString(r.Expr, -1)))) {
			if got, err := prom.query(fmt.Sprintf(`count({__name__=%q})`, name)); err != nil || len(got) == 0 {
				t.Errorf("alert %s reads %s, which has no series (%v)", r.Alert, name, err)
			}
		}
	}
	checkRulesHealthy(t, prom, len(rules))

	// Postgres cut: the archive store goes down and the alert is pending.
	pgProxy.Cut()
	deadline := time.Now().Add(60 * time.Second)
	for state := ""; state != "pending" && state != "firing"; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("GamemodesArchiveStoreDown not pending 60 s after Postgres was cut (state %q)", state)
		}
		state = alertState(t, prom, "GamemodesArchiveStoreDown")
	}
	pgProxy.Restore()

	// The exported families, against deploy/metrics.txt.
	got := familyNames(t, scrape(t, p.httpURL))
	if os.Getenv("GAMEMODES_UPDATE_METRICS") == "1" {
		header := "# Metric families a gamemodes process (every role, archive on) exports under load, as \"name type\".\n" +
			"# Written by GAMEMODES_UPDATE_METRICS=1 go test ./cmd/gamemodes/ -run Prometheus; the Kubernetes\n" +
			"# checks (deploy/kubernetes) hold the autoscaler's metrics against it.\n"
		if err := os.WriteFile(metricsFile, []byte(header+strings.Join(got, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(metricsFile)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, line := range strings.Split(string(raw), "\n") {
		if line != "" && !strings.HasPrefix(line, "#") {
			want = append(want, line)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("exported metric families differ from %s (GAMEMODES_UPDATE_METRICS=1 rewrites it):\ngot  %v\nwant %v", metricsFile, got, want)
	}
}

// checkRulesHealthy fails unless Prometheus has evaluated n rules, each
// without error.
func checkRulesHealthy(t *testing.T, prom *promServer, n int) {
	t.Helper()
	resp, err := http.Get(prom.url + "/api/v1/rules")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					Name      string `json:"name"`
					Health    string `json:"health"`
					LastError string `json:"lastError"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, g := range out.Data.Groups {
		for _, r := range g.Rules {
			seen++
			if r.Health != "ok" {
				t.Errorf("rule %s: health %q %s", r.Name, r.Health, r.LastError)
			}
		}
	}
	if seen != n {
		t.Errorf("prometheus loaded %d rules, alerts.yml has %d", seen, n)
	}
}

// alertState returns the state of alert name ("pending", "firing") or "".
func alertState(t *testing.T, prom *promServer, name string) string {
	t.Helper()
	resp, err := http.Get(prom.url + "/api/v1/alerts")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Data struct {
			Alerts []struct {
				Labels map[string]string `json:"labels"`
				State  string            `json:"state"`
			} `json:"alerts"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	for _, a := range out.Data.Alerts {
		if a.Labels["alertname"] == name {
			return a.State
		}
	}
	return ""
}
