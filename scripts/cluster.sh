#!/usr/bin/env bash
# The docker-compose topology from local processes, for machines without a Docker engine:
# Redis, two example-demo nodes (CABLE_ADAPTER=redis), and nginx (Debian's package) in front
# with WebSocket upgrade and plain round robin.
#
#   scripts/cluster.sh up      # prints the URL to open; state in $CLUSTER_STATE_DIR
#   scripts/cluster.sh down
#   scripts/cluster.sh describe  # the topology as JSON (a test compares docker-compose.yml with it)
#
# Settings: CLUSTER_PORT (nginx, default 8080), CLUSTER_STATE_DIR (default /tmp/actioncable-cluster),
# REDIS_URL (default: a private redis-server on a spare port), CABLE_CHANNEL_PREFIX (default demo),
# DEMO_BIN (default target/debug/example-demo, built if missing); RUST_LOG reaches the nodes.
# Logs in $CLUSTER_STATE_DIR: node1.log, node2.log, redis.log, nginx/logs/{access,error}.log
# (the access log names the node of each request: upstream=127.0.0.1:<node port>).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib.sh
ROOT="$PWD"
STATE="${CLUSTER_STATE_DIR:-/tmp/actioncable-cluster}"
PORT="${CLUSTER_PORT:-8080}"

wait_for() { # wait_for <what> <command…>: up to 10 s
  local what="$1"; shift
  wait_until "cluster: $what" 10 "$@" || { echo "cluster: logs in $STATE" >&2; return 1; }
}

# node_env REDIS_URL SECRET NODE_PORT PROXY_PORT DATABASE: a node's environment, one NAME=value
# per line. The one place it is written: `up` starts the nodes with it, and `describe` shows it
# (with placeholders) to the test that keeps docker-compose.yml in step.
node_env() {
  local redis_url="$1" secret="$2" port="$3" proxy="$4" database="$5"
  printf '%s\n' \
    CABLE_ADAPTER=redis \
    "REDIS_URL=$redis_url" \
    "CABLE_CHANNEL_PREFIX=${CABLE_CHANNEL_PREFIX:-demo}" \
    "SECRET_KEY_BASE=$secret" \
    "PORT=$port" \
    BIND=127.0.0.1 \
    "DEMO_DATABASE=$database" \
    "ALLOWED_ORIGINS=http://127.0.0.1:$proxy,http://localhost:$proxy"
}

# The topology `up` runs, as JSON, with placeholders for what differs by machine: <redis> (the
# Redis host:port), <secret>, <node-port>, <proxy-port>, <database>.
describe() {
  python3 - "$(node_env 'redis://<redis>/0' '<secret>' '<node-port>' '<proxy-port>' '<database>')" <<'PY'
import json, sys
env = dict(line.split("=", 1) for line in sys.argv[1].splitlines())
node = {"env": env}
print(json.dumps({
    "services": {"redis": {}, "demo1": node, "demo2": node,
                 "nginx": {"config": "deploy/nginx.conf", "listen": "<proxy-port>"}},
}, indent=2))
PY
}

down() {
  # SIGTERM to each process recorded here; a node has its 10 s shutdown deadline, then SIGKILL.
  for pidfile in "$STATE"/*.pid; do
    [[ -f "$pidfile" ]] || continue
    stop_pid "$(cat "$pidfile")" TERM 12
    rm -f "$pidfile"
  done
  if [[ -f "$STATE/nginx/nginx.pid" ]]; then
    kill -QUIT "$(cat "$STATE/nginx/nginx.pid")" 2>/dev/null || true
  fi
  echo "cluster: stopped"
}

up() {
  command -v nginx >/dev/null || { echo "cluster: nginx is missing (apt-get install nginx-light)" >&2; exit 1; }
  command -v redis-server >/dev/null || { echo "cluster: redis-server is missing (apt-get install redis-server)" >&2; exit 1; }
  if [[ -d "$STATE" ]]; then down >/dev/null; fi
  mkdir -p "$STATE/nginx/logs"

  local bin="${DEMO_BIN:-$ROOT/target/debug/example-demo}"
  [[ -x "$bin" ]] || cargo build -q -p example-demo

  local redis_url="${REDIS_URL:-}"
  if [[ -z "$redis_url" ]]; then
    start_private_redis "$STATE/redis.log"
    echo "$REDIS_PID" > "$STATE/redis.pid"
    redis_url="redis://127.0.0.1:$REDIS_PORT/0"
  fi

  local secret="${SECRET_KEY_BASE:-cluster-demo-secret-shared-by-both-nodes-0123456789}"
  local ports=()
  for node in 1 2; do
    local p; p="$(free_port)"
    ports+=("$p")
    # shellcheck disable=SC2046 # node_env prints NAME=value words without spaces
    env $(node_env "$redis_url" "$secret" "$p" "$PORT" "$STATE/demo.sqlite3") \
      "$bin" > "$STATE/node$node.log" 2>&1 &
    echo $! > "$STATE/node$node.pid"
    wait_for "node $node" curl -sf "http://127.0.0.1:$p/health"
  done

  sed -e "s/server demo1:3000;/server 127.0.0.1:${ports[0]};/" \
      -e "s/server demo2:3000;/server 127.0.0.1:${ports[1]};/" \
      -e "s/listen 8080;/listen 127.0.0.1:$PORT;/" \
      -e "s|^events|pid $STATE/nginx/nginx.pid;\nerror_log $STATE/nginx/logs/error.log;\nevents|" \
      -e "s|access_log /dev/stdout|access_log $STATE/nginx/logs/access.log|" \
      "$ROOT/deploy/nginx.conf" > "$STATE/nginx/nginx.conf"
  nginx -p "$STATE/nginx" -c "$STATE/nginx/nginx.conf" -e "$STATE/nginx/logs/error.log"
  wait_for "nginx" curl -sf "http://127.0.0.1:$PORT/health"

  echo "cluster: nodes on ${ports[0]} and ${ports[1]}, redis at $redis_url"
  echo "cluster listening on http://127.0.0.1:$PORT"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  describe) describe ;;
  *) echo "usage: $0 up|down|describe" >&2; exit 2 ;;
esac
