-- The player state machine of DESIGN.md in SQL, for analytics over the
-- archive: event_transitions replays each user's events in stream order
-- (ENTER counts the player in, moves them, or refreshes; LEAVE counts only
-- for the player's current slot; more than ttl without an event expires the
-- player) and event_sessions turns that into the time each player spent
-- counted in a (region, game_mode).
--
-- Both derive state from the events received in [from_ts, to_ts) alone: a
-- player counted before from_ts is unknown to them. Callers that report on
-- [F, T) pass from_ts = F - ttl, which is exact whenever no player's events
-- chain (each less than ttl after the previous) across F - ttl.

-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION event_transitions(from_ts timestamptz, to_ts timestamptz, ttl interval)
RETURNS TABLE (
    t_user_id          text,
    t_stream_seq       bigint,
    t_received_at      timestamptz,
    t_event_type       text,
    t_region           text,
    t_game_mode        int,
    t_outcome          text,        -- entered, moved, refreshed, left, stale_leave
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
    -- A segment starts at every ENTER and after every expiry: within it the
    -- player is in the head ENTER's slot until a LEAVE of that slot.
    SELECT w.*,
           (w.prev_at IS NOT NULL AND w.received_at - w.prev_at > ttl) AS gap,
           count(*) FILTER (WHERE w.prev_at IS NULL OR w.received_at - w.prev_at > ttl
                                  OR w.event_type = 'ENTER_GAME_MODE') OVER u AS seg
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
           h.head_type = 'ENTER_GAME_MODE'
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
           WHEN q.event_type = 'ENTER_GAME_MODE' AND q.b_region IS NULL THEN 'entered'
           WHEN q.event_type = 'ENTER_GAME_MODE' AND q.b_region = q.region AND q.b_mode = q.game_mode THEN 'refreshed'
           WHEN q.event_type = 'ENTER_GAME_MODE' THEN 'moved'
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

-- +goose StatementBegin
CREATE FUNCTION event_sessions(from_ts timestamptz, to_ts timestamptz, ttl interval)
RETURNS TABLE (
    s_user_id    text,
    s_region     text,
    s_game_mode  int,
    s_started_at timestamptz, -- the ENTER that counted the player in (entered or moved in)
    s_ended_at   timestamptz, -- NULL: still counted at to_ts
    s_end_reason text         -- left, moved, expired; NULL when still counted
)
LANGUAGE sql STABLE
AS $$
WITH t AS (
    SELECT * FROM event_transitions(from_ts, to_ts, ttl)
), tail AS (
    SELECT DISTINCT ON (t.t_user_id) t.*
    FROM t
    ORDER BY t.t_user_id, t.t_stream_seq DESC
), b AS (
    -- Session boundaries in stream order; an event can end one session
    -- (part 0) and start the next (part 1); a player counted after their
    -- last event expires ttl later (part 2) if that is before to_ts.
    SELECT t.t_user_id AS user_id, t.t_stream_seq AS seq, 0 AS part,
           coalesce(t.t_expired_at, t.t_received_at) AS at,
           CASE WHEN t.t_expired_at IS NOT NULL THEN 'expired' ELSE t.t_outcome END AS reason,
           NULL::text AS region, NULL::int AS game_mode
    FROM t
    WHERE t.t_expired_at IS NOT NULL OR t.t_outcome IN ('left', 'moved')
    UNION ALL
    SELECT t.t_user_id, t.t_stream_seq, 1, t.t_received_at, NULL, t.t_region, t.t_game_mode
    FROM t
    WHERE t.t_outcome IN ('entered', 'moved')
    UNION ALL
    SELECT tail.t_user_id, tail.t_stream_seq, 2, tail.t_received_at + ttl, 'expired', NULL, NULL
    FROM tail
    WHERE tail.t_after_region IS NOT NULL AND tail.t_received_at + ttl < to_ts
), n AS (
    SELECT b.*,
           lead(b.at)     OVER u AS next_at,
           lead(b.reason) OVER u AS next_reason
    FROM b
    WINDOW u AS (PARTITION BY b.user_id ORDER BY b.seq, b.part)
)
SELECT n.user_id, n.region, n.game_mode, n.at, n.next_at, n.next_reason
FROM n
WHERE n.part = 1
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION event_sessions(timestamptz, timestamptz, interval);
DROP FUNCTION event_transitions(timestamptz, timestamptz, interval);
