#!/usr/bin/env bash
# The whole benchmark table of docs/benchmarks.md in one run.
#
# Builds cable-bench, cable-ref and example-bench (release); starts the raw reference server
# (cable-ref), example-bench with the in-memory adapter, example-bench with the Redis adapter
# (on a private redis-server on a spare port; the shared Redis is never touched) and, when Ruby's
# ActionCable and puma are installed, the real Rails server from ../shared/anchors/rails/; then
# runs, alternating the targets within each series:
#
#   broadcast   BROADCAST_CLIENTS (10,000) subscribers, SENDERS (4) senders, ROUNDS (50) rounds,
#               against the reference and both adapters, PAIRS (3) times each;
#   broadcast   RAILS_BROADCAST_CLIENTS (1,000) subscribers, RAILS_ROUNDS (10) rounds, against
#               Rails and the reference at the same size (only with Rails);
#   connect     CONNECT_CLIENTS (19,000) idle subscribed connections against a fresh reference
#               and a fresh example-bench, CONNECT_PAIRS (2) times each, and RAILS_CONNECT_CLIENTS
#               (2,000) against a fresh Rails; the server's RSS per connection;
#   echo        ECHO_CLIENTS (100) clients for ECHO_SECS (5) s against every target, PAIRS times.
#
# cable-bench reads each server's CPU time (/proc/<pid>/stat) around the measured phase and its
# RSS (/proc/<pid>/status) for connect. Prints Markdown tables of the medians with ratios to the
# reference. Every run is bounded (--timeout-secs); every process started here is stopped on
# exit. Settings above are environment variables; OUT (a new temporary directory) keeps every
# run's report and JSON line; RAILS=0 skips Rails. Not a test: nothing in scripts/test.sh runs it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BROADCAST_CLIENTS="${BROADCAST_CLIENTS:-10000}"
SENDERS="${SENDERS:-4}"
ROUNDS="${ROUNDS:-50}"
PAIRS="${PAIRS:-3}"
RAILS_BROADCAST_CLIENTS="${RAILS_BROADCAST_CLIENTS:-1000}"
RAILS_ROUNDS="${RAILS_ROUNDS:-10}"
CONNECT_CLIENTS="${CONNECT_CLIENTS:-19000}"
CONNECT_PAIRS="${CONNECT_PAIRS:-2}"
RAILS_CONNECT_CLIENTS="${RAILS_CONNECT_CLIENTS:-2000}"
ECHO_CLIENTS="${ECHO_CLIENTS:-100}"
ECHO_SECS="${ECHO_SECS:-5}"
RAILS="${RAILS:-1}"
RAILS_ANCHOR_DIR="${RAILS_ANCHOR_DIR:-$PWD/../shared/anchors/rails}"
OUT="${OUT:-$(mktemp -d -t bench.XXXXXX)}"
mkdir -p "$OUT"
# Clients come from several loopback addresses so that no run, nor the sockets left in
# TIME_WAIT by the one before, exhausts one address's ephemeral ports.
BIND_IPS="127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5"
BENCH=target/release/cable-bench

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

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
RAILS_STATE=""
stop_pid() {
  local pid="$1"
  kill -INT "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  if [[ -n "$RAILS_STATE" ]]; then
    ANCHOR_STATE_DIR="$RAILS_STATE" "$RAILS_ANCHOR_DIR/stop.sh" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

have_rails() {
  [[ "$RAILS" == 1 && -x "$RAILS_ANCHOR_DIR/start.sh" ]] && command -v puma >/dev/null &&
    ruby -e 'require "action_cable"' 2>/dev/null
}

echo "==> cargo build --release -p example-bench -p cable-bench" >&2
cargo build --release -p example-bench -p cable-bench >&2

REDIS_PORT="$(free_port)"
echo "==> redis-server on 127.0.0.1:$REDIS_PORT (private)" >&2
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
  --daemonize no --logfile "$OUT/redis.log" &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
wait_for_port "$REDIS_PORT" redis-server

declare -A PORT PID URL
# start_server NAME: starts target NAME (ref, memory, redis, rails) on a new port; sets
# PORT[NAME], PID[NAME], URL[NAME].
start_server() {
  local name="$1" port
  port="$(free_port)"
  PORT[$name]="$port"
  URL[$name]="ws://127.0.0.1:$port/cable"
  case "$name" in
    ref)
      PORT="$port" BIND=127.0.0.1 target/release/cable-ref >"$OUT/server-ref.log" 2>&1 &
      PID[$name]=$! ;;
    memory | redis)
      CABLE_ADAPTER="$name" REDIS_URL="redis://127.0.0.1:$REDIS_PORT" PORT="$port" \
        BIND=127.0.0.1 target/release/example-bench >"$OUT/server-$name.log" 2>&1 &
      PID[$name]=$! ;;
    rails)
      # The anchor identifies connections by ?user= and checks Origin unless told not to.
      RAILS_STATE="$(mktemp -d -p "$OUT" rails.XXXXXX)"
      ANCHOR_STATE_DIR="$RAILS_STATE" PORT="$port" CABLE_ADAPTER=async CABLE_DISABLE_FORGERY=1 \
        "$RAILS_ANCHOR_DIR/start.sh" >&2
      PID[$name]="$(cat "$RAILS_STATE/puma.pid")"
      URL[$name]="ws://127.0.0.1:$port/cable?user=bench" ;;
  esac
  [[ "$name" == rails ]] || PIDS+=("${PID[$name]}")
  wait_for_port "$port" "$name"
}

