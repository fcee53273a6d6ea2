package client_test

import (
	"context"
	"testing"

	"github.com/gamemodes/gamemodes/client"
	"github.com/gamemodes/gamemodes/nats/natstest"
	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestConnectOptionsOperatorModeAndMutualTLS: a game server reaches an
// operator-mode server that verifies clients with its .creds file and a
// client certificate; its event is stored once and acknowledged.
func TestConnectOptionsOperatorModeAndMutualTLS(t *testing.T) {
	s := natstest.RunSecured(t, natstest.SecuredOptions{Operator: true, VerifyClients: true})
	connect := func(user string) *nats.Conn {
		cert, key := s.ClientCert(t, user)
		sec := client.Security{CredsFile: s.CredsFile(t, user), CAFile: s.CAFile, CertFile: cert, KeyFile: key}
		opts, err := client.ConnectOptions(sec)
		if err != nil {
			t.Fatal(err)
		}
		nc, err := nats.Connect(s.URL, opts...)
		if err != nil {
			t.Fatalf("connect as %s: %v", user, sec.Explain(err))
		}
		t.Cleanup(nc.Close)
		return nc
	}
	admin, err := jetstream.New(connect("admin"))
	if err != nil {
		t.Fatal(err)
	}
	ensure(t, admin)
	c, err := client.New(connect("game_server"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	r, err := c.Enter(ctx10(t), "42", "US", 3)
	if err != nil || r.Duplicate {
		t.Fatalf("enter: %+v %v", r, err)
	}
	st, err := admin.Stream(ctx10(t), topology.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := st.Info(ctx10(t)); err != nil || info.State.Msgs != 1 {
		t.Fatalf("events stream: %v, err %v; want 1 message", info, err)
	}
}
