// Package pgtest gives tests a real Postgres: one fresh database per test
// package (created on first use, dropped when the package's tests end) and a
// fresh schema per test inside it, plus a TCP proxy that can cut the
// connections to simulate an outage.
//
// The server is GAMEMODES_TEST_DATABASE_URL, by default
// postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable. Where no
// Postgres answers, tests are skipped with a message, unless
// GAMEMODES_REQUIRE_POSTGRES=1, where they fail.
//
// Use it from TestMain so the database is dropped at the end:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
//	func TestX(t *testing.T) {
//		url := pgtest.Schema(t) // migrate url, then use it
//	}
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultURL is the server tests use when GAMEMODES_TEST_DATABASE_URL is unset.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

var (
	mu      sync.Mutex
	dbURL   string // the package database, once created
	dbName  string
	failure error // why the package database could not be created
	tried   bool
)

// ServerURL returns the configured administrative URL of the test server.
func ServerURL() string {
	if u := os.Getenv("GAMEMODES_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultURL
}

// Required reports whether tests must fail, not skip, without Postgres.
func Required() bool { return os.Getenv("GAMEMODES_REQUIRE_POSTGRES") == "1" }

// Main runs the tests of a package and then drops the package database,
// if one was created. Call it from TestMain and pass its result to os.Exit.
func Main(m *testing.M) int {
	code := m.Run()
	mu.Lock()
	name := dbName
	mu.Unlock()
	if name != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := exec(ctx, ServerURL(), "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: drop database %s: %v\n", name, err)
		}
	}
	return code
}

// Database returns the URL of the test package's own database, creating it
// on first use. It skips (or fails, see Required) the test when no Postgres
// answers.
func Database(t testing.TB) string {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if !tried {
		tried = true
		dbURL, dbName, failure = createDatabase()
	}
	if failure != nil {
		msg := fmt.Sprintf("no Postgres for this test at %s (set GAMEMODES_TEST_DATABASE_URL; GAMEMODES_REQUIRE_POSTGRES=1 makes this a failure): %v", redact(ServerURL()), failure)
		if Required() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return dbURL
}

// Schema creates a fresh schema in the package database and returns a URL
// whose connections use it (search_path), so each test starts empty. The
// schema is dropped when the test ends; close pools opened on the URL in a
// t.Cleanup registered after this call (cleanups run last-in first-out).
func Schema(t testing.TB) string {
	t.Helper()
	base := Database(t)
	name := "t_" + sanitize(t.Name(), 40) + "_" + randomHex(4)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := exec(ctx, base, "CREATE SCHEMA "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := exec(ctx, base, "DROP SCHEMA "+pgx.Identifier{name}.Sanitize()+" CASCADE"); err != nil {
			t.Logf("pgtest: drop schema %s: %v", name, err)
		}
	})
	return WithParam(base, "search_path", name)
}

// WithParam returns u with query parameter key set to value.
func WithParam(u, key, value string) string {
	parsed, err := url.Parse(u)
	if err != nil {
		return u
	}
	q := parsed.Query()
	q.Set(key, value)
	parsed.RawQuery = q.Encode()
	return parsed.String()
}

// WithHost returns u pointing at host:port (for example a Proxy's address).
func WithHost(u, hostport string) string {
	parsed, err := url.Parse(u)
	if err != nil {
		return u
	}
	parsed.Host = hostport
	return parsed.String()
}

func createDatabase() (string, string, error) {
	server := ServerURL()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	wd, _ := os.Getwd()
	name := "gamemodes_test_" + sanitize(filepath.Base(wd), 20) + "_" + randomHex(4)
	if err := exec(ctx, server, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", "", err
	}
	parsed, err := url.Parse(server)
	if err != nil {
		return "", name, err
	}
	parsed.Path = "/" + name
	return parsed.String(), name, nil
}

func exec(ctx context.Context, u, sql string) error {
	cfg, err := pgx.ParseConfig(u)
	if err != nil {
		return err
	}
	if cfg.ConnectTimeout == 0 || cfg.ConnectTimeout > 5*time.Second {
		cfg.ConnectTimeout = 5 * time.Second
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

var nonIdent = regexp.MustCompile(`[^a-z0-9_]+`)

func sanitize(s string, n int) string {
	s = nonIdent.ReplaceAllString(strings.ToLower(s), "_")
	if len(s) > n {
		s = s[:n]
	}
	return s
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func redact(u string) string {
	parsed, err := url.Parse(u)
	if err != nil {
		return "(unparsable URL)"
	}
	return parsed.Redacted()
}
