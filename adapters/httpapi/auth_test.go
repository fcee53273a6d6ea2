package httpapi_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/adapters/httpapi"
	"github.com/golang-jwt/jwt/v5"
)

// testSecret is an HS256 secret of the minimum length and more.
const testSecret = "0123456789abcdef0123456789abcdef-test-secret"

// writeFile writes content to a new file in t's temp dir and returns its path.
func writeFile(t *testing.T, name string, content []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func pemFile(t *testing.T, blockType string, der []byte) string {
	t.Helper()
	return writeFile(t, "key.pem", pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der}))
}

func publicKeyFile(t *testing.T, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pemFile(t, "PUBLIC KEY", der)
}

func newAuth(t *testing.T, cfg httpapi.AuthConfig) *httpapi.Authenticator {
	t.Helper()
	a, err := httpapi.NewAuthenticator(cfg)
	if err != nil {
		t.Fatalf("NewAuthenticator: %v", err)
	}
	if a == nil {
		t.Fatal("NewAuthenticator returned nil with a key configured")
	}
	return a
}

func hs256Auth(t *testing.T) *httpapi.Authenticator {
	t.Helper()
	return newAuth(t, httpapi.AuthConfig{SecretFile: writeFile(t, "secret", []byte("  "+testSecret+"\n"))})
}

// claims returns player claims for sub, valid for an hour.
func claims(sub string) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{"sub": sub, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
}

func sign(t *testing.T, method jwt.SigningMethod, key any, c jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, c).SignedString(key)
	if err != nil {
		t.Fatalf("sign %s: %v", method.Alg(), err)
	}
	return s
}

func hs256(t *testing.T, c jwt.Claims) string {
	return sign(t, jwt.SigningMethodHS256, []byte(testSecret), c)
}

// postAuth posts body with "Authorization: <authorization>" (none when empty).
func postAuth(t *testing.T, srv *httpapi.Server, authorization, body string) response {
	t.Helper()
	req := newRequest(http.MethodPost, httpapi.PathEvent, "application/json", body)
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	return do(t, srv, req)
}

// expectRefused checks a refusal: status, error code and that nothing was stored.
func expectRefused(t *testing.T, e *env, r response, before uint64, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d body %s; want %d %s", r.status, r.body, status, code)
	}
	if got := r.errorCode(t); got != code {
		t.Fatalf("code %q body %s; want %q", got, r.body, code)
	}
	if status == http.StatusUnauthorized {
		if got := r.header.Get("WWW-Authenticate"); got != "Bearer" {
			t.Errorf("WWW-Authenticate %q, want Bearer", got)
		}
	}
	if got := e.count(); got != before {
		t.Fatalf("stream went from %d to %d messages for a refused request", before, got)
	}
}

func expectStored(t *testing.T, e *env, r response, before uint64) {
	t.Helper()
	if r.status != http.StatusAccepted {
		t.Fatalf("status %d body %s; want 202", r.status, r.body)
	}
	if got := e.count(); got != before+1 {
		t.Fatalf("stream went from %d to %d messages, want +1", before, got)
	}
}

