#!/usr/bin/env bash
# The standard benchmark scenarios of docs/benchmarks.md, against
# `gamemodes serve` (all roles, embedded NATS) with the archive on, on this
# machine. Everything runs on loopback.
#
#   scripts/bench.sh [scenario...]     scenarios: http read read25 mixed nats idle half resident replicated cost (default: all but resident, replicated and cost)
#
# replicated is not gamemodes serve: cmd/netcluster bench runs three nats-server
# processes (R3) whose routes and client connections cross delaying links
# (0.5 ms each way at 1 ms RTT), one edge and two workers, once per
# REPLICATED_RUNS entry "<node RTT>:<events/s, 0 = max>", DURATION each, with
# REPLICATED_PLAYERS players; one JSON line per run in $OUT/replicated.jsonl
# and a table in $OUT/replicated.md. RUNS does not apply to it. BIN_DIR (bin)
# holds the gamemodes, nats-server and loadgen binaries it runs (another
# version of gamemodes there measures that version).
#
# GAMEMODES_BIN=path runs the scenarios against that binary instead of one built from this checkout.
#
# cost: service-side CPU per event (the gamemodes process, with its embedded NATS, plus the
# Postgres backends of the bench database and Postgres's background processes, read from /proc
# by loadgen --cpu-pids/--cpu-postgres), user and system, at fixed rates and at saturation, over
# HTTP and over NATS, for one or more gamemodes binaries interleaved run by run, plus the naive
# baseline (cmd/naivebaseline: Redis + one INSERT per event, over HTTP) and the idle CPU of each.
# Environment of cost: COST_BINS ("name=path ...", default "head=<binary of this checkout>"),
# COST_REVS ("name=git-revision ...": each built from a detached worktree into $OUT/bin/, added to
# COST_BINS), COST_RATES ("2000 4000 8000 max"), COST_TRANSPORTS ("http nats"), COST_DURATION (30s),
# COST_PLAYERS (200000), COST_IDLE (30s), COST_NAIVE (1; 0 leaves the baseline out), REDIS_ADDR
# (127.0.0.1:6379), COST_FLAGS_<name> (more serve flags for binary <name>, e.g.
# COST_FLAGS_f20="--shard-flush-interval 20ms"). Binary names are [A-Za-z0-9_]. The table is
# $OUT/cost.md (loadgen cost-table).
#
# Environment: RUNS (3), DURATION (60s), MIXED_RATE (15000 operations/s), HALF_RATE (6000 events/s),
# PLAYERS (100000), RESIDENT (10000000; the resident scenario populates once and reloads RUNS times), OUT (data/bench/<time>),
# GAMEMODES_TEST_DATABASE_URL (admin URL of a Postgres; a database
# gamemodes_bench is recreated for every run).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
DURATION=${DURATION:-60s}
MIXED_RATE=${MIXED_RATE:-15000}
HALF_RATE=${HALF_RATE:-6000}
PLAYERS=${PLAYERS:-100000}
REPLICATED_RUNS=${REPLICATED_RUNS:-1ms:10000 1ms:20000 1ms:33000 1ms:0 5ms:20000 5ms:0}
REPLICATED_PLAYERS=${REPLICATED_PLAYERS:-300000}
RESIDENT=${RESIDENT:-10000000}
COST_DURATION=${COST_DURATION:-30s}
COST_PLAYERS=${COST_PLAYERS:-200000}
OUT=${OUT:-data/bench/$(date -u +%Y%m%dT%H%M%SZ)}
PG_ADMIN=${GAMEMODES_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}
PG_BENCH=${PG_ADMIN/\/postgres\?/\/gamemodes_bench?}
HTTP=127.0.0.1:18480
NATS=127.0.0.1:18422
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(http read read25 mixed nats idle half)

mkdir -p "$OUT" bin
OUT=$(cd "$OUT" && pwd)
if [ -z "${GAMEMODES_BIN:-}" ]; then
  go build -o bin/gamemodes ./cmd/gamemodes
  GAMEMODES_BIN=bin/gamemodes
