package httpapi

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"
)

// ErrListen is wrapped by the error of a Listen that could not bind its
// address.
var ErrListen = errors.New("httpapi: cannot listen")

// Listen binds addr and serves in the background. It returns once the
// listener is bound, or the bind error (for example a busy port), which
// wraps ErrListen.
func (s *Server) Listen(addr string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return errors.New("httpapi: already listening on " + s.ln.Addr().String())
	}
	if s.stopping.Load() {
		return errors.New("httpapi: server is shut down")
	}
	var certs *certReloader
	if s.cfg.TLSCertFile != "" || s.cfg.TLSKeyFile != "" {
		var err error
		if certs, err = newCertReloader(s.cfg.TLSCertFile, s.cfg.TLSKeyFile, s.log); err != nil {
			return fmt.Errorf("httpapi: %w", err)
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%w on %s: %w", ErrListen, addr, err)
	}
	if certs != nil {
		s.certs = certs
		ln = httpsListener{Listener: ln, config: &tls.Config{
			MinVersion: tls.VersionTLS12, GetCertificate: certs.getCertificate, NextProtos: []string{"http/1.1"},
		}}
		every := s.cfg.TLSReloadInterval
		if every <= 0 {
			every = DefaultTLSReloadInterval
		}
		go certs.watch(s.base, every)
	}
	s.ln = ln
	s.served = make(chan struct{})
	go func(served chan struct{}) {
		defer close(served)
		if err := s.app.Listener(ln); err != nil && !s.stopping.Load() {
			s.log.Error("http server stopped", "addr", ln.Addr().String(), "err", err)
		}
	}(s.served)
	return nil
}

// ReloadTLS loads the TLS certificate and key files again now (on SIGHUP,
// say); new connections get the new certificate. It fails,
// keeping the previous certificate, when the files do not load, and does
// nothing on a plain HTTP server.
func (s *Server) ReloadTLS() error {
	s.mu.Lock()
	certs := s.certs
	s.mu.Unlock()
	if certs == nil {
		return nil
	}
	return certs.reload(true)
}

// Addr returns the bound address (useful after listening on port 0), or ""
// before Listen and after Shutdown.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Shutdown stops accepting connections and waits for in-flight requests to
// finish, or for ctx to end. It is safe to call when not listening and more
// than once; a shut down Server cannot listen again.
//
// With Config.DrainDelay it first drains: /readyz answers 503 draining at
// once and every answer carries Connection: close, while the listener goes
// on serving for DrainDelay (or until ctx ends), so a load balancer takes the
// edge out of rotation before any connection is refused.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	listening := s.ln != nil
	s.mu.Unlock()
	if listening && !s.draining.Swap(true) && s.cfg.DrainDelay > 0 {
		s.log.Info("draining: /readyz answers 503 while the listener serves on", "drain_delay", s.cfg.DrainDelay)
		t := time.NewTimer(s.cfg.DrainDelay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	s.stopping.Store(true)
	s.cancelBase() // reads waiting for a consistency token answer at once
	s.mu.Lock()
	ln, served := s.ln, s.served
	s.ln = nil
	s.mu.Unlock()
	if ln == nil {
		return nil
	}
	// Open lobby streams never finish by themselves: end them first.
	s.openStreams.shutdown()
	err := s.app.ShutdownWithContext(ctx)
	// If the serve goroutine had not registered the listener yet, the server
	// did not close it: closing it here makes that goroutine return at once.
	_ = ln.Close()
	select {
	case <-served:
	case <-ctx.Done():
		if err == nil {
			err = ctx.Err()
		}
	}
	if err != nil {
		return fmt.Errorf("httpapi: shutdown: %w", err)
	}
	return nil
}