stop_server() {
  local name="$1"
  if [[ "$name" == rails ]]; then
    ANCHOR_STATE_DIR="$RAILS_STATE" "$RAILS_ANCHOR_DIR/stop.sh" >/dev/null 2>&1 || true
    RAILS_STATE=""
  else
    stop_pid "${PID[$name]}"
  fi
}

# run SERIES NAME N MODE ARGS...: one cable-bench run against NAME; the JSON line plus the
# target's name goes to $OUT/SERIES-NAME-N.json.
run() {
  local series="$1" name="$2" n="$3" mode="$4"
  shift 4
  local file="$OUT/$series-$name-$n"
  if ! "$BENCH" "$mode" --url "${URL[$name]}" --server-pid "${PID[$name]}" --bind-ips "$BIND_IPS" \
    "$@" >"$file.txt" 2>"$file.log"; then
    echo "  $series $name #$n FAILED (see $file.log)" >&2
    return 0
  fi
  tail -n 1 "$file.txt" | python3 -c '
import json, sys
d = json.load(sys.stdin); d["target"] = sys.argv[1]; d["series"] = sys.argv[2]
print(json.dumps(d))' "$name" "$series" >"$file.json"
  echo "  $series $name #$n: $(sed -n 2p "$file.txt" | tr -s ' ')" >&2
}

RAILS_ON=0
if have_rails; then RAILS_ON=1; else echo "==> Rails anchor not available: its rows are skipped" >&2; fi
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"

TARGETS=(ref memory redis)
for name in "${TARGETS[@]}"; do start_server "$name"; done
if ((RAILS_ON)); then start_server rails; fi

echo "==> broadcast: $BROADCAST_CLIENTS subscribers, $SENDERS senders, $ROUNDS rounds, $PAIRS× each" >&2
for n in $(seq 1 "$PAIRS"); do
  for name in "${TARGETS[@]}"; do
    run broadcast "$name" "$n" broadcast --clients "$BROADCAST_CLIENTS" --senders "$SENDERS" \
      --rounds "$ROUNDS" --ramp-per-sec 3000 --timeout-secs 90
  done
done