func TestAuthHS256(t *testing.T) {
	e := newEnv(t, httpapi.Config{Auth: hs256Auth(t)})
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	expired := claims("1")
	expired["iat"] = time.Now().Add(-2 * time.Hour).Unix()
	expired["exp"] = time.Now().Add(-time.Hour).Unix()
	noExp := claims("1")
	delete(noExp, "exp")
	future := claims("1")
	future["nbf"] = time.Now().Add(time.Hour).Unix()
	unsignedNone := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims("1"))
	valid := hs256(t, claims("1"))
	parts := strings.Split(valid, ".")
	// The valid token's header and claims with a "none" algorithm and no signature.
	noneHeader := strings.Split(unsignedNone, ".")[0]

	cases := []struct {
		name          string
		authorization string
		body          string
		message       string // "" = not checked
	}{
		{"missing header", "", event(set("event_id", "a-1")), "a bearer token is required (Authorization: Bearer <token>)"},
		{"missing header and invalid body", "", `{"user_id":`, ""},
		{"empty bearer", "Bearer ", event(nil), ""},
		{"other scheme", "Basic " + valid, event(nil), ""},
		{"malformed token", "Bearer not.a.jwt", event(nil), "the bearer token is invalid"},
		{"garbage", "Bearer " + strings.Repeat("x", 100), event(nil), ""},
		{"expired", "Bearer " + hs256(t, expired), event(nil), "the bearer token has expired"},
		{"expired and invalid body", "Bearer " + hs256(t, expired), `{"user_id":true}`, ""},
		{"no exp", "Bearer " + hs256(t, noExp), event(nil), ""},
		{"not yet valid", "Bearer " + hs256(t, future), event(nil), ""},
		{"wrong secret", "Bearer " + sign(t, jwt.SigningMethodHS256, []byte(testSecret+"x"), claims("1")), event(nil), ""},
		{"alg none", "Bearer " + unsignedNone, event(nil), ""},
		{"alg none with valid claims", "Bearer " + noneHeader + "." + parts[1] + ".", event(nil), ""},
		{"tampered claims", "Bearer " + parts[0] + "." + strings.Split(hs256(t, claims("2")), ".")[1] + "." + parts[2], event(nil), ""},
		{"HS384 with the right secret", "Bearer " + sign(t, jwt.SigningMethodHS384, []byte(testSecret), claims("1")), event(nil), ""},
		{"RS256 not configured", "Bearer " + sign(t, jwt.SigningMethodRS256, rsaKey, claims("1")), event(nil), ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := e.count()
			r := postAuth(t, e.srv, c.authorization, c.body)
			expectRefused(t, e, r, before, http.StatusUnauthorized, httpapi.CodeUnauthorized)
			if c.message != "" {
				var b httpapi.ErrorBody
				_ = json.Unmarshal(r.body, &b)
				if b.Error.Message != c.message {
					t.Errorf("message %q, want %q", b.Error.Message, c.message)
				}
			}
		})
	}

	t.Run("valid", func(t *testing.T) {
		before := e.count()
		expectStored(t, e, postAuth(t, e.srv, "Bearer "+valid, event(set("event_id", "hs-valid"))), before)
		// The scheme is case-insensitive.
		before = e.count()
		expectStored(t, e, postAuth(t, e.srv, "bearer "+valid, event(set("event_id", "hs-valid-2"))), before)
	})
	t.Run("valid token, invalid body is 400", func(t *testing.T) {
		before := e.count()
		r := postAuth(t, e.srv, "Bearer "+valid, event(setPayload("region", "XX")))
		expectRefused(t, e, r, before, http.StatusBadRequest, "invalid_region")
	})
	t.Run("expired within the leeway", func(t *testing.T) {
		c := claims("1")
		c["exp"] = time.Now().Add(-5 * time.Second).Unix()
		before := e.count()
		expectStored(t, e, postAuth(t, e.srv, "Bearer "+hs256(t, c), event(set("event_id", "hs-leeway"))), before)
	})
}

