#!/usr/bin/env bash
# Broadcast fan-out through the Redis adapter vs the in-memory adapter, in the same run.
#
# Builds example-bench and cable-bench (release), starts a private redis-server on a spare port,
# one example-bench with CABLE_ADAPTER=memory and one with CABLE_ADAPTER=redis, then runs
# `cable-bench broadcast` against them alternately (memory, redis, memory, redis, …), stops
# everything it started, and prints a Markdown table of the medians. See docs/benchmarks.md.
#
# Settings (environment): CLIENTS (1000), SENDERS (4), ROUNDS (200), PAIRS (5: memory+redis
# runs each), OUT (a new temporary directory: every run's report and JSON line go there),
# EXTRA_SERVER_ENV (e.g. "RUST_LOG=info", passed to both servers), SERVER_BIN (another build of
# the BenchmarkChannel server taking the same settings; default target/release/example-bench).
# Not a test: nothing in scripts/test.sh runs it. Every run is bounded (--timeout-secs 55).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CLIENTS="${CLIENTS:-1000}"
SENDERS="${SENDERS:-4}"
ROUNDS="${ROUNDS:-200}"
PAIRS="${PAIRS:-5}"
OUT="${OUT:-$(mktemp -d -t bench-redis.XXXXXX)}"
SERVER_BIN="${SERVER_BIN:-target/release/example-bench}"
mkdir -p "$OUT"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# CPU seconds (user + system) a process has used so far.
cpu_secs() {
  python3 - "$1" <<'EOF'
import os, sys
stat = open(f"/proc/{sys.argv[1]}/stat").read()
fields = stat[stat.rindex(")") + 2:].split()
print((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
EOF
}

wait_for_port() {
  local port="$1" what="$2"
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "$what did not start listening on $port" >&2
  exit 1
}

PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT

echo "==> cargo build --release -p example-bench -p cable-bench" >&2
cargo build --release -p example-bench -p cable-bench >&2

REDIS_PORT="$(free_port)"
echo "==> redis-server on 127.0.0.1:$REDIS_PORT" >&2
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
  --daemonize no --logfile "$OUT/redis.log" &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
wait_for_port "$REDIS_PORT" redis-server

declare -A PORT SERVER_PID
for adapter in memory redis; do
  PORT[$adapter]="$(free_port)"
  echo "==> example-bench CABLE_ADAPTER=$adapter on 127.0.0.1:${PORT[$adapter]}" >&2
  # shellcheck disable=SC2086 # EXTRA_SERVER_ENV is a list of NAME=value words
  env CABLE_ADAPTER="$adapter" REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
    PORT="${PORT[$adapter]}" BIND=127.0.0.1 ${EXTRA_SERVER_ENV:-} \
    "$SERVER_BIN" >"$OUT/server-$adapter.log" 2>&1 &
  SERVER_PID[$adapter]=$!
  PIDS+=("${SERVER_PID[$adapter]}")
  wait_for_port "${PORT[$adapter]}" "example-bench ($adapter)"
done

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
echo "==> $PAIRS pairs of runs: $CLIENTS clients, $SENDERS senders, $ROUNDS rounds; output in $OUT" >&2
for pair in $(seq 1 "$PAIRS"); do
  for adapter in memory redis; do
    run="$OUT/$adapter-$pair"
    server_before="$(cpu_secs "${SERVER_PID[$adapter]}")"
    redis_before="$(cpu_secs "$REDIS_PID")"
    target/release/cable-bench broadcast --url "ws://127.0.0.1:${PORT[$adapter]}/cable" \
      --clients "$CLIENTS" --senders "$SENDERS" --rounds "$ROUNDS" --timeout-secs 55 \
      >"$run.txt" 2>"$run.log"
    server_after="$(cpu_secs "${SERVER_PID[$adapter]}")"
    redis_after="$(cpu_secs "$REDIS_PID")"
    # The summary line plus the CPU the server and Redis used during the run.
    tail -n 1 "$run.txt" | python3 -c '
import json, sys
d = json.load(sys.stdin)
d["adapter"] = sys.argv[1]
d["server_cpu_secs"] = round(float(sys.argv[3]) - float(sys.argv[2]), 2)
d["redis_cpu_secs"] = round(float(sys.argv[5]) - float(sys.argv[4]), 2)
print(json.dumps(d))
' "$adapter" "$server_before" "$server_after" "$redis_before" "$redis_after" >"$run.json"
    echo "  $adapter #$pair: $(head -n 3 "$run.txt" | tail -n 2 | tr -s ' ' | tr '\n' ' ')" >&2
  done
done

echo
echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r), $(rustc --version), $(redis-server --version | cut -d' ' -f1-3)."
echo "Load average before the series: $LOAD_BEFORE (anything well above 0 means other work shared the cores)."
python3 - "$OUT" <<'EOF'
import glob, json, statistics, sys

out = sys.argv[1]
runs = {a: [json.load(open(p)) for p in sorted(glob.glob(f"{out}/{a}-*.json"))] for a in ("memory", "redis")}

def med(rs, f):
    return statistics.median(f(r) for r in rs)

cols = [
    ("time-to-all p50 (ms)", lambda r: r["time_to_all_ms"]["p50"], 3),
    ("time-to-all p99 (ms)", lambda r: r["time_to_all_ms"]["p99"], 3),
    ("per-delivery p50 (ms)", lambda r: r["latency_ms"]["p50"], 3),
    ("per-delivery p99 (ms)", lambda r: r["latency_ms"]["p99"], 3),
    ("deliveries/s", lambda r: r["deliveries_per_sec"], 0),
    ("server CPU µs/delivery", lambda r: 1e6 * r["server_cpu_secs"] / max(r["deliveries"], 1), 2),
]
print()
print(f"Medians of {len(runs['memory'])} runs each; {runs['memory'][0]['clients']} clients, "
      f"{runs['memory'][0]['senders']} senders, {runs['memory'][0]['rounds']} rounds per run.")
print()
print("| adapter | " + " | ".join(c[0] for c in cols) + " | lost (all runs) | Redis CPU s (median) |")
print("|---|" + "---:|" * (len(cols) + 2))
meds = {}
for a, rs in runs.items():
    meds[a] = [med(rs, c[1]) for c in cols]
    lost = sum(r["lost"] for r in rs)
    late = sum(r["late"] for r in rs)
    cells = [f"{m:.{c[2]}f}" for m, c in zip(meds[a], cols)]
    print(f"| {a} | " + " | ".join(cells) + f" | {lost} (late {late}) | {med(rs, lambda r: r['redis_cpu_secs']):.2f} |")
ratio = [f"{r / m:.2f}×" if m else "-" for r, m in zip(meds["redis"], meds["memory"])]
print("| redis/memory | " + " | ".join(ratio) + " | | |")
diff = meds["redis"][0] - meds["memory"][0]
print()
print(f"Redis minus memory, time-to-all p50: {diff:+.3f} ms; per-delivery p50: {meds['redis'][2] - meds['memory'][2]:+.3f} ms.")
EOF
echo "(per-run reports and JSON lines: $OUT)"
