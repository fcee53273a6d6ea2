package main

import (
	"io"
	"log/slog"
	"testing"

	"github.com/gamemodes/gamemodes/cmd/gamemodes/config"
	"go.uber.org/fx"
)

func TestAppGraphIsValidForEveryRoleSet(t *testing.T) {
	for _, roles := range []string{"all", "edge", "worker", "archiver", "edge,worker", "worker,archiver"} {
		for _, pg := range []string{"", "postgres://postgres@127.0.0.1:1/none"} {
			cfg, err := config.Parse("serve", []string{"--roles", roles, "--postgres-url", pg})
			if err != nil {
				t.Fatalf("%s: %v", roles, err)
			}
			if err := fx.ValidateApp(appOptions(cfg, slog.New(slog.NewTextHandler(io.Discard, nil))), fx.NopLogger); err != nil {
				t.Errorf("roles %s, postgres %q: %v", roles, pg, err)
			}
		}
	}
}

func TestConfigFromEnvironment(t *testing.T) {
	t.Setenv("GAMEMODES_HTTP_ADDR", "127.0.0.1:9999")
	t.Setenv("GAMEMODES_PLAYER_TTL", "90s")
	t.Setenv("GAMEMODES_REGIONS", "US,EU")
	t.Setenv("DATABASE_URL", "postgres://x@y/z")
	cfg, err := config.Parse("serve", nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTPAddr != "127.0.0.1:9999" || cfg.PlayerTTL.Seconds() != 90 || len(cfg.Regions) != 2 || cfg.PostgresURL != "postgres://x@y/z" {
		t.Fatalf("config from env: %+v", cfg)
	}
	if !cfg.Has(config.RoleEdge) || !cfg.Has(config.RoleWorker) || !cfg.Has(config.RoleArchiver) {
		t.Fatalf("default roles: %v", cfg.Roles)
	}
}
