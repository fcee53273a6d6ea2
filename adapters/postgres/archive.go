// Package postgres adapts gamemodes to Postgres through pgx: the connection
// pool and the archive store of the archiver (tables event, rejected_event
// and archive_checkpoint of the migrations in sql/).
package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gamemodes/gamemodes/modules/archive"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Open returns a connection pool on url (a postgres:// URL or key=value
// string). It does not connect yet: a Postgres that is down at start only
// fails the first use. Connection attempts time out after 5 s unless url
// sets connect_timeout.
func Open(ctx context.Context, url string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres url: %w", err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	cfg.MaxConnIdleTime = time.Minute
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres pool: %w", err)
	}
	return pool, nil
}

// Archive is the archiver's store: the active archiver claims it (a
// session-level advisory lock on a connection of its own) and writes
// batches of events and rejected messages on that connection, one
// transaction each, idempotently, each moving the checkpoint.
type Archive struct {
	pool *pgxpool.Pool
}

var _ archive.Store = (*Archive)(nil)

// NewArchive returns an archive store on pool.
func NewArchive(pool *pgxpool.Pool) *Archive { return &Archive{pool: pool} }

// ArchiveLockClass is the first key of the advisory lock the active
// archiver holds for as long as its claim ("gmar" in ASCII); the second is
// hashtext(current_schema()), so the lock belongs to the archive's schema
// in its database: pg_advisory_lock(ArchiveLockClass, hashtext(current_schema())).
const ArchiveLockClass int32 = 0x676d_6172

// checkpointName is the row of archive_checkpoint of the events stream.
const checkpointName = "events"

// claimKeepalive makes Postgres notice within about 25 s that the claim's
// client is gone without closing its connection (a network cut, a frozen
// machine), so that its lock is released and a standby takes over; a
// killed process closes its connection and releases the lock at once.
const claimKeepalive = `SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 3`

// Claim takes a connection out of the pool and waits on it for the
// archive's advisory lock: while another archiver holds it, this one is a
// standby. The lock lives as long as the connection: Release closes it.
func (a *Archive) Claim(ctx context.Context) (archive.Claim, error) {
	pc, err := a.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("claim: connect: %w", err)
	}
	conn := pc.Hijack()
	fail := func(what string, err error) (archive.Claim, error) {
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
		return nil, fmt.Errorf("claim: %s: %w", what, err)
	}
	if _, err := conn.Exec(ctx, claimKeepalive); err != nil {
		return fail("keepalive settings", err)
	}
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1, hashtext(current_schema()))`, ArchiveLockClass); err != nil {
		return fail("advisory lock", err)
	}
	return &claim{conn: conn}, nil
}

// claim is a held archive: its connection holds the advisory lock.
type claim struct {
	conn *pgx.Conn
}

// Checkpoint reads the events stream's row of archive_checkpoint.
func (c *claim) Checkpoint(ctx context.Context) (archive.Checkpoint, bool, error) {
	var cp archive.Checkpoint
	var seq int64
	err := c.conn.QueryRow(ctx, `SELECT stream_id, last_seq FROM archive_checkpoint WHERE name = $1`, checkpointName).Scan(&cp.Stream, &seq)
	if errors.Is(err, pgx.ErrNoRows) {
		return archive.Checkpoint{}, false, nil
	}
	if err != nil {
		return cp, false, fmt.Errorf("read checkpoint: %w", err)
	}
	cp.Seq = uint64(seq)
	return cp, true, nil
}

// Release closes the claim's connection, which releases the lock.
func (c *claim) Release() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = c.conn.Close(ctx)
}

const insertCheckpoint = `INSERT INTO archive_checkpoint (name, stream_id, last_seq) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING`

const moveCheckpoint = `UPDATE archive_checkpoint SET stream_id = $2, last_seq = $3, updated_at = now()
WHERE name = $1 AND stream_id = $4 AND last_seq = $5`

// WriteBatch archives events and rejected messages and moves the
// checkpoint in one transaction on the claim's connection: events are
// copied into a staging table and inserted with ON CONFLICT (event_id)
// (the first copy in stream order wins), rejected ones with ON CONFLICT DO
// NOTHING on their stream sequence and time, and the checkpoint row is
// created (from the zero Checkpoint) or moved only if it still is from.
func (c *claim) WriteBatch(ctx context.Context, events []archive.ArchivedEvent, rejected []archive.RejectedEvent, from, to archive.Checkpoint) error {
	if to.Seq > 1<<63-1 || from.Seq > 1<<63-1 {
		return errors.New("archive batch: stream sequence out of range")
	}
	err := pgx.BeginFunc(ctx, c.conn, func(tx pgx.Tx) error {
		if err := writeRows(ctx, tx, events, rejected); err != nil {
			return err
		}
		var tag pgconn.CommandTag
		var err error
		if from == (archive.Checkpoint{}) {
			tag, err = tx.Exec(ctx, insertCheckpoint, checkpointName, to.Stream, int64(to.Seq))
		} else {
			tag, err = tx.Exec(ctx, moveCheckpoint, checkpointName, to.Stream, int64(to.Seq), from.Stream, int64(from.Seq))
		}
		if err != nil {
			return fmt.Errorf("move checkpoint: %w", err)
		}
		if tag.RowsAffected() != 1 {
			return fmt.Errorf("from sequence %d: %w", from.Seq, archive.ErrCheckpointMoved)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("archive batch of %d events, %d rejected up to sequence %d: %w", len(events), len(rejected), to.Seq, err)
	}
	return nil
}

// stageTable is a session-local staging table: COPY fills it, one INSERT
// moves its rows into event, and the commit empties it.
const stageTable = "gamemodes_archive_event_stage"

var stageColumns = []string{
	"event_id", "user_id", "event_type", "event_payload", "timestamp",
	"stream_seq", "partition", "region", "game_mode", "received_at",
}

const createStage = `CREATE TEMP TABLE IF NOT EXISTS ` + stageTable + ` (
	event_id      TEXT,
	user_id       TEXT,
	event_type    TEXT,
	event_payload JSONB,
	timestamp     TIMESTAMP,
	stream_seq    BIGINT,
	partition     INT,
	region        TEXT,
	game_mode     INT,
	received_at   TIMESTAMPTZ
) ON COMMIT DELETE ROWS`

// The first occurrence in stream order wins when one event_id was stored
// twice (under different Nats-Msg-Ids), whatever the order the copies are
// archived in: after a crash a redelivered earlier copy can come after a
// later one. Rewriting the same row changes nothing.
const moveStage = `INSERT INTO event AS e (event_id, user_id, event_type, event_payload, timestamp,
	stream_seq, partition, region, game_mode, received_at)
