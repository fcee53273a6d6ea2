package netcluster

import (
	"fmt"
	"net"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
)

// NATSServerPackage is the official nats-server, at the version go.mod
// requires.
const NATSServerPackage = "github.com/nats-io/nats-server/v2"

// Build compiles the cluster's binaries into dir, from the module holding
// the working directory: nats-server (NATSServerPackage) and gamemodes
// (./cmd/gamemodes). It returns their paths.
func Build(dir string) (natsServer, gamemodes string, err error) {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", "", fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	if dir, err = filepath.Abs(dir); err != nil {
		return "", "", err
	}
	natsServer, gamemodes = filepath.Join(dir, "nats-server"), filepath.Join(dir, "gamemodes")
	for pkg, out := range map[string]string{NATSServerPackage: natsServer, "./cmd/gamemodes": gamemodes} {
		build := exec.Command("go", "build", "-o", out, pkg)
		build.Dir = root
		if msg, err := build.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("build %s: %w\n%s", pkg, err, msg)
		}
	}
	return natsServer, gamemodes, nil
}

// postgresHost returns the host:port of a Postgres URL (port 5432 when absent).
func postgresHost(u string) (string, error) {
	parsed, err := url.Parse(u)
	if err != nil || parsed.Host == "" {
		return "", fmt.Errorf("netcluster: postgres url: want postgres://user@host:port/db")
	}
	if parsed.Port() == "" {
		return net.JoinHostPort(parsed.Hostname(), "5432"), nil
	}
	return parsed.Host, nil
}

// withHost returns URL u with its host:port replaced by hostPort.
func withHost(u, hostPort string) string {
	parsed, err := url.Parse(u)
	if err != nil {
		return u
	}
	parsed.Host = hostPort
	return parsed.String()
}
