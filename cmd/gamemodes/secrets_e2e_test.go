package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/adapters/postgres/pgtest"
	"github.com/gamemodes/gamemodes/cmd/internal/proctest"
	"github.com/gamemodes/gamemodes/nats/secrets"
	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"
)

// waitArchiveTable waits until the archiver has migrated the database (it
// does so in the background after its start).
func waitArchiveTable(t *testing.T, pgURL string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var table *string
		if err := conn.QueryRow(ctx, `SELECT to_regclass('event')::text`).Scan(&table); err != nil {
			t.Fatal(err)
		}
		if table != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the archiver did not create the event table within 30 s")
		}
	}
}

func writeSecret(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func get(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestSecretsNeverShown: with the NATS password, the Postgres URL (and its
// password) and the JWT secret given as files, none of them appears in the
// logs, the operations status, the metrics, the command line or an error
// message, on the happy path and when NATS or Postgres refuse.
func TestSecretsNeverShown(t *testing.T) {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	canary := "CANARY" + hex.EncodeToString(b) + "xyzxyzxyz" // 39 bytes: also a valid HS256 secret
	pg := pgtest.Schema(t)
	pgURL, err := url.Parse(pg)
	if err != nil {
		t.Fatal(err)
	}
	pgURL.User = url.UserPassword(pgURL.User.Username(), canary) // the machine's Postgres trusts local connections: any password works

	_, file, _, _ := runtime.Caller(0)
	conf := filepath.Join(filepath.Dir(file), "..", "..", "nats", "config", "single.conf")
	for _, u := range []string{"GAME_SERVER", "EDGE", "WORKER", "ARCHIVER", "SYS"} {
		t.Setenv(u+"_PASSWORD", u+"-test-secret")
	}
	t.Setenv("ADMIN_PASSWORD", canary) // the embedded server's admin password, read by nats-server

	httpPort, natsPort := proctest.FreePort(t), proctest.FreePort(t)
	p := startProc(t, httpPort, natsPort, t.TempDir(),
		"--nats-config", conf, "--nats-user", "admin", "--nats-password-file", writeSecret(t, "nats-password", canary),
		"--postgres-url-file", writeSecret(t, "postgres-url", pgURL.String()),
		"--jwt-secret-file", writeSecret(t, "jwt-secret", canary))
	p.waitReady()
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "5", "exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte(canary))
	if err != nil {
		t.Fatal(err)
	}
	post := func(bearer string) int {
		req, _ := http.NewRequest("POST", p.httpURL+"/api/v1/event", strings.NewReader(eventBody("c-1", "5", "ENTER_GAME_MODE", "US", 1)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+bearer)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(body), canary) {
			t.Fatalf("answer shows the secret: %s", body)
		}
		return resp.StatusCode
	}
	if code := post(token); code != 202 {
		t.Fatalf("post with a valid token: %d", code)
	}
	if code := post(token + "x"); code != 401 {
		t.Fatalf("post with a bad signature: %d", code)
	}
	p.waitPopular(map[string]map[int]int64{"US": {1: 1}}, 10*time.Second)
	waitArchiveTable(t, pg)
	archiveCheck(t, pg, map[string]bool{"c-1": true}, 30*time.Second) // the archiver used the URL from the file

	for _, path := range []string{"/api/v1/ops/status", "/metrics", "/readyz"} {
		if code, body := get(t, http.DefaultClient, p.httpURL+path); code != 200 || strings.Contains(body, canary) {
			t.Fatalf("%s: status %d, shows the secret: %v", path, code, strings.Contains(body, canary))
		}
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.cmd.Process.Pid))
	if err != nil || strings.Contains(string(cmdline), canary) {
		t.Fatalf("command line shows the secret (or cannot be read: %v)", err)
	}

	// Refusals: a wrong NATS password and an unreachable Postgres whose URL
	// holds the password. Their errors name the problem, not the secret.
	wrong := canary + "WRONG"
	code, out := runToExit(t, serveArgs(p.natsURL, "--roles", "edge", "--nats-user", "admin", "--nats-password-file", writeSecret(t, "wrong", wrong))...)
	if lines := errorLines(out); code != 1 || len(lines) != 1 || !strings.Contains(lines[0], "--nats-user admin") || !strings.Contains(lines[0], "refused these credentials") {
		t.Fatalf("wrong password: exit %d, error lines %q", code, lines)
	}
	if strings.Contains(out, canary) {
		t.Fatalf("the refusal shows the password:\n%s", out)
	}
	down := *pgURL
	down.Host = fmt.Sprintf("127.0.0.1:%d", proctest.FreePort(t))
	ar := startRole(t, p.natsURL, "--roles", "archiver", "--nats-user", "admin", "--nats-password-file", writeSecret(t, "pw", canary),
		"--postgres-url-file", writeSecret(t, "down-url", down.String()))
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(ar.log.String(), `"msg":"archive down"`) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(ar.log.String(), "connection refused") {
		t.Fatalf("no error logged for an unreachable Postgres:\n%s", ar.log.String())
	}
	_ = ar.cmd.Process.Signal(syscall.SIGTERM)
	<-ar.exited
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.exited
	for name, log := range map[string]string{"serve": p.log.String(), "archiver with Postgres down": ar.log.String()} {
		if strings.Contains(log, canary) {
			t.Errorf("%s log shows the secret:\n%s", name, log)
		}
	}
}

// TestSecretFileRefusals: a missing or empty secret file, or a file and a
// flag for the same secret, stop the start naming the flag.
func TestSecretFileRefusals(t *testing.T) {
	empty := writeSecret(t, "empty", "")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--nats-password-file", "/nonexistent/pw", "--nats-user", "u"}, "--nats-password-file /nonexistent/pw: cannot read the file"},
		{[]string{"--postgres-url-file", empty}, "--postgres-url-file " + empty + ": the file is empty"},
		{[]string{"--nats-password-file", empty, "--nats-password", "x", "--nats-user", "u"}, "are both set"},
	} {
		code, out := runToExit(t, append([]string{"serve", "--log-format", "json"}, tc.args...)...)
		if lines := errorLines(out); code != 1 || len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
			t.Errorf("%v: exit %d, error lines %q, want %q", tc.args, code, lines, tc.want)
		}
	}
}