fi
go build -o bin/loadgen ./cmd/loadgen
if [[ " ${scenarios[*]} " == *" replicated "* ]]; then
  go build -o bin/nats-server github.com/nats-io/nats-server/v2 # the version in go.mod
  go build -o bin/netcluster ./cmd/netcluster
fi
echo "bench: results in $OUT" >&2

svc_pid=""
start_service() { # $1: log name, $2: binary (default $GAMEMODES_BIN), rest: more flags
  local log=$1 bin=${2:-$GAMEMODES_BIN}
  shift 2 || shift $#
  psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS gamemodes_bench WITH (FORCE)" -c "CREATE DATABASE gamemodes_bench" >/dev/null
  rm -rf "$OUT/data"
  "$bin" serve --http-addr "$HTTP" --nats-listen "$NATS" --data-dir "$OUT/data" \
    --postgres-url "$PG_BENCH" --log-format json "$@" >"$OUT/$log.service.log" 2>&1 &
  svc_pid=$!
  wait_ready
}
wait_ready() {
  for _ in $(seq 1 300); do
    curl -fsS "http://$HTTP/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "bench: service not ready" >&2; return 1
}
stop_service() {
  [ -n "$svc_pid" ] || return 0
  kill -TERM "$svc_pid" 2>/dev/null || true
  wait "$svc_pid" 2>/dev/null || true
  svc_pid=""
}
trap stop_service EXIT

# sample_lag writes the archive lag and the service's CPU and memory every second.
sample() { # $1: file
  while kill -0 "$svc_pid" 2>/dev/null; do
    lag=$(curl -fsS "http://$HTTP/metrics" 2>/dev/null | awk '/^gamemodes_archive_lag_messages /{print $2}')
    rss=$(awk '/VmRSS/{print $2}' /proc/"$svc_pid"/status 2>/dev/null)
    ticks=$(awk '{print $14+$15}' /proc/"$svc_pid"/stat 2>/dev/null)
    echo "$(date +%s) lag=${lag:-?} rss_kb=${rss:-?} cpu_ticks=${ticks:-?}"
    sleep 1
  done >"$1"
}

# archive_drained waits (at most $1 seconds) for the archive lag to reach 0,
# then writes the rows archived and the lag left to $2 (and stderr).
archive_drained() { # $1: seconds, $2: file
  local lag=""
  for _ in $(seq 1 "$1"); do
    lag=$(curl -fsS "http://$HTTP/metrics" | awk '/^gamemodes_archive_lag_messages /{print $2}')
    [ "${lag:-1}" = "0" ] && break
    sleep 1
  done
  rows=$(psql -tAq "$PG_BENCH" -c "SELECT count(*) FROM event")
  echo "{\"archived_rows\":$rows,\"archive_lag_after\":${lag:-null}}" | tee "$2" >&2
}

