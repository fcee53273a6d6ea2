package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/adapters/postgres/pgtest"
	"github.com/gamemodes/gamemodes/client"
	"github.com/gamemodes/gamemodes/cmd/internal/proctest"
	"github.com/gamemodes/gamemodes/nats/natstest"
	"github.com/gamemodes/gamemodes/nats/secrets"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// runToExit runs the binary to its end (at most 30 s) and returns its exit
// code and output.
func runToExit(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binPath, args...).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%v still running after 30 s:\n%s", args, out)
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}

// errorLines returns the messages and errors of the JSON log lines at level ERROR.
func errorLines(out string) []string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		var rec struct{ Level, Msg, Err string }
		if json.Unmarshal([]byte(l), &rec) == nil && rec.Level == "ERROR" {
			lines = append(lines, rec.Msg+": "+rec.Err)
		}
	}
	return lines
}

// totalConnections is how many client connections the server has accepted.
func totalConnections(t *testing.T, ns *server.Server) uint64 {
	t.Helper()
	v, err := ns.Varz(nil)
	if err != nil {
		t.Fatal(err)
	}
	return v.TotalConnections
}

// gameServer connects a game server with the Go client's options for sec
// and returns its client, closed at the end of the test.
func gameServer(t *testing.T, url string, sec client.Security) *client.Client {
	t.Helper()
	opts, err := client.ConnectOptions(sec)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("game server connect: %v", sec.Explain(err))
	}
	t.Cleanup(nc.Close)
	gc, err := client.New(nc, client.WithRegions("US", "EU", "BR"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = gc.Close(context.Background()) })
	return gc
}

func serveArgs(natsURL string, extra ...string) []string {
	return append([]string{"serve", "--nats-url", natsURL, "--http-addr", "127.0.0.1:0", "--regions", "US,EU,BR",
		"--partitions", "8", "--log-format", "json"}, extra...)
}