// TestEdgeOverHTTPS: the binary serves HTTPS with --tls-cert/--tls-key:
// the API works over it, plain HTTP to the port gets a 400 saying so, and
// a renewed certificate is served without a restart (file change, and
// SIGHUP, which does not stop the process).
func TestEdgeOverHTTPS(t *testing.T) {
	ca, err := secrets.NewCA("edge CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "edge.pem"), filepath.Join(dir, "edge-key.pem")
	issue := func(cn string) {
		cert, key, err := ca.Issue(secrets.CertSpec{CommonName: cn, Hosts: []string{"127.0.0.1", "localhost"}, Server: true})
		if err != nil {
			t.Fatal(err)
		}
		for path, b := range map[string][]byte{keyFile: key, certFile: cert} {
			if err := os.WriteFile(path+".tmp", b, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(path+".tmp", path); err != nil {
				t.Fatal(err)
			}
		}
	}
	issue("edge-1")
	httpPort := proctest.FreePort(t)
	p := startProc(t, httpPort, proctest.FreePort(t), t.TempDir(), "--tls-cert", certFile, "--tls-key", keyFile)
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	base := fmt.Sprintf("https://127.0.0.1:%d", httpPort)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if resp, err := hc.Get(base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready over HTTPS:\n%s", p.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err := hc.Post(base+"/api/v1/event", "application/json", strings.NewReader(eventBody("s-1", "9", "ENTER_GAME_MODE", "BR", 3)))
	if err != nil || resp.StatusCode != 202 {
		t.Fatalf("POST over HTTPS: %v %v", err, resp)
	}
	resp.Body.Close()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, body := get(t, hc, base+"/api/v1/popular_game_modes?region=BR"); body == `{"region":"BR","game_modes":[{"game_mode":3,"player_count":1}]}` {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("lobby over HTTPS: %s", body)
		}
	}

	code, body := get(t, http.DefaultClient, fmt.Sprintf("http://127.0.0.1:%d/healthz", httpPort))
	var e struct{ Error struct{ Code string } }
	if code != 400 || json.Unmarshal([]byte(body), &e) != nil || e.Error.Code != "https_required" {
		t.Fatalf("plain HTTP to the HTTPS port: %d %s", code, body)
	}

	served := func() string {
		resp, err := hc.Get(base + "/healthz")
		if err != nil {
			t.Fatalf("GET over HTTPS: %v", err)
		}
		resp.Body.Close()
		return resp.TLS.PeerCertificates[0].Subject.CommonName
	}
	waitServed := func(cn string) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); served() != cn; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("still serving %s, want %s:\n%s", served(), cn, p.log.String())
			}
		}
	}
	issue("edge-2")
	waitServed("edge-2")
	issue("edge-3")
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitServed("edge-3")
	select {
	case <-p.exited:
		t.Fatalf("SIGHUP stopped the process:\n%s", p.log.String())
	default:
	}
	if !strings.Contains(p.log.String(), "TLS certificate reloaded") {
		t.Fatalf("no reload logged:\n%s", p.log.String())
	}
}