# reload_resident restarts the service on the populated store and records how
# long it takes to load all partitions, whether the lobby then shows exactly
# the population, the live heap after a collection and the RSS.
reload_resident() { # $1: run number
  local run=$1 pprof=127.0.0.1:18463 log="$OUT/resident.$1.reload.log"
  t0=$(date +%s.%N)
  "$GAMEMODES_BIN" serve --http-addr "$HTTP" --nats-listen "$NATS" --data-dir "$OUT/data" \
    --postgres-url "$PG_BENCH" --pprof-addr "$pprof" --log-format json >"$log" 2>&1 &
  svc_pid=$!
  for _ in $(seq 1 3000); do
    [ "$(grep -c '"partition loaded"' "$log" || true)" -ge 32 ] && break
    sleep 0.05
  done
  t1=$(date +%s.%N)
  total=0
  for r in US EU BR JP KR CN RU IN SEA AU MX CA TR ME TW AR ZA SG PH ID; do
    n=$(curl -fsS "http://$HTTP/api/v1/popular_game_modes?region=$r" | grep -o '"player_count":[0-9]*' | awk -F: '{s+=$2} END{print s+0}')
    total=$((total + n))
  done
  sleep 30 # idle: let load garbage be collected and returned
  curl -fsS "http://$pprof/debug/pprof/heap?gc=1" -o "$OUT/resident.$run.heap.prof"
  heap=$(curl -fsS "http://$HTTP/metrics" | awk '/^go_memstats_heap_alloc_bytes /{printf "%d", $2}')
  rss=$(awk '/VmRSS/{print $2}' /proc/"$svc_pid"/status)
  echo "{\"players\":$RESIDENT,\"lobby_total\":$total,\"reload_seconds\":$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}'),\"live_heap_bytes\":$heap,\"heap_bytes_per_player\":$((heap / RESIDENT)),\"rss_kb\":$rss,\"rss_bytes_per_player\":$((rss * 1024 / RESIDENT))}" \
    | tee "$OUT/resident.$run.reload.json" >&2
  stop_service
}

run_scenario() { # $1: name, $2: run number, rest: loadgen args
  local name=$1 run=$2; shift 2
  start_service "$name.$run"
  sample "$OUT/$name.$run.samples" & local sampler=$!
  bin/loadgen --http-url "http://$HTTP" --nats-url "nats://$NATS" --players "$PLAYERS" --progress-every 10s "$@" \
    >"$OUT/$name.$run.json" 2>"$OUT/$name.$run.err" || echo "bench: $name run $run exited $?" >&2
  archive_drained 120 "$OUT/$name.$run.archive.json" 2>/dev/null # the archive must catch up (at most 2 minutes)
  kill "$sampler" 2>/dev/null || true
  stop_service
  tail -1 "$OUT/$name.$run.json" >&2
}