SELECT DISTINCT ON (event_id) event_id, user_id, event_type, event_payload, timestamp,
	stream_seq, partition, region, game_mode, received_at
FROM ` + stageTable + `
ORDER BY event_id, received_at, stream_seq
ON CONFLICT (event_id) DO UPDATE SET
	user_id = excluded.user_id, event_type = excluded.event_type, event_payload = excluded.event_payload,
	timestamp = excluded.timestamp, stream_seq = excluded.stream_seq, partition = excluded.partition,
	region = excluded.region, game_mode = excluded.game_mode, received_at = excluded.received_at,
	archived_at = now()
WHERE (excluded.received_at, excluded.stream_seq) < (e.received_at, e.stream_seq)`

const insertRejected = `INSERT INTO rejected_event (stream_seq, received_at, subject, msg_id, payload, reason, detail)
SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::text[], $5::bytea[], $6::text[], $7::text[])
ON CONFLICT (stream_seq, received_at) DO NOTHING`

// writeRows writes events and rejected messages in tx: events are copied
// into a staging table and inserted with ON CONFLICT (event_id), rejected
// ones with ON CONFLICT DO NOTHING on their stream sequence and time.
// Writing the same rows again changes nothing.
func writeRows(ctx context.Context, tx pgx.Tx, events []archive.ArchivedEvent, rejected []archive.RejectedEvent) error {
	if len(events) > 0 {
		if _, err := tx.Exec(ctx, createStage); err != nil {
			return fmt.Errorf("staging table: %w", err)
		}
		n, err := tx.CopyFrom(ctx, pgx.Identifier{stageTable}, stageColumns, &eventRows{events: events, i: -1})
		if err != nil {
			return fmt.Errorf("copy events: %w", err)
		}
		if n != int64(len(events)) {
			return fmt.Errorf("copy events: %d of %d rows copied", n, len(events))
		}
		if _, err := tx.Exec(ctx, moveStage); err != nil {
			return fmt.Errorf("insert events: %w", err)
		}
	}
	if len(rejected) > 0 {
		if _, err := tx.Exec(ctx, insertRejected, rejectedColumns(rejected)...); err != nil {
			return fmt.Errorf("insert rejected: %w", err)
		}
	}
	return nil
}

// eventRows feeds events to COPY without building all rows up front.
type eventRows struct {
	events []archive.ArchivedEvent
	i      int
	row    [10]any
}

func (r *eventRows) Next() bool {
	r.i++
	return r.i < len(r.events)
}

func (r *eventRows) Values() ([]any, error) {
	e := &r.events[r.i]
	if e.StreamSeq > 1<<63-1 {
		return nil, errors.New("stream sequence out of range")
	}
	r.row = [10]any{
		e.EventID, e.UserID, e.EventType, e.Payload, e.Timestamp.UTC(),
		int64(e.StreamSeq), int32(e.Partition), e.Region, int32(e.GameMode), e.ReceivedAt,
	}
	return r.row[:], nil
}

func (r *eventRows) Err() error { return nil }

func rejectedColumns(rs []archive.RejectedEvent) []any {
	seqs := make([]int64, len(rs))
	times := make([]time.Time, len(rs))
	subjects := make([]string, len(rs))
	msgIDs := make([]*string, len(rs))
	payloads := make([][]byte, len(rs))
	reasons := make([]string, len(rs))
	details := make([]string, len(rs))
	for i := range rs {
		r := &rs[i]
		seqs[i] = int64(r.StreamSeq)
		times[i] = r.ReceivedAt
		subjects[i] = text(r.Subject)
		if r.MsgID != "" {
			id := text(r.MsgID)
			msgIDs[i] = &id
		}
		payloads[i] = r.Payload
		if payloads[i] == nil {
			payloads[i] = []byte{}
		}
		reasons[i] = text(r.Reason)
		details[i] = text(r.Detail)
	}
	return []any{seqs, times, subjects, msgIDs, payloads, reasons, details}
}

// text makes s storable in a Postgres text column (valid UTF-8, no NUL):
// the fields of rejected messages come from publishers as they are, and a
// value Postgres refuses would block the archive.
func text(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	}
	return s
}
