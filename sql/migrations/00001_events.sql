-- The archive of every accepted player event, exactly once per event_id.
-- The first five columns are the seed's table; the rest is what rebuild and
-- analytics need.

-- +goose Up
CREATE TABLE event (
    event_id      TEXT PRIMARY KEY,
    user_id       TEXT,
    event_type    TEXT,
    event_payload JSONB,
    timestamp     TIMESTAMP,            -- the reporter's time (UTC), data not order
    stream_seq    BIGINT      NOT NULL, -- sequence in the GAMEMODES_EVENTS stream: the order that decides
    partition     INT         NOT NULL, -- the user's partition in the stream
    region        TEXT        NOT NULL, -- = event_payload->>'region'
    game_mode     INT         NOT NULL, -- = event_payload->>'game_mode'
    received_at   TIMESTAMPTZ NOT NULL, -- the time the stream stored the event
    archived_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

COMMENT ON TABLE event IS 'gamemodes: every accepted player event once (ON CONFLICT (event_id) DO NOTHING)';
COMMENT ON COLUMN event.event_id IS 'the payload event_id, else the Nats-Msg-Id header, else nats-<stream seq>-<stream time unix ns>';
COMMENT ON COLUMN event.received_at IS 'stream time: when GAMEMODES_EVENTS stored the event';

-- Time-range scans (analytics, rebuild window): rows arrive in received_at
-- order, so a BRIN index is tiny and effective.
CREATE INDEX event_received_at_brin ON event USING BRIN (received_at);

-- Per-user history in stream order (rebuild: the events of each user in the
-- window; analytics: the next/previous event of a user).
CREATE INDEX event_user_seq ON event (user_id, stream_seq);

-- +goose Down
DROP TABLE event;
