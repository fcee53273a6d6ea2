package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/client"
	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsURL is the NATS server of the examples: an embedded server with the
// gamemodes topology, started by TestMain. A game server uses the URL of the
// service's NATS, for example nats://game_server:PASSWORD@nats:4222.
var natsURL string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gamemodes-client-example")
	if err != nil {
		log.Fatal(err)
	}
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true})
	if err != nil {
		log.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		log.Fatal("example server not ready")
	}
	natsURL = ns.ClientURL()
	if err := ensureExampleTopology(); err != nil {
		log.Fatal(err)
	}
	code := m.Run()
	ns.Shutdown()
	ns.WaitForShutdown()
	os.RemoveAll(dir)
	os.Exit(code)
}

func ensureExampleTopology() error {
	nc, err := nats.Connect(natsURL)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = topology.Ensure(ctx, js, topology.Config{})
	return err
}

// A game server reports that a player entered a game mode. Publishing the
// same event id again stores nothing new, and an invalid event is refused
// before anything is sent, with the service's error code.
func ExampleClient_Enter() {
	nc, err := nats.Connect(natsURL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	c, err := client.New(nc) // the service's default regions and game modes
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := c.Enter(ctx, "42", "US", 3, client.WithEventID("match-7-player-42-enter"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(r.EventID, "duplicate:", r.Duplicate)

	r, err = c.Enter(ctx, "42", "US", 3, client.WithEventID("match-7-player-42-enter"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(r.EventID, "duplicate:", r.Duplicate)

	_, err = c.Enter(ctx, "42", "MOON", 3)
	var invalid *client.ValidationError
	if errors.As(err, &invalid) {
		fmt.Println("refused:", invalid.Code)
	}
	// Output:
	// match-7-player-42-enter duplicate: false
	// match-7-player-42-enter duplicate: true
	// refused: invalid_region
}

// At high rates, events are published asynchronously with a bounded number
// in flight; Flush waits for all of them.
func ExampleClient_PublishAsync() {
	nc, err := nats.Connect(natsURL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	c, err := client.New(nc, client.WithMaxPending(256))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var pending []*client.Pending
	for player := 1; player <= 1000; player++ {
		p, err := c.PublishAsync(ctx, client.Event{
			UserID: "async-" + strconv.Itoa(player), Type: client.EventHeartbeat, Region: "EU", GameMode: 1 + player%10,
		})
		if err != nil {
			log.Fatal(err) // an invalid event, or ctx ended while waiting for room
		}
		pending = append(pending, p)
	}
	if err := c.Flush(ctx); err != nil {
		log.Fatal(err)
	}
	stored := 0
	for _, p := range pending {
		if _, err := p.Result(); err == nil {
			stored++
		}
	}
	fmt.Println("stored:", stored)
	// Output:
	// stored: 1000
}

// A game server follows the live lobby list of its region.
func ExampleClient_SubscribeRegion() {
	nc, err := nats.Connect(natsURL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	c, err := client.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close(context.Background())

	lists := make(chan client.List, 16)
	sub, err := c.SubscribeRegion("US", func(l client.List) { lists <- l })
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Unsubscribe()

	// The service publishes the list at each change; here the example
	// publishes one itself.
	if err := nc.Flush(); err != nil {
		log.Fatal(err)
	}
	if err := nc.PublishMsg(&nats.Msg{
		Subject: client.PopularSubject("US"),
		Header:  nats.Header{client.VersionHeader: []string{"1"}},
		Data:    []byte(`{"region":"US","game_modes":[{"game_mode":1,"player_count":2000},{"game_mode":2,"player_count":1000}]}`),
	}); err != nil {
		log.Fatal(err)
	}

	l := <-lists
	fmt.Println("region", l.Region, "version", l.Version)
	for _, m := range l.GameModes {
		fmt.Printf("mode %d: %d players\n", m.GameMode, m.PlayerCount)
	}
	// Output:
	// region US version 1
	// mode 1: 2000 players
	// mode 2: 1000 players
}

// ExampleConnectOptions connects a game server to a NATS that requires
// TLS and runs in operator mode, with the game server's .creds file (see
// nats/config/README.md for issuing one) and, where the server verifies
// clients, a client certificate.
func ExampleConnectOptions() {
	sec := client.Security{
		CredsFile: "/etc/gameserver/game_server.creds",
		CAFile:    "/etc/gameserver/nats-ca.pem",
		CertFile:  "/etc/gameserver/client.pem", // mutual TLS only
		KeyFile:   "/etc/gameserver/client-key.pem",
	}
	opts, err := client.ConnectOptions(sec)
	if err != nil {
		log.Fatal(err) // e.g. "--nats-creds /etc/gameserver/game_server.creds: cannot read the credentials file (no such file or directory)"
	}
	nc, err := nats.Connect("nats://nats1:4222,nats://nats2:4222", append(opts, nats.MaxReconnects(-1))...)
	if err != nil {
		log.Fatal(sec.Explain(err)) // e.g. "--nats-tls-ca /etc/gameserver/nats-ca.pem: the NATS server's certificate (CN=nats) is not signed by this CA (...)"
	}
	c, err := client.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close(context.Background())
}
