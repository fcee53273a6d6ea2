package secrets_test

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/nats/secrets"
	"github.com/nats-io/jwt/v2"
)

// TestFromConfigCarriesEveryUserAndPermission: the operator holds the
// accounts and users of auth.conf, each user's scope carries its
// permissions, and the game servers' imports carry activation tokens.
func TestFromConfigCarriesEveryUserAndPermission(t *testing.T) {
	op, err := secrets.FromConfig("../config/auth.conf", "test")
	if err != nil {
		t.Fatal(err)
	}
	users := map[string]string{}
	for _, a := range op.Accounts {
		for _, u := range a.Users {
			users[u.Name] = a.Name
		}
	}
	want := map[string]string{"admin": "GAMEMODES", "edge": "GAMEMODES", "worker": "GAMEMODES", "archiver": "GAMEMODES", "game_server": "GAME_SERVERS", "sys": "SYS"}
	if len(users) != len(want) {
		t.Fatalf("users %v, want %v", users, want)
	}
	for u, a := range want {
		if users[u] != a {
			t.Errorf("user %s in %q, want %s", u, users[u], a)
		}
	}
	gs, err := jwt.DecodeAccountClaims(op.Account("GAME_SERVERS").JWT)
	if err != nil {
		t.Fatal(err)
	}
	scope, ok := gs.SigningKeys.GetScope(secrets.PublicKey(op.Account("GAME_SERVERS").SigningKeys["game_server"]))
	if !ok || scope == nil {
		t.Fatal("no scope for the game_server signing key")
	}
	tmpl := scope.(*jwt.UserScope).Template
	if strings.Join(tmpl.Pub.Allow, ",") != "gamemodes.events.*.*" || !tmpl.Sub.Allow.Contains("gamemodes.popular.>") || !tmpl.Sub.Allow.Contains("_INBOX.>") {
		t.Errorf("game_server scope %+v", tmpl.Permissions)
	}
	if len(gs.Imports) != 2 {
		t.Fatalf("GAME_SERVERS imports %d, want 2", len(gs.Imports))
	}
	for _, im := range gs.Imports {
		if im.Token == "" {
			t.Errorf("import %s has no activation token (the export is private)", im.Subject)
		}
	}
	gm, _ := jwt.DecodeAccountClaims(op.Account("GAMEMODES").JWT)
	if gm.Limits.JetStreamLimits.DiskStorage != jwt.NoLimit {
		t.Errorf("GAMEMODES JetStream limits %+v, want enabled without limit", gm.Limits.JetStreamLimits)
	}
	wk, _ := gm.SigningKeys.GetScope(secrets.PublicKey(op.Account("GAMEMODES").SigningKeys["worker"]))
	if deny := wk.(*jwt.UserScope).Template.Pub.Deny; !deny.Contains("$JS.API.CONSUMER.CREATE.GAMEMODES_EVENTS.archiver") {
		t.Errorf("worker scope lost its deny list: %v", deny)
	}
}

// TestFromConfigRefusesWhatItCannotCarry: a setting without a JWT
// equivalent here is an error, never dropped.
func TestFromConfigRefusesWhatItCannotCarry(t *testing.T) {
	for _, conf := range []string{
		"system_account: SYS\naccounts { SYS { users: [{user: s, password: $P}] }, A { users: [{user: u, password: x, permissions: {publish: {allow: [a]}, allow_responses: true}}] } }",
		"system_account: SYS\naccounts { SYS {}, A { mappings: {a: b} } }",
		"system_account: SYS\naccounts { SYS {} }\nauthorization { token: x }",
		"accounts { A {} }",
	} {
		p := filepath.Join(t.TempDir(), "auth.conf")
		if err := os.WriteFile(p, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := secrets.FromConfig(p, "x"); err == nil {
			t.Errorf("%q: no error", conf)
		}
	}
}

func TestWriteDeploymentLayout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "s")
	if _, err := secrets.WriteDeployment(dir, secrets.DeploymentOptions{AuthConfig: "../config/auth.conf", ServerHosts: []string{"nats1", "127.0.0.1"}, ValidFor: time.Hour}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{secrets.CAFile, filepath.Join(secrets.ServerDir, secrets.ServerCertFile), filepath.Join(secrets.ServerDir, secrets.ServerKeyFile),
		filepath.Join(secrets.ServerDir, secrets.ResolverFile), secrets.CredsFile("edge"), secrets.CredsFile("game_server"),
		secrets.AccountSeedFile("GAME_SERVERS"), secrets.SigningKeySeedFile("GAME_SERVERS", "game_server")} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, secrets.KeysDir)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("keys folder mode %v (%v), want 0700", fi.Mode(), err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, secrets.ServerDir, secrets.ServerCertFile))
	blk, _ := pem.Decode(b)
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if cert.VerifyHostname("nats1") != nil || cert.VerifyHostname("127.0.0.1") != nil || len(cert.ExtKeyUsage) != 2 {
		t.Errorf("server certificate names %v %v, usages %v", cert.DNSNames, cert.IPAddresses, cert.ExtKeyUsage)
	}
	if _, err := secrets.WriteDeployment(dir, secrets.DeploymentOptions{AuthConfig: "../config/auth.conf", ServerHosts: []string{"x"}}); err == nil {
		t.Error("overwrote an existing folder")
	}
}
