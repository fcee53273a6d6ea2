package config_test

import (
	"strings"
	"testing"

	"github.com/gamemodes/gamemodes/nats/natsconn"
	"github.com/gamemodes/gamemodes/nats/natstest"
	"github.com/nats-io/nats.go"
)

// runOperatorServer starts a node in operator mode (a memory resolver with
// the accounts of auth.conf as JWTs, nats/secrets) that requires mutual
// TLS; each user connects with its own .creds file and client certificate.
func runOperatorServer(t *testing.T) *testServer {
	t.Helper()
	s := natstest.RunSecured(t, natstest.SecuredOptions{Operator: true, VerifyClients: true})
	return &testServer{ns: s.Server, auth: func(t *testing.T, user string) []nats.Option {
		cert, key := s.ClientCert(t, user)
		opts, err := natsconn.Config{CredsFile: s.CredsFile(t, user), CAFile: s.CAFile, CertFile: cert, KeyFile: key}.Options()
		if err != nil {
			t.Fatal(err)
		}
		return opts
	}}
}

// TestOperatorModeRefusals: in operator mode a client needs both a client
// certificate and credentials the operator issued.
func TestOperatorModeRefusals(t *testing.T) {
	s := natstest.RunSecured(t, natstest.SecuredOptions{Operator: true, VerifyClients: true})
	cert, key := s.ClientCert(t, "game_server")
	other := natstest.RunSecured(t, natstest.SecuredOptions{Operator: true}) // another operator's accounts
	for _, tc := range []struct {
		name string
		cfg  natsconn.Config
		want string
	}{
		{"no credentials", natsconn.Config{CAFile: s.CAFile, CertFile: cert, KeyFile: key}, "requires authentication"},
		{"another operator's creds", natsconn.Config{CredsFile: other.CredsFile(t, "game_server"), CAFile: s.CAFile, CertFile: cert, KeyFile: key}, "refused these credentials"},
		{"no client certificate", natsconn.Config{CredsFile: s.CredsFile(t, "game_server"), CAFile: s.CAFile}, "requires a client certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts, err := tc.cfg.Options()
			if err != nil {
				t.Fatal(err)
			}
			nc, err := nats.Connect(s.URL, append(opts, nats.MaxReconnects(0))...)
			if err == nil {
				nc.Close()
				t.Fatal("connected")
			}
			if got := tc.cfg.Explain(err).Error(); !strings.Contains(got, tc.want) {
				t.Fatalf("error %q, want %q", got, tc.want)
			}
		})
	}
}