func TestAuthRS256(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pubPath := publicKeyFile(t, &key.PublicKey)
	auth := newAuth(t, httpapi.AuthConfig{PublicKeyFile: pubPath})
	if got := auth.Algorithms(); len(got) != 1 || got[0] != "RS256" {
		t.Fatalf("algorithms %v, want [RS256]", got)
	}
	e := newEnv(t, httpapi.Config{Auth: auth})
	pubPEM, _ := os.ReadFile(pubPath)

	before := e.count()
	expectStored(t, e, postAuth(t, e.srv, "Bearer "+sign(t, jwt.SigningMethodRS256, key, claims("1")), event(set("event_id", "rs-1"))), before)

	for name, token := range map[string]string{
		"other key": sign(t, jwt.SigningMethodRS256, other, claims("1")),
		// Key confusion: the public key used as an HMAC secret.
		"HS256 with the public key": sign(t, jwt.SigningMethodHS256, pubPEM, claims("1")),
		"PS256 with the right key":  sign(t, jwt.SigningMethodPS256, key, claims("1")),
	} {
		t.Run(name, func(t *testing.T) {
			before := e.count()
			expectRefused(t, e, postAuth(t, e.srv, "Bearer "+token, event(nil)), before, http.StatusUnauthorized, httpapi.CodeUnauthorized)
		})
	}

	// A PKCS#1 "RSA PUBLIC KEY" block is read as well.
	auth1 := newAuth(t, httpapi.AuthConfig{PublicKeyFile: pemFile(t, "RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&key.PublicKey))})
	if _, err := auth1.Verify(sign(t, jwt.SigningMethodRS256, key, claims("1"))); err != nil {
		t.Fatalf("PKCS#1 key: %v", err)
	}
}

func TestAuthEdDSA(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, otherPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	auth := newAuth(t, httpapi.AuthConfig{PublicKeyFile: publicKeyFile(t, pub)})
	if got := auth.Algorithms(); len(got) != 1 || got[0] != "EdDSA" {
		t.Fatalf("algorithms %v, want [EdDSA]", got)
	}
	e := newEnv(t, httpapi.Config{Auth: auth})

	before := e.count()
	expectStored(t, e, postAuth(t, e.srv, "Bearer "+sign(t, jwt.SigningMethodEdDSA, priv, claims("1")), event(set("event_id", "ed-1"))), before)

	before = e.count()
	r := postAuth(t, e.srv, "Bearer "+sign(t, jwt.SigningMethodEdDSA, otherPriv, claims("1")), event(nil))
	expectRefused(t, e, r, before, http.StatusUnauthorized, httpapi.CodeUnauthorized)
	r = postAuth(t, e.srv, "Bearer "+sign(t, jwt.SigningMethodHS256, []byte(pub), claims("1")), event(nil))
	expectRefused(t, e, r, before, http.StatusUnauthorized, httpapi.CodeUnauthorized)
}

func TestAuthSecretAndPublicKeyTogether(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	auth := newAuth(t, httpapi.AuthConfig{
		SecretFile:    writeFile(t, "secret", []byte(testSecret)),
		PublicKeyFile: publicKeyFile(t, pub),
	})
	for _, token := range []string{hs256(t, claims("1")), sign(t, jwt.SigningMethodEdDSA, priv, claims("1"))} {
		if _, err := auth.Verify(token); err != nil {
			t.Errorf("verify: %v", err)
		}
	}
	// The secret never verifies an EdDSA token and the key never an HS256 one.
	if _, err := auth.Verify(sign(t, jwt.SigningMethodHS256, []byte(pub), claims("1"))); err == nil {
		t.Error("HS256 token signed with the public key verified")
	}
}

func TestAuthSubMustMatchUserID(t *testing.T) {
	e := newEnv(t, httpapi.Config{Auth: hs256Auth(t)})
	for _, c := range []struct {
		name string
		sub  string
		body string
	}{
		{"other user", "2", event(set("user_id", 1))},
		{"other user as string", "2", event(set("user_id", "1"))},
		{"leading zero is another user", "1", event(set("user_id", "01"))},
		{"no sub", "", event(nil)},
		{"case differs", "Alice", event(set("user_id", "alice"))},
	} {
		t.Run(c.name, func(t *testing.T) {
			cl := claims(c.sub)
			if c.sub == "" {
				delete(cl, "sub")
			}
			before := e.count()
			r := postAuth(t, e.srv, "Bearer "+hs256(t, cl), c.body)
			expectRefused(t, e, r, before, http.StatusForbidden, httpapi.CodeForbidden)
			if r.header.Get("WWW-Authenticate") != "" {
				t.Errorf("403 with WWW-Authenticate %q", r.header.Get("WWW-Authenticate"))
			}
		})
	}
	// A player token may not use the game server's privilege through another claim value.
	cl := claims("2")
	cl["role"] = "admin"
	before := e.count()
	expectRefused(t, e, postAuth(t, e.srv, "Bearer "+hs256(t, cl), event(nil)), before, http.StatusForbidden, httpapi.CodeForbidden)
	// A non-string role is a malformed token.
	cl["role"] = []string{"game_server"}
	expectRefused(t, e, postAuth(t, e.srv, "Bearer "+hs256(t, cl), event(nil)), before, http.StatusUnauthorized, httpapi.CodeUnauthorized)
}

func TestAuthSubMatchesNumericAndStringUserID(t *testing.T) {
	e := newEnv(t, httpapi.Config{Auth: hs256Auth(t)})
	token := "Bearer " + hs256(t, claims("1"))
	for i, userID := range []any{1, "1"} {
		before := e.count()
		r := postAuth(t, e.srv, token, event(func(ev, _ map[string]any) {
			ev["user_id"] = userID
			ev["event_id"] = "sub-eq-" + strconv.Itoa(i)
		}))
		expectStored(t, e, r, before)
		if got := e.lastStored()["user_id"]; got != "1" {
			t.Fatalf("stored user_id %v", got)
		}
	}
	// A non-numeric sub works the same.
	before := e.count()
	r := postAuth(t, e.srv, "Bearer "+hs256(t, claims("spieler-ü")), event(func(ev, _ map[string]any) {
		ev["user_id"] = "spieler-ü"
		ev["event_id"] = "sub-eq-unicode"
	}))
	expectStored(t, e, r, before)
}

func TestAuthGameServerMayReportForAnyUser(t *testing.T) {
	e := newEnv(t, httpapi.Config{Auth: hs256Auth(t)})
	cl := claims("game-server-7")
	cl["role"] = httpapi.RoleGameServer
	token := "Bearer " + hs256(t, cl)
	for i, userID := range []any{1, "2", "someone-else", 0} {
		before := e.count()
		r := postAuth(t, e.srv, token, event(func(ev, _ map[string]any) {
			ev["user_id"] = userID
			ev["event_id"] = "gs-" + strconv.Itoa(i)
		}))
		expectStored(t, e, r, before)
	}
	// Without sub, too.
	delete(cl, "sub")
	before := e.count()
	expectStored(t, e, postAuth(t, e.srv, "Bearer "+hs256(t, cl), event(set("event_id", "gs-nosub"))), before)
	// A game server token still needs a valid signature and exp.
	delete(cl, "exp")
	before = e.count()
	expectRefused(t, e, postAuth(t, e.srv, "Bearer "+hs256(t, cl), event(nil)), before, http.StatusUnauthorized, httpapi.CodeUnauthorized)
}

func TestAuthGETRoutesStayPublic(t *testing.T) {
	e := newEnv(t, httpapi.Config{Auth: hs256Auth(t)})
	for _, path := range []string{httpapi.PathPopular + "?region=US", httpapi.PathHealthz, httpapi.PathReadyz, httpapi.PathMetrics} {
		r := do(t, e.srv, newRequest(http.MethodGet, path, "", ""))
		if r.status != http.StatusOK {
			t.Errorf("GET %s without a token: %d %s", path, r.status, r.body)
		}
	}
}

func TestNewAuthenticatorConfig(t *testing.T) {
	a, err := httpapi.NewAuthenticator(httpapi.AuthConfig{})
	if a != nil || err != nil {
		t.Fatalf("no files: %v, %v; want auth off (nil, nil)", a, err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	smallRSA, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	edPrivDER, _ := x509.MarshalPKCS8PrivateKey(edPriv)
	for name, cfg := range map[string]httpapi.AuthConfig{
		"missing secret file":     {SecretFile: filepath.Join(t.TempDir(), "nope")},
		"empty secret":            {SecretFile: writeFile(t, "s", nil)},
		"white space secret":      {SecretFile: writeFile(t, "s", []byte(" \n\t\n"))},
		"short secret":            {SecretFile: writeFile(t, "s", []byte("secret\n"))},
		"missing key file":        {PublicKeyFile: filepath.Join(t.TempDir(), "nope")},
		"not PEM":                 {PublicKeyFile: writeFile(t, "k", []byte("hello"))},
		"ECDSA key":               {PublicKeyFile: publicKeyFile(t, &ecKey.PublicKey)},
		"1024-bit RSA key":        {PublicKeyFile: publicKeyFile(t, &smallRSA.PublicKey)},
		"private key":             {PublicKeyFile: pemFile(t, "PRIVATE KEY", edPrivDER)},
		"corrupt public key":      {PublicKeyFile: pemFile(t, "PUBLIC KEY", []byte("garbage"))},
		"good secret but bad key": {SecretFile: writeFile(t, "s", []byte(testSecret)), PublicKeyFile: writeFile(t, "k", []byte("x"))},
	} {
		t.Run(name, func(t *testing.T) {
			a, err := httpapi.NewAuthenticator(cfg)
			if err == nil || a != nil {
				t.Fatalf("got %v, %v; want an error", a, err)
			}
			t.Log(err)
		})
	}
	// The secret is the file's bytes with surrounding white space trimmed.
	a = newAuth(t, httpapi.AuthConfig{SecretFile: writeFile(t, "s", []byte("\n  "+testSecret+" \r\n"))})
	if _, err := a.Verify(hs256(t, claims("1"))); err != nil {
		t.Fatalf("trimmed secret: %v", err)
	}
	if _, err := a.Verify(sign(t, jwt.SigningMethodHS256, []byte("  "+testSecret+" "), claims("1"))); err == nil {
		t.Fatal("a token signed with the untrimmed secret verified")
	}
}
