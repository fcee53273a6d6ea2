package client

import (
	"github.com/gamemodes/gamemodes/nats/natsconn"
	"github.com/nats-io/nats.go"
)

// Security is how a game server authenticates to the service's NATS and
// checks the server's certificate: a .creds file (operator mode), an NKey
// seed file, or a user and password; the CA file of the server's
// certificate, a client certificate and key for mutual TLS, the server
// name the certificate must carry, and TLS before the server's INFO
// (TLSFirst). Every field is optional.
type Security = natsconn.Config

// ConnectOptions checks every file of sec (readable, what it should be,
// not expired) and returns the nats.go options that connect with it; it
// never connects. An error is a *natsconn.SettingError naming the setting
// as the gamemodes flag that sets it (CredsFile is --nats-creds, CAFile
// --nats-tls-ca, CertFile and KeyFile --nats-tls-cert and --nats-tls-key,
// ServerName --nats-tls-server-name). sec.Explain turns an error of
// nats.Connect into one line naming the setting at fault.
func ConnectOptions(sec Security) ([]nats.Option, error) {
	return sec.Options()
}
