-- Players per game mode per region per hour: for each hour (UTC, stream
-- time) in [$1, $2), the distinct players counted in (region, game_mode) at
-- any moment of that hour, and the sessions that started in it (players
-- entering or moving in).
-- $1 timestamptz: from (inclusive), $2 timestamptz: to (exclusive),
-- $3 interval: the player TTL. Player state is derived from [$1 - $3, $2).
WITH s AS (
    SELECT *
    FROM event_sessions($1::timestamptz - $3::interval, $2::timestamptz, $3::interval)
    WHERE coalesce(s_ended_at, $2::timestamptz) > $1::timestamptz
), h AS (
    SELECT s.s_user_id, s.s_region, s.s_game_mode, s.s_started_at, hour
    FROM s,
         generate_series(
             date_trunc('hour', greatest(s.s_started_at, $1::timestamptz), 'UTC'),
             date_trunc('hour', greatest(s.s_started_at,
                 least(coalesce(s.s_ended_at, $2::timestamptz), $2::timestamptz) - interval '1 microsecond'), 'UTC'),
             interval '1 hour') AS hour
)
SELECT hour,
       s_region AS region,
       s_game_mode AS game_mode,
       count(DISTINCT s_user_id) AS players,
       count(*) FILTER (WHERE s_started_at >= hour AND s_started_at < hour + interval '1 hour') AS sessions_started
FROM h
GROUP BY hour, s_region, s_game_mode
ORDER BY hour, s_region, s_game_mode;
