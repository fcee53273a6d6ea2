package main

import (
	"github.com/gamemodes/gamemodes/cmd/gamemodes/config"
	"github.com/gamemodes/gamemodes/nats/natsconn"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// natsSecurity is the security of the NATS client connection set by the
// flags (--nats-user/--nats-password[-file], --nats-creds,
// --nats-nkey-seed, --nats-tls-*).
func natsSecurity(c config.Config) natsconn.Config {
	return natsconn.Config{
		User: c.NATSUser, Password: c.NATSPassword, CredsFile: c.NATSCreds, NKeySeedFile: c.NATSNKeySeed,
		CAFile: c.NATSTLSCA, CertFile: c.NATSTLSCert, KeyFile: c.NATSTLSKey,
		ServerName: c.NATSTLSServerName, TLSFirst: c.NATSTLSFirst,
	}
}

// embeddedConnection is how this process reaches its own embedded server
// ns: over TCP with the flags' credentials, or, when the client port
// requires TLS (and maybe a client certificate), in-process with the same
// credentials and no TLS (the --nats-tls-* flags are for other servers; a
// tls:// URL would make the client ask for TLS).
func embeddedConnection(c config.Config, ns *server.Server) (string, natsconn.Config, []nats.Option) {
	sec := natsSecurity(c)
	if c.NATSListenTLSCert == "" {
		return ns.ClientURL(), sec, nil
	}
	sec.CAFile, sec.CertFile, sec.KeyFile, sec.ServerName, sec.TLSFirst = "", "", "", "", false
	return "nats://" + ns.Addr().String(), sec, []nats.Option{nats.InProcessServer(ns)}
}
