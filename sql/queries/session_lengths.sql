-- Session lengths per (region, game_mode): sessions that started in
-- [$1, $2) (a player entering or moving in), how they ended (a LEAVE of
-- that slot, a move to another, expiry ttl after the player's last event)
-- and how long the ended ones lasted, in seconds. Sessions still running
-- at $2 are counted as open and not in the lengths.
-- $1 timestamptz: from (inclusive), $2 timestamptz: to (exclusive),
-- $3 interval: the player TTL. Player state is derived from [$1 - $3, $2).
WITH s AS (
    SELECT s_region, s_game_mode, s_end_reason,
           extract(epoch FROM s_ended_at - s_started_at)::float8 AS seconds
    FROM event_sessions($1::timestamptz - $3::interval, $2::timestamptz, $3::interval)
    WHERE s_started_at >= $1::timestamptz
)
SELECT s_region AS region,
       s_game_mode AS game_mode,
       count(*) AS sessions,
       count(*) FILTER (WHERE s_end_reason IS NULL)      AS open,
       count(*) FILTER (WHERE s_end_reason = 'left')     AS ended_left,
       count(*) FILTER (WHERE s_end_reason = 'moved')    AS ended_moved,
       count(*) FILTER (WHERE s_end_reason = 'expired')  AS ended_expired,
       avg(seconds)                                          AS avg_seconds,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds)  AS p50_seconds,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY seconds)  AS p90_seconds,
       max(seconds)                                          AS max_seconds
FROM s
GROUP BY s_region, s_game_mode
ORDER BY s_region, s_game_mode;
