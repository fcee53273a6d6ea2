package natstest

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/nats/secrets"
	"github.com/nats-io/nats-server/v2/server"
)

// SecuredOptions configure RunSecured.
type SecuredOptions struct {
	// VerifyClients requires a client certificate signed by the CA (mutual TLS).
	VerifyClients bool
	// TLSFirst makes the server expect the TLS handshake before its INFO.
	TLSFirst bool
	// Operator runs the server in operator mode with a memory resolver
	// holding the accounts and users of nats/config/auth.conf (as JWTs,
	// with the same permissions); without it the server has no users.
	Operator bool
	// ServerHosts are the names in the server's certificate (default
	// localhost and 127.0.0.1).
	ServerHosts []string
	// CA signs the server's certificate (default: a new CA).
	CA *secrets.CA
	// Port is the client port (default: a random free one), to restart a
	// server where clients reconnect.
	Port int
	// ServerNotBefore and ServerNotAfter bound the server certificate's
	// validity (default: from an hour ago for a year).
	ServerNotBefore, ServerNotAfter time.Time
}

// Secured is a JetStream node that requires TLS, with the CA, the
// certificates and the credentials files of its clients in Dir.
type Secured struct {
	Server *server.Server
	// URL is the client URL, nats://127.0.0.1:<port> (the server requires TLS).
	URL string
	// Dir holds every file: CAFile, the server's certificate, client certificates, creds.
	Dir string
	// CA signs the server's and the clients' certificates; CAFile is its PEM.
	CA     *secrets.CA
	CAFile string
	// Operator holds the accounts and users when SecuredOptions.Operator is set.
	Operator *secrets.Operator
}

// AuthConfig is the path of nats/config/auth.conf.
func AuthConfig() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "config", "auth.conf")
}

// RunSecured starts a node requiring TLS on a random loopback port, shut
// down at the end of the test. With NATSTEST_LOG set in the environment the
// server's log lines go to the test's log (to see why it refused a client).
func RunSecured(t testing.TB, o SecuredOptions) *Secured {
	t.Helper()
	dir := t.TempDir()
	ca, err := o.CA, error(nil)
	if ca == nil {
		if ca, err = secrets.NewCA("test CA", 24*time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	s := &Secured{Dir: dir, CA: ca, CAFile: filepath.Join(dir, "ca.pem")}
	writeFile(t, s.CAFile, ca.CertPEM())
	hosts := o.ServerHosts
	if len(hosts) == 0 {
		hosts = []string{"localhost", "127.0.0.1"}
	}
	cert, key := s.Issue(t, "server", secrets.CertSpec{CommonName: "test nats server", Hosts: hosts, Server: true,
		NotBefore: o.ServerNotBefore, NotAfter: o.ServerNotAfter})
	var conf strings.Builder
	fmt.Fprintf(&conf, "jetstream { store_dir: %q }\n", filepath.Join(dir, "js"))
	fmt.Fprintf(&conf, "tls { cert_file: %q, key_file: %q, ca_file: %q, verify: %v, handshake_first: %v, timeout: 2 }\n",
		cert, key, s.CAFile, o.VerifyClients, o.TLSFirst)
	if o.Operator {
		if s.Operator, err = secrets.FromConfig(AuthConfig(), "test"); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, "operator.conf"), s.Operator.ResolverConfig())
		conf.WriteString("include ./operator.conf\n")
	}
	confFile := filepath.Join(dir, "server.conf")
	writeFile(t, confFile, []byte(conf.String()))
	opts, err := server.ProcessConfigFile(confFile)
	if err != nil {
		t.Fatalf("secured server config: %v\n%s", err, conf.String())
	}
	opts.ServerName = "secured"
	opts.Host, opts.Port = "127.0.0.1", -1
	if o.Port > 0 {
		opts.Port = o.Port
	}
	opts.NoSigs, opts.NoLog = true, true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("secured server: %v", err)
	}
	if os.Getenv("NATSTEST_LOG") != "" {
		ns.ConfigureLogger()
		ns.SetLogger(testLogger{t}, true, false)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("secured server not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	s.Server = ns
	s.URL = fmt.Sprintf("nats://127.0.0.1:%d", ns.Addr().(*net.TCPAddr).Port)
	return s
}

// Issue writes a certificate and key signed by the CA into Dir as
// <name>.pem and <name>-key.pem and returns their paths.
func (s *Secured) Issue(t testing.TB, name string, spec secrets.CertSpec) (certFile, keyFile string) {
	t.Helper()
	cert, key, err := s.CA.Issue(spec)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(s.Dir, name+".pem"), filepath.Join(s.Dir, name+"-key.pem")
	writeFile(t, certFile, cert)
	writeFile(t, keyFile, key)
	return certFile, keyFile
}

// ClientCert issues a client certificate called name (see Issue).
func (s *Secured) ClientCert(t testing.TB, name string) (certFile, keyFile string) {
	t.Helper()
	return s.Issue(t, name, secrets.CertSpec{CommonName: name, Client: true})
}

// CredsFile writes the credentials file of a user of auth.conf (operator
// mode) and returns its path.
func (s *Secured) CredsFile(t testing.TB, user string) string {
	t.Helper()
	if s.Operator == nil {
		t.Fatal("CredsFile: the server is not in operator mode")
	}
	u := s.Operator.User(user)
	if u == nil {
		t.Fatalf("no user %s in auth.conf", user)
	}
	p := filepath.Join(s.Dir, user+".creds")
	writeFile(t, p, u.Creds)
	return p
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

type testLogger struct{ t testing.TB }

func (l testLogger) Noticef(f string, v ...any) { l.t.Logf("nats: "+f, v...) }
func (l testLogger) Warnf(f string, v ...any)   { l.t.Logf("nats: "+f, v...) }
func (l testLogger) Fatalf(f string, v ...any)  { l.t.Logf("nats: "+f, v...) }
func (l testLogger) Errorf(f string, v ...any)  { l.t.Logf("nats: "+f, v...) }
func (l testLogger) Debugf(f string, v ...any)  { l.t.Logf("nats: "+f, v...) }
func (l testLogger) Tracef(f string, v ...any)  { l.t.Logf("nats: "+f, v...) }
