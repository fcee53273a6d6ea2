package natsconn_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/nats/natsconn"
	"github.com/gamemodes/gamemodes/nats/natstest"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

func connect(t *testing.T, url string, c natsconn.Config) error {
	t.Helper()
	opts, err := c.Options()
	if err != nil {
		t.Fatalf("options: %v", err)
	}
	nc, err := nats.Connect(url, append(opts, nats.MaxReconnects(0), nats.Timeout(2*time.Second))...)
	if err == nil {
		if _, err = nc.RTT(); err != nil {
			t.Fatalf("round trip: %v", err)
		}
		nc.Close()
	}
	return c.Explain(err)
}

// TestOptionsRefuseBadSettingsUpFront: every file is checked before any
// connection, and the error names the setting.
func TestOptionsRefuseBadSettingsUpFront(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk")
	_ = os.WriteFile(junk, []byte("not a key"), 0o600)
	for _, tc := range []struct {
		c    natsconn.Config
		want string
	}{
		{natsconn.Config{CredsFile: filepath.Join(dir, "none.creds")}, "--nats-creds " + filepath.Join(dir, "none.creds") + ": cannot read"},
		{natsconn.Config{CredsFile: junk}, "not a credentials file"},
		{natsconn.Config{NKeySeedFile: junk}, "--nats-nkey-seed " + junk + ": not a readable NKey user seed"},
		{natsconn.Config{CAFile: junk}, "--nats-tls-ca " + junk + ": no PEM certificate"},
		{natsconn.Config{CertFile: junk}, "give both"},
		{natsconn.Config{CertFile: junk, KeyFile: junk}, "cannot load the client certificate"},
		{natsconn.Config{User: "u", CredsFile: junk}, "one way of authenticating"},
		{natsconn.Config{Password: "p"}, "--nats-password: a password needs --nats-user"},
	} {
		_, err := tc.c.Options()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.c, err, tc.want)
		}
	}
}

// TestTLSFirst: a server that wants the TLS handshake before its INFO is
// reached with TLSFirst; without it the error says to set it.
func TestTLSFirst(t *testing.T) {
	s := natstest.RunSecured(t, natstest.SecuredOptions{TLSFirst: true})
	if err := connect(t, s.URL, natsconn.Config{CAFile: s.CAFile, TLSFirst: true}); err != nil {
		t.Fatalf("TLS first: %v", err)
	}
	err := connect(t, s.URL, natsconn.Config{CAFile: s.CAFile})
	if err == nil || !strings.Contains(err.Error(), "--nats-tls-first") {
		t.Fatalf("without TLS first: %v, want a hint at --nats-tls-first", err)
	}
	plain := natstest.RunSecured(t, natstest.SecuredOptions{})
	err = connect(t, plain.URL, natsconn.Config{CAFile: plain.CAFile, TLSFirst: true})
	if err == nil || !strings.Contains(err.Error(), "--nats-tls-first") {
		t.Fatalf("TLS first to a server that sends INFO first: %v", err)
	}
}

// TestNKeySeed: an NKey user connects with its seed file; another seed is refused.
func TestNKeySeed(t *testing.T) {
	user, _ := nkeys.CreateUser()
	pub, _ := user.PublicKey()
	seed, _ := user.Seed()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true, Nkeys: []*server.NkeyUser{{Nkey: pub}}})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("not ready")
	}
	defer ns.Shutdown()
	file := filepath.Join(t.TempDir(), "user.nk")
	_ = os.WriteFile(file, seed, 0o600)
	if err := connect(t, ns.ClientURL(), natsconn.Config{NKeySeedFile: file}); err != nil {
		t.Fatalf("with the seed: %v", err)
	}
	other, _ := nkeys.CreateUser()
	otherSeed, _ := other.Seed()
	otherFile := filepath.Join(t.TempDir(), "other.nk")
	_ = os.WriteFile(otherFile, otherSeed, 0o600)
	err = connect(t, ns.ClientURL(), natsconn.Config{NKeySeedFile: otherFile})
	if err == nil || !strings.Contains(err.Error(), "--nats-nkey-seed "+otherFile+": the NATS server refused these credentials") {
		t.Fatalf("another seed: %v", err)
	}
	if strings.Contains(err.Error(), string(otherSeed)) {
		t.Fatal("the error shows the seed")
	}
}

// TestVerifyFailureReported: OnVerifyFailure sees the refusal of the
// server's certificate.
func TestVerifyFailureReported(t *testing.T) {
	s := natstest.RunSecured(t, natstest.SecuredOptions{})
	other := natstest.RunSecured(t, natstest.SecuredOptions{})
	var seen []error
	err := connect(t, s.URL, natsconn.Config{CAFile: other.CAFile, OnVerifyFailure: func(err error) { seen = append(seen, err) }})
	if err == nil || len(seen) != 1 || err.Error() != seen[0].Error() {
		t.Fatalf("err %v, reported %v", err, seen)
	}
}
