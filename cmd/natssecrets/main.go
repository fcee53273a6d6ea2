// Command natssecrets writes the secrets of a NATS cluster that requires
// TLS and runs in operator mode (decentralised JWT authentication): a new
// CA, one server certificate for every node, an operator with the accounts
// and users of nats/config/auth.conf (the same permissions, as JWTs, one
// scoped signing key per role), each user's .creds file, and the
// memory-resolver configuration the nodes include. compose.yaml mounts the
// folder it writes (deploy/secrets by default):
//
//	go run ./cmd/natssecrets                       # deploy/secrets, hosts nats1,nats2,nats3,localhost,127.0.0.1
//	go run ./cmd/natssecrets -out DIR -hosts nats.example.com,10.0.0.5 -valid 8760h
//
// It refuses to overwrite an existing folder: remove it to issue new
// secrets (every client then needs its new files).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gamemodes/gamemodes/nats/secrets"
)

func main() {
	out := flag.String("out", "deploy/secrets", "folder to create")
	auth := flag.String("auth", "nats/config/auth.conf", "nats-server configuration whose accounts and users become JWTs")
	hosts := flag.String("hosts", "nats1,nats2,nats3,localhost,127.0.0.1", "comma list of the names and addresses in the server certificate")
	valid := flag.Duration("valid", 365*24*time.Hour, "validity of the CA and the server certificate")
	operator := flag.String("operator", "gamemodes", "operator name")
	flag.Parse()
	op, err := secrets.WriteDeployment(*out, secrets.DeploymentOptions{
		AuthConfig: *auth, OperatorName: *operator, ServerHosts: strings.Split(*hosts, ","), ValidFor: *valid,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "natssecrets:", err)
		os.Exit(1)
	}
	fmt.Printf("wrote %s: CA %s, server certificate (%s) and operator config in %s, keys in %s (keep private)\n",
		*out, secrets.CAFile, *hosts, secrets.ServerDir, secrets.KeysDir)
	for _, a := range op.Accounts {
		for _, u := range a.Users {
			fmt.Printf("  %-12s account %-13s %s\n", u.Name, a.Name, filepath.Join(*out, secrets.CredsFile(u.Name)))
		}
	}
}
