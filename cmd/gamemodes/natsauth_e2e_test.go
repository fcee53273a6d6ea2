package main

import (
	"context"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/cmd/internal/proctest"

	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// startWithUsersConfig starts the single binary, ready, with the embedded
// server loading nats/config/single.conf; every user's password is
// "<USER>-test-secret" (game_server: GAME_SERVER-test-secret).
func startWithUsersConfig(t *testing.T) *proc {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	conf := filepath.Join(filepath.Dir(file), "..", "..", "nats", "config", "single.conf")
	for _, u := range []string{"GAME_SERVER", "EDGE", "WORKER", "ARCHIVER", "ADMIN", "SYS"} {
		t.Setenv(u+"_PASSWORD", u+"-test-secret")
	}
	p := startProc(t, proctest.FreePort(t), proctest.FreePort(t), t.TempDir(),
		"--nats-config", conf, "--nats-user", "admin", "--nats-password", "ADMIN-test-secret")
	p.waitReady()
	return p
}

// TestEmbeddedServerWithTheUsersConfiguration runs the single binary with
// the embedded server loading nats/config/single.conf: the service works as
// admin, a game server publishes with its own credentials, an anonymous
// client and a game server writing a bucket are refused.
func TestEmbeddedServerWithTheUsersConfiguration(t *testing.T) {
	p := startWithUsersConfig(t)

	if nc, err := nats.Connect(p.natsURL, nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("anonymous connection accepted")
	}
	gs, err := nats.Connect(p.natsURL, nats.UserInfo("game_server", "GAME_SERVER-test-secret"))
	if err != nil {
		t.Fatalf("game server connect: %v", err)
	}
	defer gs.Close()
	js, err := jetstream.New(gs)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	body := eventBody("gs-1", "42", "ENTER_GAME_MODE", "US", 4)
	if _, err := js.Publish(ctx, topology.EventSubject("US", domain.UserToken("42")), []byte(body), jetstream.WithMsgID("gs-1")); err != nil {
		t.Fatalf("game server publish: %v", err)
	}
	p.waitPopular(map[string]map[int]int64{"US": {4: 1}}, 10*time.Second)
	// A game server cannot write the players bucket: no acknowledgement, nothing changes.
	short, cancelShort := context.WithTimeout(context.Background(), time.Second)
	defer cancelShort()
	if _, err := js.Publish(short, topology.PlayerSubject(0, "x"), []byte("P US 1 1")); err == nil {
		t.Fatal("game server wrote the players bucket")
	}
	p.waitPopular(map[string]map[int]int64{"US": {4: 1}}, 5*time.Second)
}
