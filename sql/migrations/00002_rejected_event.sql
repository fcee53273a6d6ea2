-- Messages of the events stream that are not valid events (published
-- directly on NATS): kept apart for inspection, never in table event.

-- +goose Up
CREATE TABLE rejected_event (
    stream_seq  BIGINT      NOT NULL, -- sequence in the GAMEMODES_EVENTS stream
    received_at TIMESTAMPTZ NOT NULL, -- stream time of the message
    subject     TEXT        NOT NULL, -- stored subject: <partition>.gamemodes.events.<REGION>
    msg_id      TEXT,                 -- Nats-Msg-Id header, if any
    payload     BYTEA       NOT NULL, -- the message body as published
    reason      TEXT        NOT NULL, -- machine code: a contract error code or region_mismatch, partition_mismatch, invalid_subject
    detail      TEXT        NOT NULL DEFAULT '',
    archived_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- The stream time makes the key survive a stream recreated from scratch
    -- (sequences restart at 1); a redelivery has the same sequence and time.
    PRIMARY KEY (stream_seq, received_at)
);

CREATE INDEX rejected_event_received_at_brin ON rejected_event USING BRIN (received_at);

-- +goose Down
DROP TABLE rejected_event;
