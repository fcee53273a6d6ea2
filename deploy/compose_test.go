// Package deploy_test validates the deployment files of the repository:
// compose.yaml loads as `docker compose config` loads it (compose-go, the
// library of docker compose v2) and is wired consistently with the NATS
// configuration, the load balancer and the image; Taskfile.yml parses and
// names the tasks users expect.
package deploy_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/gamemodes/gamemodes/nats/secrets"
	"github.com/nats-io/nats-server/v2/server"
	yaml "go.yaml.in/yaml/v4"
)

const root = ".." // the repository, from this package's directory

// gamemodes services of the default profile and the role each runs (the
// role is also its NATS user).
var gamemodesServices = map[string]string{
	"edge1": "edge", "edge2": "edge",
	"worker1": "worker", "worker2": "worker",
	"archiver": "archiver",
}

var natsServices = []string{"nats1", "nats2", "nats3"}

func loadProject(t *testing.T, env []string, profiles ...string) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{filepath.Join(root, "compose.yaml")},
		cli.WithWorkingDirectory(root),
		cli.WithEnv(env), // not the OS environment: the defaults are under test
		cli.WithProfiles(profiles),
	)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("compose.yaml does not load: %v", err)
	}
	return p
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, ok := p.Services[name]
	if !ok {
		t.Fatalf("service %s missing (have %v)", name, p.ServiceNames())
	}
	return s
}

func env(s types.ServiceConfig, key string) string {
	if v := s.Environment[key]; v != nil {
		return *v
	}
	return ""
}

// flagValue returns the value after flag in a command, and whether it is there.
func flagValue(cmd []string, flag string) (string, bool) {
	i := slices.Index(cmd, flag)
	if i < 0 || i+1 >= len(cmd) {
		return "", false
	}
	return cmd[i+1], true
}

// bindSource returns the host path mounted on target, relative to the repository.
func bindSource(t *testing.T, s types.ServiceConfig, target string) string {
	t.Helper()
	for _, v := range s.Volumes {
		if v.Target == target {
			if v.Type != types.VolumeTypeBind {
				t.Fatalf("%s: %s is a %s mount, want a bind mount of a repository path", s.Name, target, v.Type)
			}
			abs, _ := filepath.Abs(root)
			rel, err := filepath.Rel(abs, v.Source)
			if err != nil || strings.HasPrefix(rel, "..") {
				t.Fatalf("%s: %s mounts %s, outside the repository", s.Name, target, v.Source)
			}
			return rel
		}
	}
	t.Fatalf("%s: nothing mounted on %s", s.Name, target)
	return ""
}

// passwordVars lists the environment variables auth.conf takes passwords from.
func passwordVars(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "nats/config/auth.conf"))
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{} // user -> variable
	re := regexp.MustCompile(`user:\s*(\w+)\s*(?:\n\s*|,\s*)password:\s*\$(\w+)`)
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		vars[m[1]] = m[2]
	}
	if len(vars) != 6 {
		t.Fatalf("auth.conf users with passwords: %v, want 6", vars)
	}
	return vars
}

func TestComposeServices(t *testing.T) {
	p := loadProject(t, nil)
	if p.Name != "gamemodes" {
		t.Errorf("project name %q", p.Name)
	}
	want := []string{"archiver", "edge1", "edge2", "grafana", "lb", "nats1", "nats2", "nats3", "postgres", "prometheus", "worker1", "worker2"}
	got := slices.Sorted(func(yield func(string) bool) {
		for name := range p.Services {
			if !yield(name) {
				return
			}
		}
	})
	if !slices.Equal(got, want) {
		t.Fatalf("default services %v, want %v", got, want)
	}
	if _, ok := p.DisabledServices["single"]; !ok {
		t.Errorf("service single should be in profile single only")
	}
	single := loadProject(t, nil, "single")
	s := service(t, single, "single")
	if v, _ := flagValue(s.Command, "--roles"); v != "" {
		t.Errorf("single runs --roles %s, want every role (the default)", v)
	}
}

