// Package natsconn turns the security settings of a NATS client (a
// credentials file, an NKey seed, a user and password, TLS with a CA, a
// client certificate, a server name and TLS-first) into nats.go options,
// and explains a refused connection in one line that names the setting at
// fault: the gamemodes flag (--nats-creds, --nats-tls-ca, ...), which every
// gamemodes binary and the Go client's documentation use.
//
// Every file is read and checked when the options are built, so a missing
// or unreadable file, a file that is not what it should be, an expired
// credential or client certificate, or a CA file without a certificate is
// refused before any connection is tried. The server's certificate is
// verified by VerifyConnection with the standard rules (the chain to the
// CA, the name, the validity period, the server-auth usage), so that a
// failure names --nats-tls-ca, --nats-tls-server-name or the server.
package natsconn

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// The settings, named as the gamemodes flags that set them. A SettingError
// names one of them.
const (
	SettingURL           = "--nats-url"
	SettingUser          = "--nats-user"
	SettingPassword      = "--nats-password"
	SettingCreds         = "--nats-creds"
	SettingNKeySeed      = "--nats-nkey-seed"
	SettingTLSCA         = "--nats-tls-ca"
	SettingTLSCert       = "--nats-tls-cert"
	SettingTLSKey        = "--nats-tls-key"
	SettingTLSServerName = "--nats-tls-server-name"
	SettingTLSFirst      = "--nats-tls-first"
)

// Config holds a client's security settings; the zero value connects
// without authentication and without TLS (unless the URL is tls://, or the
// server requires TLS: then the system's roots verify it).
type Config struct {
	// User and Password authenticate with a user of the server's
	// configuration (nats/config/auth.conf).
	User, Password string
	// CredsFile is a .creds file (a user JWT and its NKey seed) of an
	// operator-mode server (decentralised JWT authentication).
	CredsFile string
	// NKeySeedFile holds the seed of an NKey user ("SU...").
	NKeySeedFile string
	// CAFile is the PEM file of the certificate authorities that sign the
	// server's certificate (default: the system's roots).
	CAFile string
	// CertFile and KeyFile are the client certificate and its key (PEM), for
	// a server that verifies its clients (mutual TLS).
	CertFile, KeyFile string
	// ServerName is the name the server's certificate must carry (default:
	// the host of the URL connected to).
	ServerName string
	// TLSFirst does the TLS handshake before the server's INFO, for a server
	// configured with handshake_first.
	TLSFirst bool

	// OnVerifyFailure, if set, is called with every failed verification of
	// a server's certificate (a *SettingError), at the first connection and
	// at every reconnection, so that a caller can stop reconnecting to a
	// server it does not trust.
	OnVerifyFailure func(error)
	// Now is the clock of the validity checks (default time.Now).
	Now func() time.Time
}

// TLS reports whether any TLS setting is given.
func (c Config) TLS() bool {
	return c.CAFile != "" || c.CertFile != "" || c.KeyFile != "" || c.ServerName != "" || c.TLSFirst
}

// SettingError is a setting that cannot work, or a refusal caused by one:
// its text is "<setting> [<value>]: <reason>". Err is the underlying error,
// if any (its text ends the reason in parentheses).
type SettingError struct {
	Setting string
	Value   string // a file name or a server name; never a secret
	Reason  string
	Err     error
}

func (e *SettingError) Error() string {
	var b strings.Builder
	b.WriteString(e.Setting)
	if e.Value != "" {
		b.WriteString(" " + e.Value)
	}
	b.WriteString(": " + e.Reason)
	if e.Err != nil {
		b.WriteString(" (" + e.Err.Error() + ")")
	}
	return b.String()
}

func (e *SettingError) Unwrap() error { return e.Err }

