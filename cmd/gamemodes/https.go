package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/gamemodes/gamemodes/adapters/httpapi"
	"github.com/gamemodes/gamemodes/cmd/gamemodes/config"
	"go.uber.org/fx"
)

// checkHTTPS refuses --tls-cert/--tls-key that cannot serve, naming them.
func checkHTTPS(cfg config.Config) error {
	if cfg.TLSCert == "" && cfg.TLSKey == "" {
		return nil
	}
	if cfg.TLSCert == "" || cfg.TLSKey == "" {
		return fmt.Errorf("--tls-cert and --tls-key: give both the certificate and its key to serve HTTPS")
	}
	if _, err := httpapi.LoadCertificate(cfg.TLSCert, cfg.TLSKey); err != nil {
		return fmt.Errorf("--tls-cert %s, --tls-key %s: cannot serve HTTPS with them: %w", cfg.TLSCert, cfg.TLSKey, err)
	}
	return nil
}

// reloadHTTPSOnHangup reloads the edge's certificate on SIGHUP (it is also
// reloaded when its files change).
var reloadHTTPSOnHangup = fx.Invoke(func(lc fx.Lifecycle, s *httpapi.Server, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	done := make(chan struct{})
	lc.Append(fx.Hook{
		OnStart: func(context.Context) error {
			signal.Notify(hup, syscall.SIGHUP)
			go func() {
				for {
					select {
					case <-hup:
						if err := s.ReloadTLS(); err != nil {
							log.Error("SIGHUP: TLS certificate not reloaded; serving the previous one", "err", err)
						}
					case <-done:
						return
					}
				}
			}()
			return nil
		},
		OnStop: func(context.Context) error {
			signal.Stop(hup)
			close(done)
			return nil
		},
	})
})
