// Package schema holds the Postgres schema of the gamemodes archive as
// versioned goose migrations, and the analytics queries over it, both
// embedded in the binary.
//
// Tables: event (every accepted event once, keyed by event_id) and
// rejected_event (stream messages that are not valid events). Functions
// event_transitions and event_sessions replay the player state machine in
// SQL for the analytics queries.
package schema

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed migrations/*.sql
var embedded embed.FS

// Migrations is the directory of versioned migration files (NNNNN_name.sql).
var Migrations = mustSub(embedded, "migrations")

// Analytics queries. Each takes $1 from (timestamptz, inclusive), $2 to
// (timestamptz, exclusive) and $3 the player TTL (interval; a time.Duration
// with pgx); see the comment at the top of each file for its columns.
var (
	//go:embed queries/players_per_mode_region_hour.sql
	QueryPlayersPerModeRegionHour string
	//go:embed queries/mode_switches_per_hour.sql
	QueryModeSwitchesPerHour string
	//go:embed queries/session_lengths.sql
	QuerySessionLengths string
)

// Result says what Migrate did.
type Result struct {
	// From and To are the schema versions before and after.
	From, To int64
	// Applied lists the migration files applied, in order.
	Applied []string
}

// Migrate applies every pending migration to db (opened with the pgx
// database/sql driver, see Open). Concurrent runs from several processes
// are serialised by a Postgres advisory lock; a schema that is up to date
// is left alone.
func Migrate(ctx context.Context, db *sql.DB, logger *slog.Logger) (Result, error) {
	p, err := newProvider(db, logger)
	if err != nil {
		return Result{}, err
	}
	from, err := p.GetDBVersion(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("migrate: read schema version: %w", err)
	}
	results, err := p.Up(ctx)
	res := Result{From: from, To: from}
	for _, r := range results {
		if r.Error == nil && r.Source != nil {
			res.Applied = append(res.Applied, r.Source.Path)
			res.To = r.Source.Version
		}
	}
	if err != nil {
		return res, fmt.Errorf("migrate: %w", err)
	}
	return res, nil
}

// MigrateURL opens url, applies the pending migrations and closes the connection.
func MigrateURL(ctx context.Context, url string, logger *slog.Logger) (Result, error) {
	db, err := Open(url)
	if err != nil {
		return Result{}, err
	}
	defer db.Close()
	return Migrate(ctx, db, logger)
}

// Version returns the current schema version of db and the latest version
// this binary knows.
func Version(ctx context.Context, db *sql.DB) (current, latest int64, err error) {
	p, err := newProvider(db, nil)
	if err != nil {
		return 0, 0, err
	}
	return p.GetVersions(ctx)
}

// Open opens a database/sql handle on a Postgres URL with the pgx driver.
func Open(url string) (*sql.DB, error) {
	db, err := sql.Open("pgx", url)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	return db, nil
}

func newProvider(db *sql.DB, logger *slog.Logger) (*goose.Provider, error) {
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 300))
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	opts := []goose.ProviderOption{goose.WithSessionLocker(locker), goose.WithDisableGlobalRegistry(true)}
	if logger != nil {
		opts = append(opts, goose.WithSlog(logger), goose.WithVerbose(true))
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, Migrations, opts...)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	return p, nil
}

func mustSub(f fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(f, dir)
	if err != nil {
		panic(errors.Join(fmt.Errorf("embedded %s", dir), err))
	}
	return sub
}
