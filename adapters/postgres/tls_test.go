package postgres_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/adapters/postgres"
	"github.com/gamemodes/gamemodes/adapters/postgres/pgtest"
	"github.com/gamemodes/gamemodes/nats/secrets"
)

// tlsDB is the test database reached over TLS, and the server's own
// certificate (as a root for verify-ca and verify-full).
type tlsDB struct {
	url      *url.URL // the package database, sslmode removed
	certFile string
	cert     *x509.Certificate
}

// serverTLS skips the test when the Postgres under test does not answer
// TLS (the tests need no change of its configuration: they use the
// certificate it already serves).
func serverTLS(t *testing.T) tlsDB {
	t.Helper()
	u, err := url.Parse(pgtest.Database(t))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Del("sslmode")
	u.RawQuery = q.Encode()
	ctx := ctxT(t)
	pool, err := postgres.Open(ctx, with(u, "sslmode", "require"))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var on bool
	if err := pool.QueryRow(ctx, `SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`).Scan(&on); err != nil {
		if strings.Contains(err.Error(), "refused TLS") {
			t.Skipf("the Postgres under test does not answer TLS (ssl = off): %v", err)
		}
		t.Fatalf("sslmode=require: %v", err)
	}
	if !on {
		t.Fatal("sslmode=require connected without TLS")
	}
	db := tlsDB{url: u}
	if err := pool.QueryRow(ctx, `SHOW ssl_cert_file`).Scan(&db.certFile); err != nil {
		t.Fatalf("show ssl_cert_file: %v", err)
	}
	b, err := os.ReadFile(db.certFile)
	if err != nil {
		t.Skipf("the server's certificate %s cannot be read here: %v", db.certFile, err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM certificate", db.certFile)
	}
	if db.cert, err = x509.ParseCertificate(blk.Bytes); err != nil {
		t.Fatal(err)
	}
	return db
}

func with(u *url.URL, kv ...string) string {
	c := *u
	q := c.Query()
	for i := 0; i < len(kv); i += 2 {
		q.Set(kv[i], kv[i+1])
	}
	c.RawQuery = q.Encode()
	return c.String()
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// pingTLS opens a pool on u and reports whether the session runs TLS.
func pingTLS(t *testing.T, u string) (bool, error) {
	t.Helper()
	ctx := ctxT(t)
	pool, err := postgres.Open(ctx, u)
	if err != nil {
		return false, err
	}
	defer pool.Close()
	var on bool
	err = pool.QueryRow(ctx, `SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`).Scan(&on)
	return on, err
}

// TestPostgresTLSThroughTheURL: the archive's pool reaches Postgres over
// TLS with the URL's sslmode, verifies the server against sslrootcert
// (verify-ca, and verify-full where the certificate names the host),
// refuses a server signed by another root or named otherwise with the
// x509 reason, and takes a client certificate (sslcert, sslkey).
func TestPostgresTLSThroughTheURL(t *testing.T) {
	db := serverTLS(t)
	local := *db.url
	local.Host = "localhost:" + db.url.Port()

	if on, err := pingTLS(t, with(db.url, "sslmode", "verify-ca", "sslrootcert", db.certFile)); err != nil || !on {
		t.Fatalf("verify-ca with the server's own certificate as root: tls %v, %v", on, err)
	}
	if slices.Contains(db.cert.DNSNames, "localhost") {
		if on, err := pingTLS(t, with(&local, "sslmode", "verify-full", "sslrootcert", db.certFile)); err != nil || !on {
			t.Fatalf("verify-full to localhost: tls %v, %v", on, err)
		}
	} else {
		t.Logf("the server's certificate names %v, not localhost: verify-full is checked only for refusal", db.cert.DNSNames)
	}
	if len(db.cert.IPAddresses) == 0 {
		_, err := pingTLS(t, with(db.url, "sslmode", "verify-full", "sslrootcert", db.certFile))
		if err == nil || !strings.Contains(err.Error(), "x509: cannot validate certificate for "+db.url.Hostname()) {
			t.Fatalf("verify-full to %s, a name the certificate lacks: %v, want the x509 name error", db.url.Hostname(), err)
		}
	}

	other, err := secrets.NewCA("not the database's CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	otherRoot := filepath.Join(dir, "other-root.pem")
	_ = os.WriteFile(otherRoot, other.CertPEM(), 0o600)
	_, err = pingTLS(t, with(&local, "sslmode", "verify-full", "sslrootcert", otherRoot))
	if err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Fatalf("verify-full against another root: %v, want unknown authority", err)
	}

	// A client certificate: sent when the server asks for one (this server
	// does not, so the session works); files that do not load are refused.
	cert, key, err := other.Issue(secrets.CertSpec{CommonName: "gamemodes", Client: true})
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	_ = os.WriteFile(certFile, cert, 0o600)
	_ = os.WriteFile(keyFile, key, 0o600)
	if on, err := pingTLS(t, with(db.url, "sslmode", "verify-ca", "sslrootcert", db.certFile, "sslcert", certFile, "sslkey", keyFile)); err != nil || !on {
		t.Fatalf("with sslcert and sslkey: tls %v, %v", on, err)
	}
	_, err = pingTLS(t, with(db.url, "sslmode", "require", "sslcert", certFile, "sslkey", filepath.Join(dir, "missing-key.pem")))
	if err == nil || !strings.Contains(err.Error(), "sslkey") {
		t.Fatalf("with a missing sslkey: %v, want an error naming sslkey", err)
	}
}

// TestPostgresErrorsHideThePassword: a refused or unreachable database
// reports the host and user, never the URL's password.
func TestPostgresErrorsHideThePassword(t *testing.T) {
	db := serverTLS(t)
	const canary = "CANARYpgPassw0rd"
	u := *db.url
	u.User = url.UserPassword(u.User.Username(), canary)
	other, _ := secrets.NewCA("x", time.Hour)
	root := filepath.Join(t.TempDir(), "root.pem")
	_ = os.WriteFile(root, other.CertPEM(), 0o600)
	down := u
	down.Host = "127.0.0.1:1"
	for _, raw := range []string{with(&u, "sslmode", "verify-ca", "sslrootcert", root), with(&down, "sslmode", "disable"), "postgres://u:" + canary + "@[bad"} {
		_, err := pingTLS(t, raw)
		if err == nil {
			t.Fatalf("%s: connected", strings.ReplaceAll(raw, canary, "***"))
		}
		if strings.Contains(err.Error(), canary) {
			t.Fatalf("error shows the password: %v", err)
		}
	}
}