# replicated runs cmd/netcluster bench for every REPLICATED_RUNS entry and
# tabulates the JSON lines.
replicated() {
  local jsonl="$OUT/replicated.jsonl" entry rtt rate label
  : >"$jsonl"
  for entry in $REPLICATED_RUNS; do
    rtt=${entry%%:*} rate=${entry#*:}
    label="rtt-$rtt-rate-$rate"
    echo "bench: replicated $label" >&2
    bin/netcluster bench --build=false --bin-dir "${BIN_DIR:-bin}" --dir "$OUT/replicated" --rtt "$rtt" --client-rtt 1ms \
      --edges 1 --workers 2 --label "$label" --samples-out "$OUT/replicated.$label.samples" --catchup-timeout 3m -- \
      --rate "$rate" --duration "$DURATION" --players "$REPLICATED_PLAYERS" --ryw-every 200ms --settle 5m --progress-every 10s \
      >"$OUT/replicated.$label.json" 2>"$OUT/replicated.$label.err" || echo "bench: replicated $label exited $?" >&2
    cp -r "$OUT/replicated/logs" "$OUT/replicated.$label.logs" 2>/dev/null || true
    tail -1 "$OUT/replicated.$label.json" | tee -a "$jsonl" | jq -c 'del(.loadgen)' >&2 || true
  done
  rm -rf "$OUT/replicated"
  {
    echo "| node RTT | target events/s | events/s acked | load (s) | player writes/s persisted | durable lag p50 / p99 / max (s) | catch-up after the load: lag 0 / players stream quiet (s) | read-your-writes p50 / p99 (ms), timeouts / tries | lists exact | harness CPU (% of a core) | machine load (1 min) |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    jq -r 'def n: if . == null then "n/a" else tostring end;
      "| \(.rtt_ms) ms | \(if .target_rate == 0 then "max" else (.target_rate|tostring) end) | \(.events_acked_per_s) | \(.load_s) | \(.player_writes_per_s) | \(if .durable_lag_s == null then "n/a" else "\(.durable_lag_s.p50) / \(.durable_lag_s.p99) / \(.durable_lag_s.max)" end) | \(.catch_up_lag_s|n) / \(if .catch_up_players_s == null then "not within 3 min" else (.catch_up_players_s|tostring) end) | \(if (.ryw_ms.count // 0) == 0 then "n/a / n/a" else "\(.ryw_ms.p50) / \(.ryw_ms.p99)" end), \(.ryw_ms.timeouts|n) / \(.ryw_ms.tries|n) | \(.exact) | \(.harness_cpu_percent) | \(.load_avg_1m|n) |"' "$jsonl"
  } >"$OUT/replicated.md"
  cat "$OUT/replicated.md" >&2
}

# postgres_pid prints the pid of the Postgres server (postmaster) behind URL $1, from the
# first line of postmaster.pid in its data directory (a Postgres on this machine).
postgres_pid() {
  head -1 "$(psql -tAq "$1" -c "SHOW data_directory")/postmaster.pid"
}

# build_rev builds gamemodes at git revision $2 into $OUT/bin/$1 (a detached worktree, removed after).
build_rev() {
  local name=$1 rev=$2 wt
  wt=$(mktemp -d)
  git worktree add -q --detach "$wt" "$rev"
  (cd "$wt" && go build -o "$OUT/bin/$name" ./cmd/gamemodes)
  git worktree remove --force "$wt"
  echo "$name=$OUT/bin/$name"
}

# cost_run runs one load of the cost scenario against the service started already:
# $1 file stem, $2 transport (http|nats), $3 rate (a number or max), $4 database, $5 --cpu-pids,
# then more loadgen flags.
cost_run() {
  local stem=$1 transport=$2 rate=$3 db=$4 pids=$5 args=()
  shift 5
  case $transport/$rate in
    http/max) args=(--mode http --concurrency 64) ;;
    http/*)   args=(--mode http --rate "$rate" --concurrency 128) ;;
    nats/max) args=(--mode nats --max-pending 8192 --settle 5m) ;;
    nats/*)   args=(--mode nats --rate "$rate" --max-pending 8192 --settle 2m) ;;
  esac
  echo "bench: $stem (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  bin/loadgen --http-url "http://$HTTP" --nats-url "nats://$NATS" --players "$COST_PLAYERS" --duration "$COST_DURATION" \
    --progress-every 10s --cpu-pids "$pids" --cpu-postgres "$(postgres_pid "$PG_ADMIN")" --cpu-postgres-db "$db" "${args[@]}" "$@" \
    >"$OUT/$stem.json" 2>"$OUT/$stem.err" || echo "bench: $stem exited $?" >&2
  tail -1 "$OUT/$stem.json" >&2
}

# bin_flags prints the extra serve flags of cost binary $1: $COST_FLAGS_<name>.
bin_flags() {
  local v="COST_FLAGS_$1"
  echo "${!v:-}"
}

cost() {
  local bins=() nb
  read -ra bins <<<"${COST_BINS:-head=$GAMEMODES_BIN}"
  mkdir -p "$OUT/bin"
  for nr in ${COST_REVS:-}; do bins+=("$(build_rev "${nr%%=*}" "${nr#*=}")"); done
  local naive_url=${PG_ADMIN/\/postgres\?/\/naive_bench?} redis_addr=${REDIS_ADDR:-127.0.0.1:6379}
  if [ "${COST_NAIVE:-1}" = 1 ]; then go build -o bin/naivebaseline ./cmd/naivebaseline; fi
  printf '%s\n' "${bins[@]}" >"$OUT/cost.bins"
  for run in $(seq 1 "$RUNS"); do
    for transport in ${COST_TRANSPORTS:-http nats}; do
      for rate in ${COST_RATES:-2000 4000 8000 max}; do
        for nb in "${bins[@]}"; do
          start_service "cost.${nb%%=*}.$transport.$rate.$run" "${nb#*=}" $(bin_flags "${nb%%=*}")
          cost_run "cost.${nb%%=*}.$transport.$rate.$run" "$transport" "$rate" gamemodes_bench "$svc_pid" --service-metrics "http://$HTTP/metrics"
          archive_drained 120 "$OUT/cost.${nb%%=*}.$transport.$rate.$run.archive.json" 2>/dev/null
          stop_service
        done
        if [ "${COST_NAIVE:-1}" = 1 ] && [ "$transport" = http ]; then
          psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS naive_bench WITH (FORCE)" -c "CREATE DATABASE naive_bench" >/dev/null
          bin/naivebaseline --http-addr "$HTTP" --postgres-url "$naive_url" --redis-addr "$redis_addr" \
            >"$OUT/cost.naive.http.$rate.$run.service.log" 2>&1 &
          svc_pid=$!
          wait_ready
          redis_pid=$(redis-cli -h "${redis_addr%:*}" -p "${redis_addr#*:}" info server | awk -F: '/^process_id:/{print $2+0}')
          cost_run "cost.naive.http.$rate.$run" http "$rate" naive_bench "$svc_pid,$redis_pid"
          stop_service
        fi
      done
    done
    # Idle: each binary started on an empty store, 5 s to settle, then its CPU with no load.
    for nb in "${bins[@]}"; do
      start_service "idle.${nb%%=*}.$run" "${nb#*=}" $(bin_flags "${nb%%=*}")
      sleep 5
      echo "bench: idle ${nb%%=*} (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
      bin/loadgen cpu --duration "${COST_IDLE:-30s}" --cpu-pids "$svc_pid" --cpu-postgres "$(postgres_pid "$PG_ADMIN")" \
        --cpu-postgres-db gamemodes_bench --service-metrics "http://$HTTP/metrics" >"$OUT/idle.${nb%%=*}.$run.json" || echo "bench: idle exited $?" >&2
      cat "$OUT/idle.${nb%%=*}.$run.json" >&2
      stop_service
    done
  done
  bin/loadgen cost-table "$OUT" >"$OUT/cost.md"
  cat "$OUT/cost.md"
}

for s in "${scenarios[@]}"; do
  if [ "$s" = replicated ]; then
    replicated
    continue
  fi
  if [ "$s" = cost ]; then cost; continue; fi
  for run in $(seq 1 "$RUNS"); do
    case $s in
      http)  run_scenario http "$run" --mode http --concurrency 64 --duration "$DURATION" ;;
      read)  run_scenario read "$run" --mode read --concurrency 64 --duration "$DURATION" ;;
      mixed) run_scenario mixed "$run" --mode mixed --rate "$MIXED_RATE" --read-ratio 2 --concurrency 128 --duration "$DURATION" ;;
      # The owners apply the backlog after the run: give the lobby 5 minutes to be exact (waited_s says when).
      nats)  run_scenario nats "$run" --mode nats --max-pending 8192 --duration "$DURATION" --settle 5m ;;
      idle)  run_scenario idle "$run" --mode http --rate 100 --concurrency 8 --duration 20s ;;
      read25) run_scenario read25 "$run" --mode read --rate 25000 --concurrency 64 --duration "$DURATION" ;;
      half)  run_scenario half "$run" --mode http --rate "$HALF_RATE" --concurrency 64 --duration "$DURATION" ;;
      resident)
        # Populate once (archive on), then measure a reload of every partition RUNS times.
        if [ "$run" = 1 ]; then
          start_service resident
          bin/loadgen populate --nats-url "nats://$NATS" --http-url "http://$HTTP" --players "$RESIDENT" --settle 10m \
            >"$OUT/resident.json" 2>"$OUT/resident.err" || echo "bench: populate exited $?" >&2
          tail -1 "$OUT/resident.json" >&2
          archive_drained 900 "$OUT/resident.archive.json"
          stop_service
        fi
        reload_resident "$run"
        ;;
      *) echo "bench: unknown scenario $s" >&2; exit 2 ;;
    esac
  done
done