func TestComposeGamemodesServices(t *testing.T) {
	p := loadProject(t, nil)
	if got := secretFile(t, p, "nats_ca"); got != filepath.Join("deploy/secrets", secrets.CAFile) {
		t.Errorf("secret nats_ca is %s, want deploy/secrets/%s", got, secrets.CAFile)
	}
	for name, role := range gamemodesServices {
		t.Run(name, func(t *testing.T) {
			s := service(t, p, name)
			if s.Build == nil || s.Image != "gamemodes:local" {
				t.Errorf("image %q build %v: want the repository's Dockerfile as gamemodes:local", s.Image, s.Build)
			}
			if len(s.Command) == 0 || s.Command[0] != "serve" {
				t.Errorf("command %v: want serve", s.Command)
			}
			if v, _ := flagValue(s.Command, "--roles"); v != role {
				t.Errorf("command %v: --roles %q, want %q", s.Command, v, role)
			}
			if v, _ := flagValue(s.Command, "--instance-id"); v != name {
				t.Errorf("command %v: --instance-id %q, want %q", s.Command, v, name)
			}
			if env(s, "GAMEMODES_REPLICAS") != "3" {
				t.Errorf("GAMEMODES_REPLICAS %q, want 3", env(s, "GAMEMODES_REPLICAS"))
			}
			// One URL per NATS node, no password in it: the service
			// authenticates with its own credentials file over TLS.
			urls := strings.Split(env(s, "GAMEMODES_NATS_URL"), ",")
			var hosts []string
			for _, raw := range urls {
				u, err := url.Parse(raw)
				if err != nil || u.Scheme != "nats" || u.Port() != "4222" || u.User != nil {
					t.Fatalf("NATS URL %q: want nats://<node>:4222 without user information", raw)
				}
				hosts = append(hosts, u.Hostname())
			}
			if !slices.Equal(hosts, natsServices) {
				t.Errorf("NATS hosts %v, want %v", hosts, natsServices)
			}
			// Its own creds and the CA, nothing else (least privilege).
			var names []string
			for _, sec := range s.Secrets {
				names = append(names, sec.Source)
			}
			slices.Sort(names)
			want := []string{"nats_ca", role + "_creds"}
			slices.Sort(want)
			if !slices.Equal(names, want) {
				t.Errorf("secrets %v, want %v", names, want)
			}
			if got, want := env(s, "GAMEMODES_NATS_CREDS"), "/run/secrets/"+role+"_creds"; got != want {
				t.Errorf("GAMEMODES_NATS_CREDS %q, want %q", got, want)
			}
			if got := env(s, "GAMEMODES_NATS_TLS_CA"); got != "/run/secrets/nats_ca" {
				t.Errorf("GAMEMODES_NATS_TLS_CA %q, want /run/secrets/nats_ca", got)
			}
			if got, want := secretFile(t, p, role+"_creds"), filepath.Join("deploy/secrets", secrets.CredsFile(role)); got != want {
				t.Errorf("secret %s_creds is %s, want %s (cmd/natssecrets writes it)", role, got, want)
			}
			if user := passwordVars(t)[role]; user == "" {
				t.Errorf("role %s is not a user of auth.conf", role)
			}
			if s.HealthCheck == nil || !slices.Contains(s.HealthCheck.Test, "http://127.0.0.1:8080/readyz") {
				t.Errorf("healthcheck %v: want /readyz", s.HealthCheck)
			}
			for _, n := range natsServices {
				if d, ok := s.DependsOn[n]; !ok || d.Condition != types.ServiceConditionHealthy {
					t.Errorf("depends_on %s: %+v, want service_healthy", n, d)
				}
			}
			if name != "edge1" {
				// edge1 creates the topology with 3 replicas first.
				if d := s.DependsOn["edge1"]; d.Condition != types.ServiceConditionHealthy {
					t.Errorf("depends_on edge1: %+v, want service_healthy", d)
				}
			}
		})
	}
	ar := service(t, p, "archiver")
	pg, ok := flagValue(ar.Command, "--postgres-url")
	if u, err := url.Parse(pg); !ok || err != nil || u.Hostname() != "postgres" {
		t.Errorf("archiver --postgres-url %q: want the postgres service", pg)
	} else if pass, _ := u.User.Password(); pass != env(service(t, p, "postgres"), "POSTGRES_PASSWORD") {
		t.Errorf("archiver --postgres-url password differs from POSTGRES_PASSWORD")
	}
	if d := ar.DependsOn["postgres"]; d.Condition != types.ServiceConditionHealthy {
		t.Errorf("archiver depends_on postgres: %+v", d)
	}
	if pg := service(t, p, "postgres"); !strings.HasPrefix(pg.Image, "postgres:15") || pg.HealthCheck == nil {
		t.Errorf("postgres: image %q healthcheck %v", pg.Image, pg.HealthCheck)
	}
}

