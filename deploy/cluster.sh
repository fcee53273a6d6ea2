#!/usr/bin/env bash
# A local gamemodes cluster without Docker (the Taskfile's cluster:* tasks):
#
#   deploy/cluster.sh nats     three official nats-server processes, built with
#                              go run github.com/nats-io/nats-server/v2@$NATS_SERVER_VERSION,
#                              configs nats/config/local/node{1,2,3}.conf:
#                              clients 127.0.0.1:14222-14224, monitoring :18222-18224
#   deploy/cluster.sh up       the NATS cluster plus gamemodes processes on
#                              127.0.0.1: edge (:18090, the API), worker1 (:18091),
#                              worker2 (:18092), archiver (:18093); CLUSTER_HTTP_PORT
#                              moves the first of the four ports
#   deploy/cluster.sh down     stop them all (pid files), keep the data
#   deploy/cluster.sh status   what runs
#   deploy/cluster.sh clean    down, then delete ./data/cluster
#
# Needs Go, bash and curl. Everything lives under ./data/cluster: JetStream
# stores, pid files, logs/.
# Passwords of the NATS users default to "<user>-local" (local use only);
# set GAME_SERVER_PASSWORD, EDGE_PASSWORD, ... to change them. The archiver
# archives to Postgres when DATABASE_URL or GAMEMODES_POSTGRES_URL is set,
# otherwise it only keeps its durable consumer (events wait in the stream).
set -euo pipefail

cd "$(dirname "$0")/.."
DIR=data/cluster
LOGS=$DIR/logs
NATS_SERVER_VERSION=${NATS_SERVER_VERSION:-v2.15.2}
NATS_PKG=github.com/nats-io/nats-server/v2@$NATS_SERVER_VERSION

export GAME_SERVER_PASSWORD=${GAME_SERVER_PASSWORD:-game_server-local}
export EDGE_PASSWORD=${EDGE_PASSWORD:-edge-local}
export WORKER_PASSWORD=${WORKER_PASSWORD:-worker-local}
export ARCHIVER_PASSWORD=${ARCHIVER_PASSWORD:-archiver-local}
export ADMIN_PASSWORD=${ADMIN_PASSWORD:-admin-local}
export SYS_PASSWORD=${SYS_PASSWORD:-sys-local}

NATS_NODES=(1 2 3)
HTTP_PORT=${CLUSTER_HTTP_PORT:-18090}
# name, roles (also the NATS user), HTTP address
APPS=(
	"edge edge 127.0.0.1:$HTTP_PORT"
	"worker1 worker 127.0.0.1:$((HTTP_PORT + 1))"
	"worker2 worker 127.0.0.1:$((HTTP_PORT + 2))"
	"archiver archiver 127.0.0.1:$((HTTP_PORT + 3))"
)

log() { printf 'cluster: %s\n' "$*" >&2; }

# alive PIDFILE PATTERN: the pid in PIDFILE runs a command matching PATTERN.
alive() {
	local pid
	[[ -s $1 ]] || return 1
	pid=$(<"$1")
	ps -o args= -p "$pid" 2>/dev/null | grep -q -- "$2"
}

# nats_urls USER: the three client URLs with USER's credentials.
nats_urls() {
	local user=$1 var pass urls=""
	var=$(tr '[:lower:]' '[:upper:]' <<<"$user")_PASSWORD
	pass=${!var}
	for i in "${NATS_NODES[@]}"; do
		urls+="${urls:+,}nats://$user:$pass@127.0.0.1:$((14221 + i))"
	done
	printf '%s' "$urls"
}

# wait_http URL SECONDS WHAT: poll URL until it answers 2xx.
wait_http() {
	local deadline=$((SECONDS + $2))
	until curl -fsS -o /dev/null "$1" 2>/dev/null; do
		if ((SECONDS >= deadline)); then
			log "$3 not ready after $2 s ($1); see $LOGS/"
			return 1
		fi
		sleep 0.5
	done
}

