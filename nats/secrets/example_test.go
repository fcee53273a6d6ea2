package secrets_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gamemodes/gamemodes/nats/secrets"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// A studio issues one of its game servers its own credentials: a new user
// key pair and a user JWT signed with the game_server signing key of the
// GAME_SERVERS account (keys/GAME_SERVERS-game_server.nk of
// cmd/natssecrets; with nsc, the key added by `nsc edit signing-key
// --role game_server`). The user carries no permissions of its own: the
// signing key's scope in the account JWT gives every user it signs the
// game_server permissions of nats/config/auth.conf. The example then
// connects with the .creds file to an operator-mode server holding those
// accounts and shows what the game server may do.
func Example_issueGameServerCredentials() {
	dir, _ := os.MkdirTemp("", "issue-example")
	defer os.RemoveAll(dir)
	op, err := secrets.FromConfig("../config/auth.conf", "example") // what cmd/natssecrets does once
	if err != nil {
		log.Fatal(err)
	}
	account := op.Account("GAME_SERVERS")
	signingSeed := secrets.Seed(account.SigningKeys["game_server"]) // the file's content

	// Issuing, with github.com/nats-io/nkeys and github.com/nats-io/jwt/v2 only.
	signer, err := nkeys.FromSeed(signingSeed)
	if err != nil {
		log.Fatal(err)
	}
	user, _ := nkeys.CreateUser()
	userPub, _ := user.PublicKey()
	claims := jwt.NewUserClaims(userPub)
	claims.Name = "game-server-eu-1"
	claims.IssuerAccount = account.Public                    // signed by a signing key of this account
	claims.UserPermissionLimits = jwt.UserPermissionLimits{} // a scoped user: the scope's permissions apply
	claims.Expires = time.Now().Add(90 * 24 * time.Hour).Unix()
	token, err := claims.Encode(signer)
	if err != nil {
		log.Fatal(err)
	}
	userSeed, _ := user.Seed()
	creds, _ := jwt.FormatUserConfig(token, userSeed)
	credsFile := filepath.Join(dir, "game-server-eu-1.creds")
	if err := os.WriteFile(credsFile, creds, 0o600); err != nil {
		log.Fatal(err)
	}

	// An operator-mode server with the accounts (secrets.IssueUser does the
	// issuing above in one call).
	_ = os.WriteFile(filepath.Join(dir, "operator.conf"), op.ResolverConfig(), 0o600)
	_ = os.WriteFile(filepath.Join(dir, "server.conf"), []byte("listen: 127.0.0.1:-1\ninclude ./operator.conf\n"), 0o600)
	opts, err := server.ProcessConfigFile(filepath.Join(dir, "server.conf"))
	if err != nil {
		log.Fatal(err)
	}
	opts.NoLog, opts.NoSigs = true, true
	ns, _ := server.NewServer(opts)
	go ns.Start()
	ns.ReadyForConnections(10 * time.Second)
	defer ns.Shutdown()

	violations := make(chan string, 10)
	nc, err := nats.Connect(ns.ClientURL(), nats.UserCredentials(credsFile),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { violations <- err.Error() }))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	fmt.Println("connected as", claims.Name)
	for _, subject := range []string{"gamemodes.events.US.42", "$KV.gamemodes_players.0.42"} {
		_ = nc.Publish(subject, []byte(`{}`))
		_ = nc.Flush()
		select {
		case v := <-violations:
			fmt.Printf("publish %s: refused: %v\n", subject, strings.Contains(strings.ToLower(v), "permissions violation for publish"))
		case <-time.After(500 * time.Millisecond):
			fmt.Printf("publish %s: allowed\n", subject)
		}
	}
	// Output:
	// connected as game-server-eu-1
	// publish gamemodes.events.US.42: allowed
	// publish $KV.gamemodes_players.0.42: refused: true
}
