package secrets

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Files of a deployment folder written by WriteDeployment, relative to it.
// compose.yaml mounts ServerDir into the NATS nodes and gives each
// gamemodes service its own credentials file and CAFile.
const (
	// CAFile is the CA certificate every client trusts.
	CAFile = "ca.pem"
	// ServerDir holds what the NATS servers read: the CA, their
	// certificate and key, and the operator-mode resolver configuration.
	ServerDir = "nats-server"
	// ServerCAFile, ServerCertFile, ServerKeyFile and ResolverFile are in ServerDir.
	ServerCAFile   = "ca.pem"
	ServerCertFile = "server.pem"
	ServerKeyFile  = "server-key.pem"
	ResolverFile   = "operator.conf"
	// KeysDir holds the CA key and the operator's and accounts' seeds, with
	// which more certificates and users are issued; nothing mounts it.
	KeysDir = "keys"
)

// CredsFile is the credentials file of user, relative to the folder.
func CredsFile(user string) string { return filepath.Join("creds", user+".creds") }

// AccountSeedFile is the seed of account (it signs the account's users).
func AccountSeedFile(account string) string { return filepath.Join(KeysDir, account+".nk") }

// SigningKeySeedFile is the seed of account's scoped signing key of role:
// it issues more users of the role (secrets.IssueUser, or nsc).
func SigningKeySeedFile(account, role string) string {
	return filepath.Join(KeysDir, account+"-"+role+".nk")
}

// DeploymentOptions configure WriteDeployment.
type DeploymentOptions struct {
	// AuthConfig is the nats-server configuration whose accounts and users
	// become JWTs (nats/config/auth.conf).
	AuthConfig string
	// OperatorName names the operator (default "gamemodes").
	OperatorName string
	// ServerHosts are the names and addresses in the server certificate
	// (one certificate for every node: a node is also a TLS client of the
	// others on the cluster routes).
	ServerHosts []string
	// ValidFor is the validity of the CA and the server certificate
	// (default a year).
	ValidFor time.Duration
}

// WriteDeployment writes a new CA, a server certificate for every host, an
// operator with the accounts and users of the auth configuration, and each
// user's credentials file into dir, which must not exist yet (nothing is
// overwritten). The folder is readable by its owner only; the files that
// containers read are readable by all (a container's user is not the
// host's), the keys by their owner only.
func WriteDeployment(dir string, o DeploymentOptions) (*Operator, error) {
	if o.OperatorName == "" {
		o.OperatorName = "gamemodes"
	}
	if o.ValidFor <= 0 {
		o.ValidFor = 365 * 24 * time.Hour
	}
	if len(o.ServerHosts) == 0 {
		return nil, errors.New("no server host names")
	}
	if _, err := os.Stat(dir); err == nil {
		return nil, fmt.Errorf("%s exists: remove it to issue new secrets (every client then needs its new credentials)", dir)
	}
	op, err := FromConfig(o.AuthConfig, o.OperatorName)
	if err != nil {
		return nil, err
	}
	ca, err := NewCA(o.OperatorName+" NATS CA", o.ValidFor)
	if err != nil {
		return nil, err
	}
	cert, key, err := ca.Issue(CertSpec{CommonName: "nats", Hosts: o.ServerHosts, Server: true, Client: true,
		NotAfter: time.Now().Add(o.ValidFor)})
	if err != nil {
		return nil, err
	}
	files := []file{
		{CAFile, ca.CertPEM(), 0o644},
		{filepath.Join(ServerDir, ServerCAFile), ca.CertPEM(), 0o644},
		{filepath.Join(ServerDir, ServerCertFile), cert, 0o644},
		{filepath.Join(ServerDir, ServerKeyFile), key, 0o644},
		{filepath.Join(ServerDir, ResolverFile), op.ResolverConfig(), 0o644},
		{filepath.Join(KeysDir, "ca-key.pem"), ca.KeyPEM(), 0o600},
		{filepath.Join(KeysDir, "operator.nk"), Seed(op.Key), 0o600},
	}
	for _, a := range op.Accounts {
		files = append(files, file{AccountSeedFile(a.Name), Seed(a.Key), 0o600})
		for role, sk := range a.SigningKeys {
			files = append(files, file{SigningKeySeedFile(a.Name, role), Seed(sk), 0o600})
		}
		for _, u := range a.Users {
			files = append(files, file{CredsFile(u.Name), u.Creds, 0o644})
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	for _, f := range files {
		p := filepath.Join(dir, f.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(p, f.data, f.mode); err != nil {
			return nil, err
		}
	}
	if err := os.Chmod(filepath.Join(dir, KeysDir), 0o700); err != nil {
		return nil, err
	}
	return op, nil
}

type file struct {
	path string
	data []byte
	mode os.FileMode
}
