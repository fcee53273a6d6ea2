-- HEARTBEAT_GAME_MODE events in the analytics functions. A heartbeat states
-- where the player is: for the state machine it is an ENTER (counted in,
-- moved, or refreshed), so event_transitions reports its outcome as entered,
-- moved or refreshed (t_event_type tells heartbeats apart) and
-- event_sessions, which builds on those outcomes, needs no change. Before
-- this migration a heartbeat would have been read as a LEAVE.

-- +goose Up
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION event_transitions(from_ts timestamptz, to_ts timestamptz, ttl interval)
RETURNS TABLE (
    t_user_id          text,
    t_stream_seq       bigint,
    t_received_at      timestamptz,
    t_event_type       text,
    t_region           text,
    t_game_mode        int,
    t_outcome          text,        -- entered, moved, refreshed, left, stale_leave (a heartbeat's: entered, moved, refreshed)
    t_before_region    text,        -- where the player was counted just before the event (after any expiry); NULL: nowhere
    t_before_game_mode int,
    t_after_region     text,        -- where the player is counted after the event; NULL: nowhere
    t_after_game_mode  int,
    t_expired_at       timestamptz  -- the player, counted until then, expired before this event (previous event + ttl)
)
LANGUAGE sql STABLE
AS $$
WITH w AS (
    SELECT e.user_id, e.stream_seq, e.received_at, e.event_type, e.region, e.game_mode,
           lag(e.received_at) OVER u AS prev_at
    FROM event e
    WHERE e.received_at >= from_ts AND e.received_at < to_ts
    WINDOW u AS (PARTITION BY e.user_id ORDER BY e.stream_seq)
), s AS (
    -- A segment starts at every ENTER or HEARTBEAT and after every expiry:
    -- within it the player is in the head event's slot until a LEAVE of that slot.
    SELECT w.*,
           (w.prev_at IS NOT NULL AND w.received_at - w.prev_at > ttl) AS gap,
           count(*) FILTER (WHERE w.prev_at IS NULL OR w.received_at - w.prev_at > ttl
                                  OR w.event_type IN ('ENTER_GAME_MODE', 'HEARTBEAT_GAME_MODE')) OVER u AS seg
    FROM w
    WINDOW u AS (PARTITION BY w.user_id ORDER BY w.stream_seq)
), h AS (
    SELECT s.*,
           first_value(s.event_type) OVER g AS head_type,
           first_value(s.region)     OVER g AS head_region,
           first_value(s.game_mode)  OVER g AS head_mode
    FROM s
    WINDOW g AS (PARTITION BY s.user_id, s.seg ORDER BY s.stream_seq)
), p AS (
    SELECT h.*,
           h.head_type IN ('ENTER_GAME_MODE', 'HEARTBEAT_GAME_MODE')
           AND NOT bool_or(h.event_type = 'LEAVE_GAME_MODE' AND h.region = h.head_region
                           AND h.game_mode = h.head_mode) OVER g AS present
    FROM h
    WINDOW g AS (PARTITION BY h.user_id, h.seg ORDER BY h.stream_seq)
), q AS (
    SELECT p.*,
           CASE WHEN NOT p.gap AND lag(p.present) OVER u THEN lag(p.head_region) OVER u END AS b_region,
           CASE WHEN NOT p.gap AND lag(p.present) OVER u THEN lag(p.head_mode) OVER u END AS b_mode,
           CASE WHEN p.gap AND lag(p.present) OVER u THEN p.prev_at + ttl END AS exp_at
    FROM p
    WINDOW u AS (PARTITION BY p.user_id ORDER BY p.stream_seq)
)
SELECT q.user_id, q.stream_seq, q.received_at, q.event_type, q.region, q.game_mode,
       CASE
           WHEN q.event_type IN ('ENTER_GAME_MODE', 'HEARTBEAT_GAME_MODE') AND q.b_region IS NULL THEN 'entered'
           WHEN q.event_type IN ('ENTER_GAME_MODE', 'HEARTBEAT_GAME_MODE') AND q.b_region = q.region AND q.b_mode = q.game_mode THEN 'refreshed'
           WHEN q.event_type IN ('ENTER_GAME_MODE', 'HEARTBEAT_GAME_MODE') THEN 'moved'
           WHEN q.b_region = q.region AND q.b_mode = q.game_mode THEN 'left'
           ELSE 'stale_leave'
       END,
       q.b_region, q.b_mode,
       CASE WHEN q.present THEN q.head_region END,
       CASE WHEN q.present THEN q.head_mode END,
       q.exp_at
FROM q
$$;
-- +goose StatementEnd

-- +goose Down
-- Nothing to undo: on an archive without heartbeats this definition answers
-- exactly as 00003's, and with heartbeats 00003's would read them as LEAVEs.
SELECT 1;