func (c Config) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Options checks every file of c and returns the nats.go options that
// connect with them. It never connects.
func (c Config) Options() ([]nats.Option, error) {
	var opts []nats.Option
	auths := 0
	for _, set := range []bool{c.User != "", c.CredsFile != "", c.NKeySeedFile != ""} {
		if set {
			auths++
		}
	}
	if auths > 1 {
		return nil, &SettingError{Setting: SettingCreds + ", " + SettingNKeySeed + ", " + SettingUser, Reason: "give one way of authenticating, not several"}
	}
	if c.Password != "" && c.User == "" {
		return nil, &SettingError{Setting: SettingPassword, Reason: "a password needs " + SettingUser}
	}
	switch {
	case c.User != "":
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	case c.CredsFile != "":
		if err := c.checkCreds(); err != nil {
			return nil, err
		}
		opts = append(opts, nats.UserCredentials(c.CredsFile))
	case c.NKeySeedFile != "":
		o, err := nats.NkeyOptionFromSeed(c.NKeySeedFile)
		if err != nil {
			return nil, &SettingError{Setting: SettingNKeySeed, Value: c.NKeySeedFile, Reason: "not a readable NKey user seed", Err: err}
		}
		opts = append(opts, o)
	}
	// The TLS settings (and this package's verification, with the system's
	// roots when no CA is given) serve any TLS connection, also one a
	// tls:// URL or a server requiring TLS asks for; TLS is required here
	// only when a TLS setting is given.
	tc, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	opts = append(opts, func(o *nats.Options) error { o.TLSConfig = tc; return nil })
	if c.TLS() {
		opts = append(opts, nats.Secure())
		if c.TLSFirst {
			opts = append(opts, nats.TLSHandshakeFirst())
		}
	}
	return opts, nil
}

// checkCreds reads the credentials file: a user JWT that is not expired and
// the user's NKey seed.
func (c Config) checkCreds() error {
	fail := func(reason string, err error) error {
		return &SettingError{Setting: SettingCreds, Value: c.CredsFile, Reason: reason, Err: err}
	}
	b, err := os.ReadFile(c.CredsFile)
	if err != nil {
		return fail("cannot read the credentials file", unwrapPath(err))
	}
	defer clear(b)
	token, err := nkeys.ParseDecoratedJWT(b)
	if err != nil || token == "" {
		return fail("not a credentials file (want a user JWT and its NKey seed, as nsc or jwt.FormatUserConfig write it)", err)
	}
	claims, err := jwt.DecodeUserClaims(token)
	if err != nil {
		return fail("not a credentials file (want a user JWT and its NKey seed, as nsc or jwt.FormatUserConfig write it)", err)
	}
	if claims.Expires > 0 && time.Unix(claims.Expires, 0).Before(c.now()) {
		return fail(fmt.Sprintf("the user JWT expired at %s: issue new credentials", time.Unix(claims.Expires, 0).UTC().Format(time.RFC3339)), nil)
	}
	kp, err := nkeys.ParseDecoratedUserNKey(b)
	if err != nil {
		return fail("the file holds no user NKey seed", err)
	}
	defer kp.Wipe()
	pub, err := kp.PublicKey()
	if err != nil {
		return fail("the file's NKey seed is invalid", err)
	}
	if pub != claims.Subject {
		return fail("the file's NKey seed is not the key of its JWT", nil)
	}
	return nil
}

// unwrapPath drops the *fs.PathError's repetition of the file name.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func (c Config) tlsConfig() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	var roots *x509.CertPool
	if c.CAFile != "" {
		b, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, &SettingError{Setting: SettingTLSCA, Value: c.CAFile, Reason: "cannot read the CA file", Err: unwrapPath(err)}
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(b) {
			return nil, &SettingError{Setting: SettingTLSCA, Value: c.CAFile, Reason: "no PEM certificate in the file"}
		}
	} else {
		var err error
		if roots, err = x509.SystemCertPool(); err != nil {
			return nil, &SettingError{Setting: SettingTLSCA, Reason: "no CA file given and the system's roots cannot be read", Err: err}
		}
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, &SettingError{Setting: SettingTLSCert + " and " + SettingTLSKey, Reason: "give both the client certificate and its key, or neither"}
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, &SettingError{Setting: SettingTLSCert + "/" + SettingTLSKey, Value: c.CertFile + " " + c.KeyFile,
				Reason: "cannot load the client certificate and key", Err: unwrapPath(err)}
		}
		leaf := cert.Leaf
		if leaf == nil {
			if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
				return nil, &SettingError{Setting: SettingTLSCert, Value: c.CertFile, Reason: "cannot parse the client certificate", Err: err}
			}
		}
		if now := c.now(); now.After(leaf.NotAfter) {
			return nil, &SettingError{Setting: SettingTLSCert, Value: c.CertFile, Reason: "the client certificate expired at " + leaf.NotAfter.UTC().Format(time.RFC3339)}
		} else if now.Before(leaf.NotBefore) {
			return nil, &SettingError{Setting: SettingTLSCert, Value: c.CertFile, Reason: "the client certificate is not valid before " + leaf.NotBefore.UTC().Format(time.RFC3339)}
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	// The standard verification, done here so that a failure names the
	// setting at fault (see the package documentation).
	tc.InsecureSkipVerify = true
	tc.VerifyConnection = func(cs tls.ConnectionState) error {
		err := c.verify(cs, roots)
		if err != nil && c.OnVerifyFailure != nil {
			c.OnVerifyFailure(err)
		}
		return err
	}
	return tc, nil
}

