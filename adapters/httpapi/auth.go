package httpapi

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// RoleGameServer is the value of a token's "role" claim that lets its holder
// (a trusted game server) report events for any user. Any other token is a
// player token: it may report only for the user named by its "sub" claim.
const RoleGameServer = "game_server"

// Defaults and limits of the authenticator.
const (
	// DefaultAuthLeeway is the clock skew tolerated on exp, nbf and iat.
	DefaultAuthLeeway = 30 * time.Second
	// MinSecretLen is the shortest accepted HS256 secret in bytes: RFC 7518
	// section 3.2 requires a key at least as long as the hash output.
	MinSecretLen = 32
	// MinRSABits is the smallest accepted RSA public key.
	MinRSABits = 2048
)

// Signing algorithms the authenticator can verify.
const (
	algHS256 = "HS256"
	algRS256 = "RS256"
	algEdDSA = "EdDSA"
)

// ErrNoToken means a request carried no bearer token.
var ErrNoToken = errors.New("no bearer token")

// AuthConfig says where the token verification keys are. With neither file
// set, authentication is off. Both may be set: tokens may then be signed with
// either key.
type AuthConfig struct {
	// SecretFile holds the HS256 shared secret: the file's bytes with the
	// surrounding white space trimmed, at least MinSecretLen bytes.
	SecretFile string
	// PublicKeyFile holds one PEM public key ("PUBLIC KEY", "RSA PUBLIC KEY"
	// or a "CERTIFICATE"): an RSA key verifies RS256 tokens, an Ed25519 key
	// EdDSA tokens.
	PublicKeyFile string
	// Leeway is the clock skew tolerated on exp, nbf and iat (default 30s).
	Leeway time.Duration
}

// Claims are the claims of an event reporter's token.
type Claims struct {
	// Role is RoleGameServer for a game server's token, else empty.
	Role string `json:"role,omitempty"`
	jwt.RegisteredClaims
}

// MayReportFor reports whether the token's holder may report an event for
// the user with canonical id userID: a game server for any user, a player
// only for itself (sub equal to userID).
func (c *Claims) MayReportFor(userID string) bool {
	if c.Role == RoleGameServer {
		return true
	}
	return c.Subject != "" && c.Subject == userID
}

// Authenticator verifies the bearer JWTs of event reporters. Build it with
// NewAuthenticator; it is safe for concurrent use.
type Authenticator struct {
	secret  []byte
	rsaKey  *rsa.PublicKey
	edKey   ed25519.PublicKey
	methods []string
	parser  *jwt.Parser
}

// NewAuthenticator loads the keys named by cfg. It returns nil and no error
// when cfg names no file: authentication is then off.
func NewAuthenticator(cfg AuthConfig) (*Authenticator, error) {
	if cfg.SecretFile == "" && cfg.PublicKeyFile == "" {
		return nil, nil
	}
	a := &Authenticator{}
	if cfg.SecretFile != "" {
		secret, err := loadSecret(cfg.SecretFile)
		if err != nil {
			return nil, err
		}
		a.secret = secret
		a.methods = append(a.methods, algHS256)
	}
	if cfg.PublicKeyFile != "" {
		key, err := loadPublicKey(cfg.PublicKeyFile)
		if err != nil {
			return nil, err
		}
		switch k := key.(type) {
		case *rsa.PublicKey:
			a.rsaKey = k
			a.methods = append(a.methods, algRS256)
		case ed25519.PublicKey:
			a.edKey = k
			a.methods = append(a.methods, algEdDSA)
		}
	}
	leeway := cfg.Leeway
	if leeway <= 0 {
		leeway = DefaultAuthLeeway
	}
	a.parser = jwt.NewParser(
		jwt.WithValidMethods(a.methods),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(leeway),
	)
	return a, nil
}

func loadSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("jwt secret file: %w", err)
	}
	secret := bytes.TrimSpace(b)
	if len(secret) == 0 {
		return nil, fmt.Errorf("jwt secret file %s: the secret is empty", path)
	}
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("jwt secret file %s: the secret is %d bytes, HS256 needs at least %d (for example: openssl rand -base64 48)", path, len(secret), MinSecretLen)
	}
	return secret, nil
}

func loadPublicKey(path string) (any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("jwt public key file: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("jwt public key file %s: no PEM block", path)
	}
	var key any
	switch block.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			key = cert.PublicKey
		}
	default:
		if strings.Contains(block.Type, "PRIVATE KEY") {
			return nil, fmt.Errorf("jwt public key file %s: holds a private key; give the edge only the public key", path)
		}
		return nil, fmt.Errorf("jwt public key file %s: unsupported PEM block %q (want PUBLIC KEY)", path, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("jwt public key file %s: %w", path, err)
	}
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < MinRSABits {
			return nil, fmt.Errorf("jwt public key file %s: RSA key of %d bits, at least %d needed", path, k.N.BitLen(), MinRSABits)
		}
		return k, nil
	case ed25519.PublicKey:
		return k, nil
	default:
		return nil, fmt.Errorf("jwt public key file %s: unsupported key type %T (want RSA for RS256 or Ed25519 for EdDSA)", path, key)
	}
}

// Algorithms returns the signing algorithms accepted, such as ["HS256"].
func (a *Authenticator) Algorithms() []string {
	return append([]string(nil), a.methods...)
}

// Verify parses and verifies a compact JWT: signature with the configured
// key of its algorithm (only configured algorithms are accepted), exp
// required, exp, nbf and iat checked with the leeway. An expired token's
// error wraps jwt.ErrTokenExpired.
func (a *Authenticator) Verify(token string) (*Claims, error) {
	if token == "" {
		return nil, ErrNoToken
	}
	claims := &Claims{}
	if _, err := a.parser.ParseWithClaims(token, claims, a.key); err != nil {
		return nil, fmt.Errorf("verify token: %w", err)
	}
	return claims, nil
}

// key returns the verification key of the token's algorithm, never a key of
// another kind (no HS256 verification with a public key).
func (a *Authenticator) key(t *jwt.Token) (any, error) {
	switch t.Method.Alg() {
	case algHS256:
		if a.secret != nil {
			return a.secret, nil
		}
	case algRS256:
		if a.rsaKey != nil {
			return a.rsaKey, nil
		}
	case algEdDSA:
		if a.edKey != nil {
			return a.edKey, nil
		}
	}
	return nil, fmt.Errorf("algorithm %q is not accepted", t.Method.Alg())
}

// bearerToken returns the token of an "Authorization: Bearer <token>"
// header value, or "" when there is none.
func bearerToken(header string) string {
	const scheme = "bearer "
	header = strings.TrimSpace(header)
	if len(header) < len(scheme) || !strings.EqualFold(header[:len(scheme)], scheme) {
		return ""
	}
	return strings.TrimSpace(header[len(scheme):])
}
