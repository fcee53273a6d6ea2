package httpapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultTLSReloadInterval is how often the certificate and key files are
// checked for a change (their size and modification time).
const DefaultTLSReloadInterval = time.Second

// LoadCertificate reads a PEM certificate (chain) and its key and checks
// that the certificate is valid now.
func LoadCertificate(certFile, keyFile string) (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, err
		}
		cert.Leaf = leaf
	}
	if now := time.Now(); now.After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
		return nil, fmt.Errorf("the certificate is valid from %s to %s, not now", leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return &cert, nil
}

// certReloader serves the current certificate of two files and swaps in a
// new one when they change (checked every interval, or at once by Reload),
// so that a renewal needs no restart. A pair that does not load (a renewal
// half written: the certificate of a new key with the old key) keeps the
// previous certificate and is tried again at the next check.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger
	cur               atomic.Pointer[tls.Certificate]

	mu     sync.Mutex
	stamp  string // size and modification time of both files when last loaded
	failed string // the stamp whose load failed (logged once)
}

func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, log: log}
	if err := r.reload(true); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *certReloader) fileStamp() string {
	var s string
	for _, f := range []string{r.certFile, r.keyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return "missing " + f
		}
		s += fmt.Sprintf("%d:%d;", fi.Size(), fi.ModTime().UnixNano())
	}
	return s
}

// reload loads the files when they changed since the last load (or always
// with force); a failed load is not tried again before the files change
// (unless forced).
func (r *certReloader) reload(force bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	stamp := r.fileStamp()
	if !force && (stamp == r.stamp || stamp == r.failed) {
		return nil
	}
	cert, err := LoadCertificate(r.certFile, r.keyFile)
	if err != nil {
		r.failed = stamp
		return fmt.Errorf("TLS certificate %s, key %s: %w", r.certFile, r.keyFile, err)
	}
	first := r.cur.Load() == nil
	r.cur.Store(cert)
	r.stamp, r.failed = stamp, ""
	if !first {
		r.log.Info("TLS certificate reloaded", "cert", r.certFile, "subject", cert.Leaf.Subject.String(), "not_after", cert.Leaf.NotAfter)
	}
	return nil
}

func (r *certReloader) watch(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := r.reload(false); err != nil { // once per change of the files
				r.log.Error("TLS certificate not reloaded; serving the previous one", "err", err)
			}
		}
	}
}

func (r *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cur.Load(), nil
}

// httpsListener does the TLS handshake of every accepted connection on its
// first read, and answers a client speaking plain HTTP to it with a 400
// JSON error saying so (as net/http does) instead of closing silently.
type httpsListener struct {
	net.Listener
	config *tls.Config
}

func (l httpsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &httpsConn{Conn: tls.Server(c, l.config)}, nil
}

// httpsConn is a *tls.Conn (fasthttp sees a TLS connection and calls
// Handshake first) whose handshake answers a plain HTTP request.
type httpsConn struct {
	*tls.Conn
	once sync.Once
	err  error
}

const plainHTTPAnswer = "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"

// Handshake runs the TLS handshake once; when the client's first bytes are
// a plain HTTP request it writes the 400 answer on the raw connection.
func (c *httpsConn) Handshake() error {
	c.once.Do(func() {
		err := c.Conn.Handshake()
		var rh tls.RecordHeaderError
		if errors.As(err, &rh) && rh.Conn != nil && looksLikeHTTP(rh.RecordHeader[:]) {
			body := fmt.Sprintf(`{"error":{"code":%q,"message":"this port serves HTTPS: the client sent a plain HTTP request (use https://)"}}`, CodeHTTPSRequired)
			_ = rh.Conn.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = fmt.Fprintf(rh.Conn, plainHTTPAnswer, len(body), body)
		}
		c.err = err
	})
	return c.err
}

func (c *httpsConn) Read(b []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

func looksLikeHTTP(h []byte) bool {
	for _, m := range []string{"GET /", "HEAD ", "POST ", "PUT /", "DELET", "OPTIO", "PATCH", "CONNE", "TRACE"} {
		if string(h) == m {
			return true
		}
	}
	return false
}
