// Command gamemodes serves live game-mode popularity per region: the HTTP
// edge, the partition workers and the archiver, with an embedded NATS server
// by default.
//
// Usage:
//
//	gamemodes [serve] [flags]   run the roles (default command)
//	gamemodes migrate [flags]   apply the database migrations (--postgres-url)
//	gamemodes rebuild [flags]   recreate the live state from the archive
//	gamemodes help              list the flags
//
// Every flag can also be set as an environment variable GAMEMODES_<FLAG>
// (dashes become underscores), e.g. GAMEMODES_HTTP_ADDR=:9090.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/gamemodes/gamemodes/adapters/httpapi"
	"github.com/gamemodes/gamemodes/cmd/gamemodes/config"
	"go.uber.org/dig"
	"go.uber.org/fx"
	"golang.org/x/term"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(args, stderr)
	case "migrate":
		return migrate(args, stderr)
	case "rebuild":
		return runRebuild(args, stdout, stderr)
	case "help":
		var c config.Config
		fs, _ := config.NewFlagSet("serve", &c)
		fs.SetOutput(stderr)
		fmt.Fprintln(stderr, "usage: gamemodes [serve|migrate|rebuild] [flags]   (rebuild adds --at, --window, --force)")
		fs.PrintDefaults()
		return 0
	default:
		fmt.Fprintf(stderr, "gamemodes: unknown command %q (want serve, migrate, rebuild or help)\n", cmd)
		return 2
	}
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	jsonOut := cfg.LogFormat == "json"
	if cfg.LogFormat == "auto" {
		f, ok := w.(*os.File)
		jsonOut = !ok || !term.IsTerminal(int(f.Fd()))
	}
	if jsonOut {
		return slog.New(slog.NewJSONHandler(w, opts)).With("instance", cfg.InstanceID)
	}
	return slog.New(slog.NewTextHandler(w, opts)).With("instance", cfg.InstanceID)
}

func serve(args []string, stderr io.Writer) int {
	cfg, err := config.Parse("serve", args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "gamemodes: %v\n", err)
		return 2
	}
	log := newLogger(cfg, stderr)
	slog.SetDefault(log)
	if err := loadSecretFiles(&cfg); err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	tuneRuntime()
	servePprof(cfg.PprofAddr, log)
	// Stopping drains the HTTP listener first (--drain-delay), then every role.
	stopTimeout := 20*time.Second + cfg.DrainDelay
	app := fx.New(appOptions(cfg, log), fx.NopLogger, fx.StartTimeout(60*time.Second), fx.StopTimeout(stopTimeout))
	if err := app.Err(); err != nil {
		log.Error("cannot start", "err", startFailure(cfg, err))
		return 1
	}
	startCtx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := app.Start(startCtx); err != nil {
		log.Error("cannot start", "err", startFailure(cfg, err))
		stopCtx, cancelStop := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancelStop()
		_ = app.Stop(stopCtx)
		return 1
	}
	log.Info("gamemodes started", "roles", cfg.Roles, "http_addr", cfg.HTTPAddr)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	code := 0
	select {
	case s := <-sig:
		log.Info("shutting down", "signal", s.String())
	case s := <-app.Wait(): // the NATS connection ended for good (logged)
		code = s.ExitCode
	}
	stopCtx, cancelStop := context.WithTimeout(context.Background(), stopTimeout)
	defer cancelStop()
	if err := app.Stop(stopCtx); err != nil {
		log.Error("shutdown incomplete", "err", err)
		return 1
	}
	log.Info("stopped")
	return code
}

// startFailure is the error a constructor or start hook returned, without
// fx's and dig's account of where (their text names Go functions, not
// flags), so that the line leads with the cause: the errors of this program
// name the flag at fault, and those of the HTTP edge get theirs here.
func startFailure(cfg config.Config, err error) error {
	err = dig.RootCause(err)
	var ce *httpapi.ConfigError
	switch {
	case errors.Is(err, httpapi.ErrListen):
		return fmt.Errorf("--http-addr %s: %w", cfg.HTTPAddr, err)
	case errors.As(err, &ce) && httpFlags[ce.Field] != "":
		return fmt.Errorf("%s: %w", httpFlags[ce.Field], err)
	}
	return err
}

// httpFlags are the flags of the httpapi.Config fields that
// Config.Validate checks.
var httpFlags = map[string]string{
	"UserRateLimit": "--rate-limit-user", "UserRateBurst": "--rate-burst-user",
	"AddrRateLimit": "--rate-limit-addr", "AddrRateBurst": "--rate-burst-addr",
	"ConsistencyWait": "--consistency-wait", "TrustedProxies": "--trusted-proxies",
}