// secretFile returns the file of a compose secret, relative to the repository.
func secretFile(t *testing.T, p *types.Project, name string) string {
	t.Helper()
	sec, ok := p.Secrets[name]
	if !ok {
		t.Fatalf("no secret %s (have %v)", name, p.Secrets)
	}
	abs, _ := filepath.Abs(root)
	rel, err := filepath.Rel(abs, sec.File)
	if err != nil {
		return sec.File
	}
	return rel
}

// TestComposeSecretsFolder: GAMEMODES_SECRETS moves every secret (the NATS
// nodes' folder and the services' files) to another folder.
func TestComposeSecretsFolder(t *testing.T) {
	p := loadProject(t, []string{"GAMEMODES_SECRETS=/srv/gamemodes-secrets"})
	for _, n := range natsServices {
		found := false
		for _, v := range service(t, p, n).Volumes {
			found = found || (v.Target == "/etc/nats-secrets" && v.Source == "/srv/gamemodes-secrets/"+secrets.ServerDir)
		}
		if !found {
			t.Errorf("%s does not mount /srv/gamemodes-secrets/%s on /etc/nats-secrets", n, secrets.ServerDir)
		}
	}
	if got := p.Secrets["archiver_creds"].File; got != filepath.Join("/srv/gamemodes-secrets", secrets.CredsFile("archiver")) {
		t.Errorf("archiver_creds is %s", got)
	}
}