start_nats() {
	mkdir -p "$LOGS"
	log "building nats-server $NATS_SERVER_VERSION (go run $NATS_PKG)"
	go run "$NATS_PKG" --version >/dev/null
	for i in "${NATS_NODES[@]}"; do
		if alive "$DIR/nats$i.pid" nats-server; then
			log "nats$i already running (pid $(<"$DIR/nats$i.pid"))"
			continue
		fi
		rm -f "$DIR/nats$i.pid"
		# nats-server writes its own pid to data/cluster/nats$i.pid (pid_file
		# in the config): that is the process `down` stops; go run exits with it.
		nohup go run "$NATS_PKG" -c "nats/config/local/node$i.conf" >"$LOGS/nats$i.log" 2>&1 &
	done
	for i in "${NATS_NODES[@]}"; do
		# /healthz answers 200 once the node runs JetStream with a meta leader.
		wait_http "http://127.0.0.1:$((18221 + i))/healthz" 60 "nats$i"
	done
	log "NATS cluster up: $(nats_urls game_server | sed 's/:[^:@]*@/:***@/g')"
}

start_app() {
	local name=$1 roles=$2 addr=$3
	if alive "$DIR/$name.pid" "bin/gamemodes"; then
		log "$name already running (pid $(<"$DIR/$name.pid"))"
		return
	fi
	nohup "$DIR/bin/gamemodes" serve --roles "$roles" --nats-url "$(nats_urls "$roles")" --replicas 3 \
		--http-addr "$addr" --instance-id "$name" --log-format text >"$LOGS/$name.log" 2>&1 &
	echo $! >"$DIR/$name.pid"
}

up() {
	start_nats
	log "building gamemodes"
	go build -o "$DIR/bin/gamemodes" ./cmd/gamemodes
	# The edge starts first and creates the stream and buckets with 3 replicas.
	local first=(${APPS[0]})
	start_app "${first[@]}"
	wait_http "http://${first[2]}/readyz" 60 "${first[0]}"
	for app in "${APPS[@]:1}"; do
		start_app $app
	done
	for app in "${APPS[@]}"; do
		local a=($app)
		wait_http "http://${a[2]}/readyz" 60 "${a[0]}"
	done
	log "up: API on http://${first[2]} (try /api/v1/popular_game_modes?region=US), logs in $LOGS/"
}

# stop PIDFILE PATTERN NAME: SIGTERM, then SIGKILL after 20 s.
stop() {
	local pid
	if ! alive "$1" "$2"; then
		rm -f "$1"
		return
	fi
	pid=$(<"$1")
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 200); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "$3 (pid $pid) still running after 20 s: killing"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$1"
	log "stopped $3"
}

down() {
	local app a
	for app in "${APPS[@]}"; do
		a=($app)
		stop "$DIR/${a[0]}.pid" "bin/gamemodes" "${a[0]}" &
	done
	wait
	for i in "${NATS_NODES[@]}"; do
		stop "$DIR/nats$i.pid" nats-server "nats$i" &
	done
	wait
}

status() {
	local app a
	for i in "${NATS_NODES[@]}"; do
		if alive "$DIR/nats$i.pid" nats-server; then
			echo "nats$i     running  pid $(<"$DIR/nats$i.pid")  client 127.0.0.1:$((14221 + i))  monitor http://127.0.0.1:$((18221 + i))"
		else
			echo "nats$i     stopped"
		fi
	done
	for app in "${APPS[@]}"; do
		a=($app)
		if alive "$DIR/${a[0]}.pid" "bin/gamemodes"; then
			echo "$(printf '%-9s' "${a[0]}") running  pid $(<"$DIR/${a[0]}.pid")  http://${a[2]}"
		else
			echo "$(printf '%-9s' "${a[0]}") stopped"
		fi
	done
}

case ${1:-} in
nats) start_nats ;;
up) up ;;
down) down ;;
status) status ;;
clean)
	down
	rm -rf "$DIR"
	;;
*)
	echo "usage: $0 nats|up|down|status|clean" >&2
	exit 2
	;;
esac
