package httpapi_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/adapters/httpapi"
	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/modules/lobby"
	"github.com/gamemodes/gamemodes/nats/secrets"
)

// httpsFixture is a server serving HTTPS with a certificate of ca written
// to cert and key.
type httpsFixture struct {
	ca         *secrets.CA
	cert, key  string
	srv        *httpapi.Server
	client     *http.Client
	url, plain string
}

func newHTTPSFixture(t *testing.T, reload time.Duration) *httpsFixture {
	t.Helper()
	ca, err := secrets.NewCA("edge test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f := &httpsFixture{ca: ca, cert: filepath.Join(dir, "edge.pem"), key: filepath.Join(dir, "edge-key.pem")}
	f.issue(t, "edge-1")
	view := lobby.NewView(domain.DefaultCatalog(), nil)
	view.MarkSynced()
	f.srv = httpapi.New(httpapi.Config{TLSCertFile: f.cert, TLSKeyFile: f.key, TLSReloadInterval: reload},
		httpapi.Deps{Events: unavailable{}, Lobby: view})
	if err := f.srv.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.srv.Shutdown(context.Background()) })
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}
	f.client = &http.Client{Transport: tr, Timeout: 5 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)
	f.url = "https://" + f.srv.Addr()
	f.plain = "http://" + f.srv.Addr()
	return f
}

// issue writes a new certificate for 127.0.0.1 named cn, replacing the
// files at once (a rename), as a renewal tool does.
func (f *httpsFixture) issue(t *testing.T, cn string) {
	t.Helper()
	cert, key, err := f.ca.Issue(secrets.CertSpec{CommonName: cn, Hosts: []string{"127.0.0.1"}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	for path, b := range map[string][]byte{f.key: key, f.cert: cert} {
		tmp := path + ".new"
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
}

// served returns the common name of the certificate the server presents.
func (f *httpsFixture) served(t *testing.T) string {
	t.Helper()
	resp, err := f.client.Get(f.url + httpapi.PathHealthz)
	if err != nil {
		t.Fatalf("GET over HTTPS: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil {
		t.Fatalf("GET over HTTPS: status %d, TLS %v", resp.StatusCode, resp.TLS != nil)
	}
	return resp.TLS.PeerCertificates[0].Subject.CommonName
}

func (f *httpsFixture) waitServed(t *testing.T, cn string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for got := f.served(t); got != cn; got = f.served(t) {
		if time.Now().After(deadline) {
			t.Fatalf("serving %s, want %s", got, cn)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestHTTPSServesTheAPI(t *testing.T) {
	f := newHTTPSFixture(t, time.Hour)
	if cn := f.served(t); cn != "edge-1" {
		t.Fatalf("served %s", cn)
	}
	resp, err := f.client.Get(f.url + httpapi.PathPopular + "?region=US")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != `{"region":"US","game_modes":[]}` {
		t.Fatalf("lobby over HTTPS: %d %s", resp.StatusCode, body)
	}
}

// TestPlainHTTPToTheHTTPSPort: a plain HTTP client gets a 400 JSON answer
// saying the port serves HTTPS, not a reset connection.
func TestPlainHTTPToTheHTTPSPort(t *testing.T) {
	f := newHTTPSFixture(t, time.Hour)
	for _, req := range []func() (*http.Response, error){
		func() (*http.Response, error) { return http.Get(f.plain + httpapi.PathHealthz) },
		func() (*http.Response, error) {
			return http.Post(f.plain+httpapi.PathEvent, "application/json", strings.NewReader(`{}`))
		},
	} {
		resp, err := req()
		if err != nil {
			t.Fatalf("plain HTTP to the HTTPS port: %v, want a 400 answer", err)
		}
		var body httpapi.ErrorBody
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != 400 || err != nil || body.Error.Code != httpapi.CodeHTTPSRequired || !strings.Contains(body.Error.Message, "HTTPS") {
			t.Fatalf("plain HTTP: status %d body %+v err %v", resp.StatusCode, body, err)
		}
	}
	// The server still serves HTTPS afterwards.
	if cn := f.served(t); cn != "edge-1" {
		t.Fatalf("served %s", cn)
	}
}

// TestHTTPSCertificateRenewedWithoutRestart: new files are served once
// the server sees them changed, and at once on ReloadTLS; a renewal that
// does not load keeps the previous certificate.
func TestHTTPSCertificateRenewedWithoutRestart(t *testing.T) {
	f := newHTTPSFixture(t, 50*time.Millisecond)
	f.issue(t, "edge-2")
	f.waitServed(t, "edge-2")

	// Half a renewal: a certificate whose key is not the key file's.
	other, _, err := f.ca.Issue(secrets.CertSpec{CommonName: "edge-broken", Hosts: []string{"127.0.0.1"}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.cert, other, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.srv.ReloadTLS(); err == nil || !strings.Contains(err.Error(), "private key does not match") {
		t.Fatalf("ReloadTLS of a mismatched pair: %v", err)
	}
	if cn := f.served(t); cn != "edge-2" {
		t.Fatalf("after a broken renewal serving %s, want the previous edge-2", cn)
	}
	f.issue(t, "edge-3")
	f.waitServed(t, "edge-3")
}

func TestHTTPSReloadOnDemand(t *testing.T) {
	f := newHTTPSFixture(t, time.Hour) // no polling within the test
	f.issue(t, "edge-2")
	if cn := f.served(t); cn != "edge-1" {
		t.Fatalf("served %s before the reload", cn)
	}
	if err := f.srv.ReloadTLS(); err != nil {
		t.Fatal(err)
	}
	if cn := f.served(t); cn != "edge-2" {
		t.Fatalf("served %s after ReloadTLS, want edge-2", cn)
	}
}

func TestHTTPSRefusesAnExpiredCertificateAtStart(t *testing.T) {
	ca, err := secrets.NewCA("edge test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := ca.Issue(secrets.CertSpec{CommonName: "old", Hosts: []string{"127.0.0.1"}, Server: true,
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	_ = os.WriteFile(certFile, cert, 0o600)
	_ = os.WriteFile(keyFile, key, 0o600)
	srv := httpapi.New(httpapi.Config{TLSCertFile: certFile, TLSKeyFile: keyFile}, httpapi.Deps{})
	if err := srv.Listen("127.0.0.1:0"); err == nil || !strings.Contains(err.Error(), "not now") {
		t.Fatalf("Listen with an expired certificate: %v", err)
	}
}