// verify checks the server's chain to roots, its name and its validity, as
// crypto/tls does when InsecureSkipVerify is false.
func (c Config) verify(cs tls.ConnectionState, roots *x509.CertPool) error {
	if len(cs.PeerCertificates) == 0 {
		return &SettingError{Setting: SettingURL, Reason: "the NATS server sent no certificate"}
	}
	leaf := cs.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, ic := range cs.PeerCertificates[1:] {
		inter.AddCert(ic)
	}
	name := cs.ServerName
	_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: name, CurrentTime: c.now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	if err == nil {
		return nil
	}
	subject := certName(leaf)
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &unknown):
		if c.CAFile == "" {
			return &SettingError{Setting: SettingTLSCA, Reason: "the NATS server's certificate (" + subject + ") is not signed by a CA of the system: give its CA file", Err: err}
		}
		return &SettingError{Setting: SettingTLSCA, Value: c.CAFile, Reason: "the NATS server's certificate (" + subject + ") is not signed by this CA", Err: err}
	case errors.As(err, &host):
		names := certNames(leaf)
		if c.ServerName != "" {
			return &SettingError{Setting: SettingTLSServerName, Value: c.ServerName, Reason: "the NATS server's certificate is for " + names + ", not this name", Err: err}
		}
		return &SettingError{Setting: SettingTLSServerName, Reason: fmt.Sprintf("the NATS server's certificate is for %s, not %q (the host of %s): set %s to a name it carries", names, name, SettingURL, SettingTLSServerName), Err: err}
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return &SettingError{Setting: SettingURL, Reason: fmt.Sprintf("the NATS server's certificate (%s) is outside its validity period %s to %s", subject,
			invalid.Cert.NotBefore.UTC().Format(time.RFC3339), invalid.Cert.NotAfter.UTC().Format(time.RFC3339)), Err: err}
	}
	return &SettingError{Setting: SettingTLSCA, Value: c.CAFile, Reason: "the NATS server's certificate (" + subject + ") does not verify", Err: err}
}

func certName(c *x509.Certificate) string {
	if c.Subject.CommonName != "" {
		return "CN=" + c.Subject.CommonName
	}
	return c.Subject.String()
}

func certNames(c *x509.Certificate) string {
	var names []string
	names = append(names, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		return "no name"
	}
	return strings.Join(names, ", ")
}

