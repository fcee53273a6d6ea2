package schema_test

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/adapters/postgres/pgtest"
	schema "github.com/gamemodes/gamemodes/sql"
	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

const latestVersion = 6

// migrated returns a connection to a fresh schema with the migrations applied.
func migrated(t *testing.T) *pgx.Conn {
	t.Helper()
	url := pgtest.Schema(t)
	ctx := context.Background()
	if _, err := schema.MigrateURL(ctx, url, nil); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestMigrateTwice(t *testing.T) {
	url := pgtest.Schema(t)
	ctx := context.Background()
	db, err := schema.Open(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })

	if cur, latest, err := schema.Version(ctx, db); err != nil || cur != 0 || latest != latestVersion {
		t.Fatalf("version of an empty database: %d %d %v", cur, latest, err)
	}
	res, err := schema.Migrate(ctx, db, nil)
	if err != nil {
		t.Fatalf("first migrate: %v", err)
	}
	want := []string{"00001_events.sql", "00002_rejected_event.sql", "00003_state_functions.sql", "00004_heartbeat_events.sql", "00005_archive_checkpoint.sql", "00006_event_comment.sql"}
	if res.From != 0 || res.To != latestVersion || len(res.Applied) != len(want) {
		t.Fatalf("first migrate: %+v, want 0 -> %d applying %v", res, latestVersion, want)
	}
	for i, w := range want {
		if res.Applied[i] != w {
			t.Fatalf("applied[%d] = %q, want %q", i, res.Applied[i], w)
		}
	}

	res, err = schema.Migrate(ctx, db, nil)
	if err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	if res.From != latestVersion || res.To != latestVersion || len(res.Applied) != 0 {
		t.Fatalf("second migrate: %+v, want nothing applied at version %d", res, latestVersion)
	}
	cur, latest, err := schema.Version(ctx, db)
	if err != nil || cur != latestVersion || latest != latestVersion {
		t.Fatalf("version: %d %d %v", cur, latest, err)
	}

	// The seed's columns are there with the seed's types.
	rows, err := db.QueryContext(ctx, `SELECT column_name, data_type FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = 'event' ORDER BY ordinal_position`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := map[string]string{}
	for rows.Next() {
		var c, ty string
		if err := rows.Scan(&c, &ty); err != nil {
			t.Fatal(err)
		}
		got[c] = ty
	}
	for c, ty := range map[string]string{
		"event_id": "text", "user_id": "text", "event_type": "text", "event_payload": "jsonb",
		"timestamp": "timestamp without time zone", "stream_seq": "bigint", "partition": "integer",
		"region": "text", "game_mode": "integer", "received_at": "timestamp with time zone",
		"archived_at": "timestamp with time zone",
	} {
		if got[c] != ty {
			t.Errorf("event.%s: type %q, want %q", c, got[c], ty)
		}
	}
}

func TestMigrateConcurrently(t *testing.T) {
	url := pgtest.Schema(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = schema.MigrateURL(ctx, url, nil)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("migrate %d: %v", i, err)
		}
	}
	db, err := schema.Open(url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if cur, _, err := schema.Version(ctx, db); err != nil || cur != latestVersion {
		t.Fatalf("version %d, %v", cur, err)
	}
}

func TestQueriesParse(t *testing.T) {
	conn := migrated(t)
	ctx := context.Background()
	for name, q := range map[string]string{
		"players":  schema.QueryPlayersPerModeRegionHour,
		"switches": schema.QueryModeSwitchesPerHour,
		"sessions": schema.QuerySessionLengths,
	} {
		rows, err := conn.Query(ctx, q, time.Now().Add(-time.Hour), time.Now(), time.Hour)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		n := 0
		for rows.Next() {
			n++
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if n != 0 {
			t.Fatalf("%s on an empty table: %d rows", name, n)
		}
	}
}