echo "==> echo: $ECHO_CLIENTS clients, ${ECHO_SECS} s, $PAIRS× each" >&2
ECHO_TARGETS=("${TARGETS[@]}")
if ((RAILS_ON)); then ECHO_TARGETS+=(rails); fi
for n in $(seq 1 "$PAIRS"); do
  for name in "${ECHO_TARGETS[@]}"; do
    run echo "$name" "$n" echo --clients "$ECHO_CLIENTS" --duration-secs "$ECHO_SECS" --timeout-secs 60
  done
done

if ((RAILS_ON)); then
  echo "==> broadcast (Rails size): $RAILS_BROADCAST_CLIENTS subscribers, $RAILS_ROUNDS rounds" >&2
  for n in $(seq 1 "$PAIRS"); do
    for name in ref memory rails; do
      run broadcast-small "$name" "$n" broadcast --clients "$RAILS_BROADCAST_CLIENTS" \
        --senders "$SENDERS" --rounds "$RAILS_ROUNDS" --ramp-per-sec 500 --timeout-secs 120 \
        --round-timeout-secs 10
    done
  done
fi
for name in "${TARGETS[@]}"; do stop_server "$name"; done
if ((RAILS_ON)); then stop_server rails; fi

# Idle memory: each run on a freshly started server, so earlier runs' heap does not count.
echo "==> connect: $CONNECT_CLIENTS idle connections, fresh server per run, $CONNECT_PAIRS× each" >&2
for n in $(seq 1 "$CONNECT_PAIRS"); do
  for name in ref memory; do
    start_server "$name"
    run connect "$name" "$n" connect --clients "$CONNECT_CLIENTS" --ramp-per-sec 3000 \
      --hold-secs 4 --timeout-secs 60
    stop_server "$name"
  done
done
if ((RAILS_ON)); then
  start_server rails
  run connect rails 1 connect --clients "$RAILS_CONNECT_CLIENTS" --ramp-per-sec 500 \
    --hold-secs 4 --timeout-secs 60
  stop_server rails
fi

echo
echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r), $(rustc --version), $(redis-server --version | cut -d' ' -f1-3)$( ((RAILS_ON)) && echo ", Rails ActionCable $(ruby -e 'require "action_cable"; print ActionCable.version') on puma $(puma --version 2>/dev/null | cut -d' ' -f3)")."
echo "Load average before the series: $LOAD_BEFORE (anything well above 0 means other work shared the cores)."
python3 - "$OUT" <<'EOF'
import glob, json, statistics, sys

out = sys.argv[1]
runs = {}
for p in sorted(glob.glob(f"{out}/*.json")):
    d = json.load(open(p))
    runs.setdefault((d["series"], d["target"]), []).append(d)

def med(series, target, f):
    rs = runs.get((series, target), [])
    vals = [v for v in (f(r) for r in rs) if v is not None]
    return statistics.median(vals) if vals else None

def fmt(v, digits):
    return "–" if v is None else f"{v:,.{digits}f}"

def ratio(a, b):
    return "–" if a is None or b is None or b == 0 else f"{a / b:.2f}×"

NAMES = {"ref": "raw reference (cable-ref)", "memory": "example-bench, memory",
         "redis": "example-bench, Redis", "rails": "Rails 6.1 ActionCable (puma)"}

def table(title, series, targets, cols, note_rows=()):
    present = [t for t in targets if (series, t) in runs]
    if not present:
        return
    n = {t: len(runs[(series, t)]) for t in present}
    print(f"\n### {title}\n")
    print("| server | runs | " + " | ".join(c[0] for c in cols) + " |")
    print("|---|---:|" + "---:|" * len(cols))
    meds = {t: [med(series, t, c[1]) for c in cols] for t in present}
    for t in present:
        print(f"| {NAMES[t]} | {n[t]} | " + " | ".join(fmt(m, c[2]) for m, c in zip(meds[t], cols)) + " |")
    for a, b in note_rows:
        if a in meds and b in meds:
            print(f"| **{a}/{b}** | | " + " | ".join(ratio(x, y) for x, y in zip(meds[a], meds[b])) + " |")
    return meds