// Explain turns an error of nats.Connect into one line naming the setting
// at fault where it can tell (a *SettingError), else it returns err. It
// never includes a password, a seed or a token: nats.go's errors carry
// none.
func (c Config) Explain(err error) error {
	if err == nil {
		return nil
	}
	var se *SettingError
	if errors.As(err, &se) {
		return se
	}
	msg := err.Error()
	auth := func() string {
		switch {
		case c.CredsFile != "":
			return SettingCreds + " " + c.CredsFile
		case c.NKeySeedFile != "":
			return SettingNKeySeed + " " + c.NKeySeedFile
		case c.User != "":
			return SettingUser + " " + c.User
		}
		return SettingUser + "/" + SettingCreds
	}
	switch {
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthExpired), errors.Is(err, nats.ErrAuthRevoked),
		errors.Is(err, nats.ErrAccountAuthExpired), strings.Contains(strings.ToLower(msg), "authorization violation"):
		what := "the NATS server refused these credentials"
		if c.User == "" && c.CredsFile == "" && c.NKeySeedFile == "" {
			what = "the NATS server requires authentication and none was given"
		}
		return &SettingError{Setting: auth(), Reason: what, Err: err}
	case errors.Is(err, nats.ErrSecureConnWanted):
		return &SettingError{Setting: SettingTLSCA, Reason: "TLS was asked for but the NATS server does not offer it", Err: err}
	case c.CertFile != "" && (strings.Contains(msg, "remote error: tls:") || strings.Contains(msg, "closed by remote after TLS handshake")):
		// The refusal arrives as an alert, or as a closed connection when
		// the client writes first (TLS 1.3); crypto/tls does not even send
		// a certificate whose CA is not in the server's list.
		return &SettingError{Setting: SettingTLSCert, Value: c.CertFile, Reason: "the NATS server refused this client certificate (not signed by a CA it trusts, expired, or not for client authentication)", Err: err}
	case strings.Contains(msg, "tls: certificate required"), strings.Contains(msg, "closed by remote after TLS handshake"):
		return &SettingError{Setting: SettingTLSCert, Reason: "the NATS server requires a client certificate (mutual TLS): give " + SettingTLSCert + " and " + SettingTLSKey, Err: err}
	case strings.Contains(msg, "remote error: tls:"):
		return &SettingError{Setting: SettingURL, Reason: "the NATS server ended the TLS handshake", Err: err}
	case strings.Contains(msg, "first record does not look like a TLS handshake") && c.TLSFirst:
		return &SettingError{Setting: SettingTLSFirst, Reason: "the NATS server does not start with TLS (it is not configured with handshake_first)", Err: err}
	case (errors.Is(err, nats.ErrTimeout) || errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, io.EOF)) && c.TLS() && !c.TLSFirst:
		// A handshake_first server waits for the handshake and hangs up after
		// its own timeout: whichever side gives up first, the client sees a
		// timeout or the end of the connection without any INFO.
		return &SettingError{Setting: SettingURL, Reason: "the NATS server sent nothing (if it wants the TLS handshake first, set " + SettingTLSFirst + ")", Err: err}
	}
	return err
}

// IsVerification reports whether err is a refusal of the server's
// certificate by Config's verification, or of the client's by the server.
func IsVerification(err error) bool {
	var se *SettingError
	return errors.As(err, &se) || strings.Contains(err.Error(), "remote error: tls:") || strings.Contains(err.Error(), "tls: certificate required")
}

// AddFlags declares on fs the flags of c's file and TLS settings, under
// the names of the Setting constants (--nats-creds, --nats-nkey-seed,
// --nats-tls-ca, --nats-tls-cert, --nats-tls-key, --nats-tls-server-name,
// --nats-tls-first), for the smaller gamemodes tools (the gamemodes binary
// declares its own, also read from the environment).
func (c *Config) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.CredsFile, strings.TrimPrefix(SettingCreds, "--"), "", "NATS credentials file (user JWT and NKey seed) of an operator-mode server")
	fs.StringVar(&c.NKeySeedFile, strings.TrimPrefix(SettingNKeySeed, "--"), "", "file holding the NKey seed of a NATS NKey user")
	fs.StringVar(&c.CAFile, strings.TrimPrefix(SettingTLSCA, "--"), "", "PEM file of the CAs that sign the NATS server's certificate (default: the system's roots)")
	fs.StringVar(&c.CertFile, strings.TrimPrefix(SettingTLSCert, "--"), "", "PEM client certificate for a NATS server that verifies clients (mutual TLS)")
	fs.StringVar(&c.KeyFile, strings.TrimPrefix(SettingTLSKey, "--"), "", "PEM key of the client certificate")
	fs.StringVar(&c.ServerName, strings.TrimPrefix(SettingTLSServerName, "--"), "", "name the NATS server's certificate must carry (default: the host of the URL)")
	fs.BoolVar(&c.TLSFirst, strings.TrimPrefix(SettingTLSFirst, "--"), false, "do the TLS handshake before the NATS server's INFO (a server with handshake_first)")
}

// Redact hides the user information (user:password@) of every URL of a
// comma list of NATS URLs, for logs and errors.
func Redact(urls string) string {
	parts := strings.Split(urls, ",")
	for i, u := range parts {
		if at := strings.LastIndex(u, "@"); at >= 0 {
			if j := strings.Index(u, "://"); j >= 0 && j < at {
				parts[i] = u[:j+3] + "***" + u[at:]
			}
		}
	}
	return strings.Join(parts, ",")
}
