-- The archiver's checkpoint: how far the archive holds the events stream.
-- Each batch of the archiver moves it in the same transaction as the rows it
-- writes, so "everything up to last_seq is archived" is true exactly when
-- those rows are committed; a restarted (or standby) archiver resumes after
-- it, and the stream's consumer is acknowledged once per batch instead of
-- once per event. Moves are compare-and-set (WHERE stream_id and last_seq
-- are the ones the archiver read), so a second archiver can never move it
-- past rows it did not write.

-- +goose Up
CREATE TABLE archive_checkpoint (
    name       TEXT PRIMARY KEY,         -- what is archived: 'events' (the GAMEMODES_EVENTS stream)
    stream_id  TEXT        NOT NULL,     -- identity of the stream last_seq counts in (its creation time): a stream created again starts over
    last_seq   BIGINT      NOT NULL,     -- every message of the stream up to this sequence is archived
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

COMMENT ON TABLE archive_checkpoint IS 'gamemodes: the last stream sequence archived, moved in the transaction of each archive batch';

-- +goose Down
DROP TABLE archive_checkpoint;