ttall = lambda q: (lambda r: r["time_to_all_ms"][q])
lat = lambda q: (lambda r: r["latency_ms"][q])
bcols = [
    ("time-to-all p50 (ms)", ttall("p50"), 1),
    ("time-to-all p99 (ms)", ttall("p99"), 1),
    ("per-delivery p50 (ms)", lat("p50"), 1),
    ("per-delivery p99 (ms)", lat("p99"), 1),
    ("deliveries/s", lambda r: r["deliveries_per_sec"], 0),
    ("server CPU µs/delivery", lambda r: r.get("server_cpu_us_per_delivery"), 2),
    ("lost (median)", lambda r: r["lost"], 0),
]

b = table("Broadcast to many subscribers", "broadcast", ["ref", "memory", "redis"], bcols,
          [("memory", "ref"), ("redis", "ref"), ("redis", "memory")])
s = table("Broadcast, Rails size", "broadcast-small", ["ref", "memory", "rails"], bcols,
          [("memory", "ref"), ("rails", "ref")])
ccols = [
    ("connections", lambda r: r["clients"], 0),
    ("RSS per connection (bytes)", lambda r: r.get("bytes_per_connection"), 0),
    ("RSS after (MiB)", lambda r: r.get("rss_after_bytes", 0) / 1048576, 1),
    ("connect CPU µs/connection", lambda r: 1e6 * r["server_connect_cpu_secs"] / r["clients"] if "server_connect_cpu_secs" in r else None, 0),
    ("connections lost", lambda r: r["connections_lost"], 0),
]
c = table("Idle subscribed connections", "connect", ["ref", "memory", "rails"], ccols,
          [("memory", "ref"), ("rails", "ref")])
ecols = [
    ("round trips/s", lambda r: r["round_trips_per_sec"], 0),
    ("round trip p50 (ms)", lat("p50"), 2),
    ("round trip p99 (ms)", lat("p99"), 2),
    ("server CPU µs/round trip", lambda r: r.get("server_cpu_us_per_round_trip"), 2),
]
e = table("Echo round trips", "echo", ["ref", "memory", "redis", "rails"], ecols,
          [("memory", "ref"), ("redis", "ref"), ("rails", "ref")])

print("\n### Targets\n")
def check(name, ok, detail):
    print(f"- {'met' if ok else 'MISSED'}: {name} ({detail})")
if b and "memory" in b and "ref" in b:
    m, r = b["memory"], b["ref"]
    lost = sum(x["lost"] for t in ("memory", "redis") for x in runs.get(("broadcast", t), []))
    check("broadcast time-to-all p50 ≤ 1.3× reference", m[0] <= 1.3 * r[0], ratio(m[0], r[0]))
    check("broadcast time-to-all p99 ≤ 1.5× reference", m[1] <= 1.5 * r[1], ratio(m[1], r[1]))
    check("zero lost", lost == 0, f"{lost} lost")
    if m[5] and r[5]:
        check("server CPU per delivery ≤ 2× reference", m[5] <= 2 * r[5], ratio(m[5], r[5]))
    if "redis" in b:
        check("Redis ≤ 1.3× in-memory (time-to-all p50)", b["redis"][0] <= 1.3 * m[0], ratio(b["redis"][0], m[0]))
if c and "memory" in c and c["memory"][1] is not None:
    check(f"{int(c['memory'][0]):,} idle connections at ≤ 8 KiB RSS each", c["memory"][1] <= 8192,
          f"{c['memory'][1]:,.0f} bytes")
if e and "memory" in e and "ref" in e:
    check("echo round trips/s ≥ 0.7× reference", e["memory"][0] >= 0.7 * e["ref"][0], ratio(e["memory"][0], e["ref"][0]))
EOF
echo
echo "(per-run reports and JSON lines: $OUT)"
