-- Mode switches per hour: ENTER (or HEARTBEAT) events that moved a player counted in one
-- (region, game_mode) to another, per hour (UTC, stream time) in [$1, $2)
-- and per (from, to).
-- $1 timestamptz: from (inclusive), $2 timestamptz: to (exclusive),
-- $3 interval: the player TTL. Player state is derived from [$1 - $3, $2).
SELECT date_trunc('hour', t_received_at, 'UTC') AS hour,
       t_before_region    AS from_region,
       t_before_game_mode AS from_game_mode,
       t_region           AS to_region,
       t_game_mode        AS to_game_mode,
       count(*)           AS switches
FROM event_transitions($1::timestamptz - $3::interval, $2::timestamptz, $3::interval)
WHERE t_outcome = 'moved' AND t_received_at >= $1::timestamptz
GROUP BY 1, 2, 3, 4, 5
ORDER BY 1, 2, 3, 4, 5;