// TestNATSMutualTLS: against a nats-server that requires TLS and verifies
// clients, the binary connects with the right certificate and the lobby
// works end to end; each wrong setting stops the start at once with one
// error line naming the flag and the reason, exit code 1, after at most
// one connection attempt (none when a file is refused up front).
func TestNATSMutualTLS(t *testing.T) {
	s := natstest.RunSecured(t, natstest.SecuredOptions{VerifyClients: true})
	cert, key := s.ClientCert(t, "gamemodes")
	tlsArgs := []string{"--nats-tls-ca", s.CAFile, "--nats-tls-cert", cert, "--nats-tls-key", key}

	p := startRole(t, s.URL, tlsArgs...)
	p.waitReady()
	if code, body := p.post(eventBody("tls-1", "7", "ENTER_GAME_MODE", "EU", 2)); code != 202 {
		t.Fatalf("post: %d %v", code, body)
	}
	// A game server over mutual TLS too, with the Go client's options.
	gsCert, gsKey := s.ClientCert(t, "game-server-1")
	gc := gameServer(t, s.URL, client.Security{CAFile: s.CAFile, CertFile: gsCert, KeyFile: gsKey})
	if _, err := gc.Enter(context.Background(), "8", "EU", 2); err != nil {
		t.Fatalf("game server enter: %v", err)
	}
	p.waitPopular(map[string]map[int]int64{"EU": {2: 2}}, 10*time.Second)
	if !strings.Contains(p.log.String(), `"msg":"gamemodes started"`) || len(errorLines(p.log.String())) != 0 {
		t.Fatalf("errors logged:\n%s", p.log.String())
	}

	otherCA, err := secrets.NewCA("another CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	otherCAFile := filepath.Join(t.TempDir(), "other-ca.pem")
	if err := os.WriteFile(otherCAFile, otherCA.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	strangerCert, strangerKey, _ := otherCA.Issue(secrets.CertSpec{CommonName: "stranger", Client: true})
	dir := t.TempDir()
	strangerCertFile, strangerKeyFile := filepath.Join(dir, "stranger.pem"), filepath.Join(dir, "stranger-key.pem")
	_ = os.WriteFile(strangerCertFile, strangerCert, 0o600)
	_ = os.WriteFile(strangerKeyFile, strangerKey, 0o600)
	expiredCert, expiredKey := s.Issue(t, "expired", secrets.CertSpec{CommonName: "expired", Client: true,
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})

	for _, tc := range []struct {
		name     string
		args     []string
		want     []string
		attempts uint64
	}{
		{"wrong CA", []string{"--nats-tls-ca", otherCAFile, "--nats-tls-cert", cert, "--nats-tls-key", key},
			[]string{"--nats-tls-ca " + otherCAFile, "is not signed by this CA"}, 1},
		{"no client certificate", []string{"--nats-tls-ca", s.CAFile},
			[]string{"--nats-tls-cert", "requires a client certificate"}, 1},
		{"wrong server name", append([]string{"--nats-tls-server-name", "nats.example.com"}, tlsArgs...),
			[]string{"--nats-tls-server-name nats.example.com", "is for localhost, 127.0.0.1"}, 1},
		{"client certificate of another CA", []string{"--nats-tls-ca", s.CAFile, "--nats-tls-cert", strangerCertFile, "--nats-tls-key", strangerKeyFile},
			[]string{"--nats-tls-cert " + strangerCertFile, "refused this client certificate"}, 1},
		{"expired client certificate", []string{"--nats-tls-ca", s.CAFile, "--nats-tls-cert", expiredCert, "--nats-tls-key", expiredKey},
			[]string{"--nats-tls-cert " + expiredCert, "expired at"}, 0},
		{"missing CA file", []string{"--nats-tls-ca", filepath.Join(dir, "nope.pem")},
			[]string{"--nats-tls-ca " + filepath.Join(dir, "nope.pem"), "cannot read the CA file", "no such file"}, 0},
		{"CA file without a certificate", []string{"--nats-tls-ca", strangerKeyFile},
			[]string{"--nats-tls-ca " + strangerKeyFile, "no PEM certificate"}, 0},
		{"key without its certificate", []string{"--nats-tls-ca", s.CAFile, "--nats-tls-key", key},
			[]string{"--nats-tls-cert and --nats-tls-key", "give both"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := totalConnections(t, s.Server)
			code, out := runToExit(t, serveArgs(s.URL, tc.args...)...)
			if code != 1 {
				t.Fatalf("exit code %d, want 1:\n%s", code, out)
			}
			lines := errorLines(out)
			if len(lines) != 1 {
				t.Fatalf("%d error lines, want 1:\n%s", len(lines), out)
			}
			for _, w := range tc.want {
				if !strings.Contains(lines[0], w) {
					t.Errorf("error line %q lacks %q", lines[0], w)
				}
			}
			if strings.Contains(lines[0], "could not build arguments") || strings.Contains(lines[0], "main.") {
				t.Errorf("error line %q carries fx's wrapping", lines[0])
			}
			if n := totalConnections(t, s.Server) - before; n != tc.attempts {
				t.Errorf("%d connection attempts, want %d (no retry on a refusal)", n, tc.attempts)
			}
		})
	}
}

// TestNATSServerCertificateExpired: a server whose certificate expired is
// refused at start, naming the validity period.
func TestNATSServerCertificateExpired(t *testing.T) {
	s := natstest.RunSecured(t, natstest.SecuredOptions{ServerNotBefore: time.Now().Add(-48 * time.Hour), ServerNotAfter: time.Now().Add(-time.Hour)})
	code, out := runToExit(t, serveArgs(s.URL, "--nats-tls-ca", s.CAFile)...)
	lines := errorLines(out)
	if code != 1 || len(lines) != 1 || !strings.Contains(lines[0], "--nats-url") || !strings.Contains(lines[0], "outside its validity period") {
		t.Fatalf("exit %d, error lines %q:\n%s", code, lines, out)
	}
}

// TestOperatorModeRolesWithTheirOwnCreds: against an operator-mode
// nats-server (memory resolver with the accounts of nats/config as JWTs)
// behind TLS, the edge, the worker and the archiver each run with their
// own .creds file, a game server publishes with its own, and every event
// reaches the lobby and the archive.
func TestOperatorModeRolesWithTheirOwnCreds(t *testing.T) {
	pg := pgtest.Schema(t)
	s := natstest.RunSecured(t, natstest.SecuredOptions{Operator: true})
	role := func(name, role string, extra ...string) *proc {
		return startRole(t, s.URL, append([]string{"--roles", role, "--instance-id", name,
			"--nats-creds", s.CredsFile(t, role), "--nats-tls-ca", s.CAFile}, extra...)...)
	}
	edge := role("edge1", "edge")
	edge.waitReady() // creates the topology
	worker := role("worker1", "worker")
	archiver := role("archiver1", "archiver", "--postgres-url", pg)
	worker.waitReady()
	archiver.waitReady()

	accepted := map[string]bool{}
	for i, user := range []string{"1", "2", "3"} {
		id := "http-" + user
		if code, body := edge.post(eventBody(id, user, "ENTER_GAME_MODE", "US", i+1)); code != 202 {
			t.Fatalf("post: %d %v", code, body)
		}
		accepted[id] = true
	}
	gc := gameServer(t, s.URL, client.Security{CredsFile: s.CredsFile(t, "game_server"), CAFile: s.CAFile})
	rc, err := gc.Enter(context.Background(), "4", "BR", 5)
	if err != nil {
		t.Fatalf("game server enter: %v", err)
	}
	accepted[rc.EventID] = true
	edge.waitPopular(map[string]map[int]int64{"US": {1: 1, 2: 1, 3: 1}, "BR": {5: 1}}, 15*time.Second)
	waitArchiveTable(t, pg)
	archiveCheck(t, pg, accepted, 30*time.Second)

	// Each process is connected as its own user of the GAMEMODES account.
	cz, err := s.Server.Connz(&server.ConnzOptions{Username: true, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"gamemodes edge1": "edge", "gamemodes worker1": "worker", "gamemodes archiver1": "archiver"}
	got := map[string]string{}
	for _, c := range cz.Conns {
		if _, ok := want[c.Name]; !ok {
			continue
		}
		uc, err := jwt.DecodeUserClaims(c.JWT)
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		if c.Account != s.Operator.Account("GAMEMODES").Public {
			t.Errorf("%s in account %s, want GAMEMODES", c.Name, c.Account)
		}
		got[c.Name] = uc.Name
	}
	for name, user := range want {
		if got[name] != user {
			t.Errorf("%s connected as %q, want %q (all: %v)", name, got[name], user, got)
		}
	}
}

// TestOperatorModeCredsRefused: creds of another operator, or a creds file
// that is not one, stop the start with the flag named.
func TestOperatorModeCredsRefused(t *testing.T) {
	s := natstest.RunSecured(t, natstest.SecuredOptions{Operator: true})
	other := natstest.RunSecured(t, natstest.SecuredOptions{Operator: true})
	kp, _ := nkeys.CreateUser()
	seed, _ := kp.Seed()
	notCreds := filepath.Join(t.TempDir(), "seed.nk")
	_ = os.WriteFile(notCreds, seed, 0o600)
	for _, tc := range []struct {
		name  string
		creds string
		want  string
	}{
		{"another operator", other.CredsFile(t, "edge"), "refused these credentials"},
		{"a seed, not creds", notCreds, "not a credentials file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := runToExit(t, serveArgs(s.URL, "--roles", "edge", "--nats-creds", tc.creds, "--nats-tls-ca", s.CAFile)...)
			lines := errorLines(out)
			if code != 1 || len(lines) != 1 || !strings.Contains(lines[0], "--nats-creds "+tc.creds) || !strings.Contains(lines[0], tc.want) {
				t.Fatalf("exit %d, error lines %q, want one naming --nats-creds and %q:\n%s", code, lines, tc.want, out)
			}
		})
	}
}

// TestEmbeddedServerServesMutualTLS: the embedded server serves TLS with
// the users of nats/config/single.conf and verifies clients; a game server
// with a client certificate and its user publishes, a client without a
// certificate is refused; the process itself connects in-process.
func TestEmbeddedServerServesMutualTLS(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	conf := filepath.Join(filepath.Dir(file), "..", "..", "nats", "config", "single.conf")
	for _, u := range []string{"GAME_SERVER", "EDGE", "WORKER", "ARCHIVER", "ADMIN", "SYS"} {
		t.Setenv(u+"_PASSWORD", u+"-test-secret")
	}
	pki := natstest.RunSecured(t, natstest.SecuredOptions{}) // only its CA and files
	cert, key := pki.Issue(t, "embedded", secrets.CertSpec{CommonName: "embedded", Hosts: []string{"127.0.0.1"}, Server: true})
	pwFile := filepath.Join(t.TempDir(), "admin-password")
	if err := os.WriteFile(pwFile, []byte("ADMIN-test-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, proctest.FreePort(t), proctest.FreePort(t), t.TempDir(),
		"--nats-config", conf, "--nats-user", "admin", "--nats-password-file", pwFile,
		"--nats-listen-tls-cert", cert, "--nats-listen-tls-key", key, "--nats-listen-tls-ca", pki.CAFile)
	p.waitReady()

	gsCert, gsKey := pki.ClientCert(t, "game-server")
	gc := gameServer(t, p.natsURL, client.Security{User: "game_server", Password: "GAME_SERVER-test-secret",
		CAFile: pki.CAFile, CertFile: gsCert, KeyFile: gsKey})
	if _, err := gc.Enter(context.Background(), "42", "US", 4); err != nil {
		t.Fatalf("enter: %v", err)
	}
	p.waitPopular(map[string]map[int]int64{"US": {4: 1}}, 10*time.Second)

	noCert := client.Security{User: "game_server", Password: "GAME_SERVER-test-secret", CAFile: pki.CAFile}
	opts, _ := client.ConnectOptions(noCert)
	if nc, err := nats.Connect(p.natsURL, append(opts, nats.MaxReconnects(0))...); err == nil {
		nc.Close()
		t.Fatal("connected without a client certificate")
	} else if !strings.Contains(noCert.Explain(err).Error(), "requires a client certificate") {
		t.Fatalf("without a client certificate: %v", noCert.Explain(err))
	}
	if nc, err := nats.Connect(p.natsURL, nats.UserInfo("game_server", "GAME_SERVER-test-secret"), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("connected without TLS")
	}
}

// TestNATSRefusalOnReconnectEndsTheProcess: a process connected to NATS
// whose server comes back with a certificate it does not trust, or with
// other accounts that refuse its credentials, stops with exit code 1 and
// a line naming the flag instead of reconnecting for ever.
func TestNATSRefusalOnReconnectEndsTheProcess(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts natstest.SecuredOptions
		want []string
	}{
		{"server certificate of another CA", natstest.SecuredOptions{}, []string{"--nats-tls-ca", "is not signed by this CA"}},
		{"credentials refused", natstest.SecuredOptions{Operator: true}, []string{"--nats-creds", "refused these credentials"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := proctest.FreePort(t)
			first := tc.opts
			first.Port = port
			s := natstest.RunSecured(t, first)
			args := []string{"--roles", "edge", "--nats-tls-ca", s.CAFile}
			if tc.opts.Operator {
				args = append(args, "--nats-creds", s.CredsFile(t, "edge"))
			}
			p := startRole(t, s.URL, args...)
			p.waitReady()
			s.Server.Shutdown()
			s.Server.WaitForShutdown()
			again := first // on the same port: a new CA, or a new operator with the same CA
			if tc.opts.Operator {
				again.CA = s.CA
			}
			natstest.RunSecured(t, again)
			select {
			case <-p.exited:
			case <-time.After(30 * time.Second):
				t.Fatalf("still running against a server that refuses it:\n%s", p.log.String())
			}
			if p.exitCode != 1 {
				t.Fatalf("exit code %d, want 1:\n%s", p.exitCode, p.log.String())
			}
			var ended []string
			for _, l := range errorLines(p.log.String()) {
				if strings.Contains(l, "ended for good") {
					ended = append(ended, l)
				}
			}
			if len(ended) != 1 {
				t.Fatalf("want one line saying the connection ended for good, got %q:\n%s", ended, p.log.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(ended[0], w) {
					t.Errorf("%q lacks %q", ended[0], w)
				}
			}
		})
	}
}

// TestEmbeddedServerInOperatorMode: the embedded server loads the
// operator-mode configuration cmd/natssecrets writes (a memory resolver
// with the accounts of nats/config as JWTs); the process connects with the
// admin creds and a game server publishes with its own.
func TestEmbeddedServerInOperatorMode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "secrets")
	if _, err := secrets.WriteDeployment(dir, secrets.DeploymentOptions{AuthConfig: natstest.AuthConfig(), ServerHosts: []string{"127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, proctest.FreePort(t), proctest.FreePort(t), t.TempDir(),
		"--nats-config", filepath.Join(dir, secrets.ServerDir, secrets.ResolverFile),
		"--nats-creds", filepath.Join(dir, secrets.CredsFile("admin")))
	p.waitReady()
	gc := gameServer(t, p.natsURL, client.Security{CredsFile: filepath.Join(dir, secrets.CredsFile("game_server"))})
	if _, err := gc.Enter(context.Background(), "42", "BR", 6); err != nil {
		t.Fatalf("enter: %v", err)
	}
	p.waitPopular(map[string]map[int]int64{"BR": {6: 1}}, 10*time.Second)
	if nc, err := nats.Connect(p.natsURL, nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("connected without credentials")
	}
}
