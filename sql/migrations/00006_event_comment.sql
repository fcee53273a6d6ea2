-- The comment of table event said the archive inserts with ON CONFLICT
-- (event_id) DO NOTHING; it updates the row where a copy earlier in stream
-- order comes later (after a redelivery), so the first copy always wins.

-- +goose Up
COMMENT ON TABLE event IS 'gamemodes: every accepted player event once; where one event_id was stored twice, the copy first in stream order (ON CONFLICT (event_id) DO UPDATE ... WHERE earlier)';

-- +goose Down
COMMENT ON TABLE event IS 'gamemodes: every accepted player event once (ON CONFLICT (event_id) DO NOTHING)';