func TestComposeNATS(t *testing.T) {
	p := loadProject(t, nil)
	for i, name := range natsServices {
		t.Run(name, func(t *testing.T) {
			s := service(t, p, name)
			if !strings.HasPrefix(s.Image, "nats:2.") {
				t.Errorf("image %q", s.Image)
			}
			conf := fmt.Sprintf("/etc/nats/node%d.conf", i+1)
			if !slices.Equal(s.Command, []string{"-c", conf}) {
				t.Errorf("command %v, want -c %s", s.Command, conf)
			}
			dir := bindSource(t, s, "/etc/nats")
			file := filepath.Join(root, dir, filepath.Base(conf))
			if _, err := os.Stat(file); err != nil {
				t.Fatalf("mounted config: %v", err)
			}
			found := false
			for _, v := range s.Volumes {
				found = found || (v.Target == "/data" && v.Type == types.VolumeTypeVolume)
			}
			if !found {
				t.Errorf("no volume on /data (the JetStream store)")
			}
			if s.WorkingDir != "/etc/nats" {
				t.Errorf("working_dir %q, want /etc/nats (the TLS paths of the node files are relative to it)", s.WorkingDir)
			}
			if src := bindSource(t, s, "/etc/nats-secrets"); src != filepath.Join("deploy/secrets", secrets.ServerDir) {
				t.Errorf("/etc/nats-secrets mounts %s, want deploy/secrets/%s", src, secrets.ServerDir)
			}
			// The file, as the container's nats-server reads it: the
			// configuration folder on /etc/nats, the secrets of
			// cmd/natssecrets on /etc/nats-secrets, working directory /etc/nats.
			etc := filepath.Join(t.TempDir(), "etc")
			secretsDir := filepath.Join(t.TempDir(), "secrets")
			op, err := secrets.WriteDeployment(secretsDir, secrets.DeploymentOptions{
				AuthConfig: filepath.Join(root, "nats/config/auth.conf"), ServerHosts: []string{"nats1", "nats2", "nats3", "localhost", "127.0.0.1"}})
			if err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(filepath.Join(etc, "nats"), 0o755); err != nil {
				t.Fatal(err)
			}
			confs, _ := filepath.Glob(filepath.Join(root, dir, "*.conf"))
			for _, c := range confs {
				b, err := os.ReadFile(c)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(etc, "nats", filepath.Base(c)), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Rename(filepath.Join(secretsDir, secrets.ServerDir), filepath.Join(etc, "nats-secrets")); err != nil {
				t.Fatal(err)
			}
			t.Chdir(filepath.Join(etc, "nats"))
			o, err := server.ProcessConfigFile(filepath.Base(conf))
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			if o.ServerName != name || o.StoreDir != "/data" || o.Port != 4222 || o.HTTPPort != 8222 {
				t.Errorf("%s: name %q store %q port %d http %d", file, o.ServerName, o.StoreDir, o.Port, o.HTTPPort)
			}
			if o.TLSConfig == nil {
				t.Errorf("%s: the client port does not require TLS", file)
			}
			if o.Cluster.TLSConfig == nil || o.Cluster.TLSConfig.ClientAuth != tls.RequireAndVerifyClientCert {
				t.Errorf("%s: the routes do not run mutual TLS", file)
			}
			if len(o.TrustedOperators) != 1 || o.TrustedOperators[0].Subject != secrets.PublicKey(op.Key) {
				t.Errorf("%s: does not trust the generated operator", file)
			}
			if o.SystemAccount != op.Account("SYS").Public {
				t.Errorf("%s: system account %s", file, o.SystemAccount)
			}
			if _, ok := o.AccountResolver.(*server.MemAccResolver); !ok || len(o.Users) != 0 {
				t.Errorf("%s: resolver %T and %d password users, want the memory resolver and none", file, o.AccountResolver, len(o.Users))
			}
			// Every account of auth.conf is preloaded (when the server is
			// made; it is not started), and the certificate names every
			// host clients and routes dial.
			if _, err := server.NewServer(o); err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			for _, a := range []string{"GAMEMODES", "GAME_SERVERS", "SYS"} {
				if _, err := o.AccountResolver.Fetch(op.Account(a).Public); err != nil {
					t.Errorf("%s: account %s not preloaded: %v", file, a, err)
				}
			}
			leaf := o.TLSConfig.Certificates[0].Leaf
			for _, h := range []string{"nats1", "nats2", "nats3", "localhost"} {
				if err := leaf.VerifyHostname(h); err != nil {
					t.Errorf("server certificate: %v", err)
				}
			}
			var routes []string
			for _, r := range o.Routes {
				routes = append(routes, r.Host)
			}
			if want := []string{"nats1:6222", "nats2:6222", "nats3:6222"}; !slices.Equal(routes, want) {
				t.Errorf("%s: routes %v, want %v", file, routes, want)
			}
			if s.HealthCheck == nil || !strings.Contains(strings.Join(s.HealthCheck.Test, " "), ":8222/healthz") {
				t.Errorf("healthcheck %v", s.HealthCheck)
			}
		})
	}
}

func TestComposeLoadBalancer(t *testing.T) {
	p := loadProject(t, nil)
	lb := service(t, p, "lb")
	if !strings.HasPrefix(lb.Image, "haproxy:") {
		t.Fatalf("lb image %q", lb.Image)
	}
	published := false
	for _, port := range lb.Ports {
		published = published || (port.Published == "8080" && port.Target == 8080)
	}
	if !published {
		t.Errorf("lb does not publish 8080: %+v", lb.Ports)
	}
	cfg := bindSource(t, lb, "/usr/local/etc/haproxy/haproxy.cfg")
	b, err := os.ReadFile(filepath.Join(root, cfg))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	var servers []string
	for _, m := range regexp.MustCompile(`(?m)^\s*server\s+\S+\s+(\S+):8080\b`).FindAllStringSubmatch(text, -1) {
		servers = append(servers, m[1])
	}
	if !slices.Equal(servers, []string{"edge1", "edge2"}) {
		t.Errorf("haproxy servers %v, want edge1 and edge2 on 8080", servers)
	}
	for _, want := range []string{"bind :8080", "option httpchk GET /readyz", "resolvers docker"} {
		if !strings.Contains(text, want) {
			t.Errorf("haproxy.cfg lacks %q", want)
		}
	}
}

// TestComposeObservability: Prometheus loads the repository's scrape config
// and alerts and scrapes every gamemodes service and HAProxy's exporter;
// Grafana reads Prometheus and has the dashboard provisioned.
func TestComposeObservability(t *testing.T) {
	p := loadProject(t, nil)
	prom := service(t, p, "prometheus")
	dir := bindSource(t, prom, "/etc/prometheus")
	raw, err := os.ReadFile(filepath.Join(root, dir, "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	for _, f := range cfg.RuleFiles {
		if _, err := os.Stat(filepath.Join(root, dir, f)); err != nil {
			t.Errorf("rule file %s: %v", f, err)
		}
	}
	if !slices.Contains(cfg.RuleFiles, "alerts.yml") {
		t.Errorf("prometheus.yml does not load alerts.yml: %v", cfg.RuleFiles)
	}
	var targets []string
	for _, sc := range cfg.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			targets = append(targets, st.Targets...)
		}
	}
	want := []string{"lb:8404"}
	for name := range gamemodesServices {
		want = append(want, name+":8080")
	}
	slices.Sort(want)
	slices.Sort(targets)
	if !slices.Equal(targets, want) {
		t.Errorf("scrape targets %v, want %v", targets, want)
	}
	for _, target := range targets {
		if _, ok := p.Services[strings.Split(target, ":")[0]]; !ok {
			t.Errorf("scrape target %s is no service", target)
		}
	}

	g := service(t, p, "grafana")
	prov := bindSource(t, g, "/etc/grafana/provisioning")
	dash := bindSource(t, g, "/etc/grafana/dashboards/gamemodes.json")
	if _, err := os.Stat(filepath.Join(root, dash)); err != nil {
		t.Errorf("dashboard: %v", err)
	}
	ds, err := os.ReadFile(filepath.Join(root, prov, "datasources", "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(ds), "url: http://prometheus:9090") {
		t.Errorf("grafana data source does not point at the prometheus service:\n%s", ds)
	}
	provider, err := os.ReadFile(filepath.Join(root, prov, "dashboards", "gamemodes.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(provider), "path: /etc/grafana/dashboards") {
		t.Errorf("dashboard provider does not read /etc/grafana/dashboards:\n%s", provider)
	}
}

// instruction is one instruction of a Dockerfile: its keyword (upper
// case) and its arguments, continuation lines joined.
type instruction struct {
	line    int
	keyword string
	args    string
}

// parseDockerfile splits a Dockerfile into its stages' instructions: a
// stage starts at each FROM; comments and blank lines are dropped and a
// line ending in a backslash continues on the next.
func parseDockerfile(t *testing.T, text string) [][]instruction {
	t.Helper()
	var stages [][]instruction
	var cur strings.Builder
	start := 0
	for i, l := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(l)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if body, more := strings.CutSuffix(trimmed, "\\"); more {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(trimmed)
		keyword, args, _ := strings.Cut(cur.String(), " ")
		cur.Reset()
		in := instruction{line: start, keyword: strings.ToUpper(keyword), args: strings.TrimSpace(args)}
		if in.keyword == "FROM" {
			stages = append(stages, nil)
		} else if len(stages) == 0 {
			t.Fatalf("Dockerfile line %d: %s before FROM", in.line, in.keyword)
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], in)
	}
	if cur.Len() > 0 {
		t.Fatal("Dockerfile ends in a continuation line")
	}
	return stages
}

// TestDockerfileHealthcheck: the image's HEALTHCHECK runs, in exec form,
// the healthcheck binary that the build stage builds from
// deploy/healthcheck and the final stage copies in, with timings that make
// sense (the timeout shorter than the interval).
func TestDockerfileHealthcheck(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	stages := parseDockerfile(t, string(b))
	if len(stages) != 2 {
		t.Fatalf("%d stages, want 2 (build, run)", len(stages))
	}
	var checks []instruction
	for _, in := range stages[1] {
		if in.keyword == "HEALTHCHECK" {
			checks = append(checks, in)
		}
	}
	if len(checks) != 1 {
		t.Fatalf("%d HEALTHCHECK instructions in the final stage, want 1", len(checks))
	}
	fields := strings.Fields(checks[0].args)
	var cmd []string
	for i, f := range fields {
		if f == "CMD" {
			if err := json.Unmarshal([]byte(strings.Join(fields[i+1:], " ")), &cmd); err != nil || len(cmd) == 0 {
				t.Fatalf("HEALTHCHECK CMD %q: want the exec form (a JSON array; the image has no shell): %v", strings.Join(fields[i+1:], " "), err)
			}
			break
		}
		name, value, ok := strings.Cut(f, "=")
		switch {
		case !ok:
			t.Fatalf("HEALTHCHECK option %q: want --name=value", f)
		case name == "--retries":
			if n, err := strconv.Atoi(value); err != nil || n < 1 {
				t.Errorf("HEALTHCHECK --retries=%s", value)
			}
		case name == "--interval" || name == "--timeout" || name == "--start-period":
			if d, err := time.ParseDuration(value); err != nil || d <= 0 {
				t.Errorf("HEALTHCHECK %s=%s", name, value)
			}
		default:
			t.Errorf("HEALTHCHECK option %s unknown", name)
		}
	}
	opt := func(name string) time.Duration {
		for _, f := range fields {
			if v, ok := strings.CutPrefix(f, name+"="); ok {
				d, _ := time.ParseDuration(v)
				return d
			}
		}
		return 0
	}
	if interval, timeout := opt("--interval"), opt("--timeout"); interval == 0 || timeout == 0 || timeout >= interval {
		t.Errorf("HEALTHCHECK interval %v timeout %v: want both, the timeout shorter", interval, timeout)
	}
	if cmd == nil {
		t.Fatal("HEALTHCHECK without CMD")
	}
	// The binary: built from ./deploy/healthcheck into the build output
	// directory, which the final stage copies to the command's directory.
	var out string
	for _, in := range stages[0] {
		if in.keyword != "RUN" || !strings.Contains(in.args, "go build") {
			continue
		}
		args := strings.Fields(in.args)
		if i := slices.Index(args, "-o"); i >= 0 && i+1 < len(args) && slices.Contains(args, "./deploy/healthcheck") {
			out = args[i+1]
		}
	}
	if out == "" || !strings.HasSuffix(out, "/") {
		t.Fatalf("the build stage does not go build ./deploy/healthcheck into a directory (-o dir/): %q", out)
	}
	dir, bin := filepath.Split(cmd[0])
	if bin != "healthcheck" {
		t.Errorf("HEALTHCHECK runs %s, not the healthcheck binary", cmd[0])
	}
	copied := false
	for _, in := range stages[1] {
		if in.keyword == "COPY" && strings.Fields(in.args)[0] == "--from=build" {
			if args := strings.Fields(in.args); len(args) == 3 && args[1] == out && args[2] == dir {
				copied = true
			}
		}
	}
	if !copied {
		t.Errorf("the final stage does not COPY --from=build %s %s (where HEALTHCHECK runs %s)", out, dir, cmd[0])
	}
}

func TestTaskfile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, "Taskfile.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var tf struct {
		Version string
		Tasks   map[string]struct {
			Desc string
			Cmds []any
		}
	}
	if err := yaml.Unmarshal(b, &tf); err != nil {
		t.Fatalf("Taskfile.yml: %v", err)
	}
	if tf.Version != "3" {
		t.Errorf("version %q", tf.Version)
	}
	for _, name := range []string{"run", "build", "test", "test:race", "ci", "lint", "bench", "up", "down",
		"cluster:nats", "cluster:up", "cluster:down", "cluster:status", "loadgen"} {
		task, ok := tf.Tasks[name]
		if !ok {
			t.Errorf("task %s missing", name)
			continue
		}
		if task.Desc == "" || len(task.Cmds) == 0 {
			t.Errorf("task %s: no desc or cmds", name)
		}
	}
	// The cluster tasks run deploy/cluster.sh with a subcommand it knows.
	script, err := os.ReadFile(filepath.Join(root, "deploy/cluster.sh"))
	if err != nil {
		t.Fatal(err)
	}
	for name, task := range tf.Tasks {
		if !strings.HasPrefix(name, "cluster:") {
			continue
		}
		cmd := fmt.Sprint(task.Cmds...)
		m := regexp.MustCompile(`deploy/cluster\.sh (\w+)`).FindStringSubmatch(cmd)
		if m == nil || !strings.Contains(string(script), "\n"+m[1]+")") {
			t.Errorf("task %s: %q does not run a deploy/cluster.sh subcommand", name, cmd)
		}
	}
}
