#!/usr/bin/env bash
# The whole benchmark table of docs/benchmarks.md in one run.
#
# Builds cable-bench, cable-ref and example-bench (release); starts the raw reference server
# (cable-ref), example-bench with the in-memory adapter, example-bench with the Redis adapter
# (on a private redis-server on a spare port; the machine's default Redis is never touched) and
# the real Rails server, the Rails reference app of interop/rails (Debian's Ruby ActionCable on
# puma); then runs these series, alternating the targets within each:
#
#   broadcast   BROADCAST_CLIENTS (10,000) subscribers, SENDERS (4) senders, ROUNDS (50) rounds,
#               against the reference and both adapters, PAIRS (3) times each;
#   echo        ECHO_CLIENTS (100; a list such as "100 1000" runs each size, the first as series
#               `echo`, the others as `echo-N`) clients for ECHO_SECS (5) s against every target,
#               and against example-bench with `ACTIONS=any` (its channel untyped: what
#               `AnyAction` costs), PAIRS times;
#   broadcast-small
#               RAILS_BROADCAST_CLIENTS (1,000) subscribers, RAILS_ROUNDS (10) rounds, against
#               Rails, the reference and example-bench at Rails' size, PAIRS times;
#   redis       REDIS_CLIENTS (1,000) subscribers, SENDERS senders, REDIS_ROUNDS (200) rounds,
#               example-bench with the in-memory and with the Redis adapter, REDIS_PAIRS (5) times
#               each: what the Redis hop costs where fan-out does not hide it;
#   backends    BACKEND_CLIENTS (1,000) subscribers, SENDERS senders, BACKEND_ROUNDS (200) rounds,
#               example-bench on every pub/sub backend (memory, Redis, PostgreSQL on a private
#               cluster on a spare port, Solid Cable in that cluster, NATS on a private
#               nats-server), BACKEND_PAIRS (3) times
#               each: what each backend's hop costs against the in-memory adapter (Solid Cable's
#               is bounded by its polling interval, 0.1 s);
#   history     HISTORY_CLIENTS (10,000) subscribers, SENDERS senders, HISTORY_ROUNDS (50) rounds:
#               example-bench with each adapter, history off (stock-protocol clients) and on
#               (CABLE_HISTORY=on; stock-protocol clients, then extended-protocol clients whose
#               frames carry positions), PAIRS times each: what keeping history costs;
#   metrics     BROADCAST_CLIENTS subscribers, SENDERS senders, ROUNDS rounds: example-bench
#               (memory) with metrics off and on (METRICS=on), PAIRS times each: what counting costs;
#   features    BROADCAST_CLIENTS subscribers, SENDERS senders, ROUNDS rounds: the reference, then
#               example-bench (memory) bare with plain clients, bare with extended-protocol
#               clients, and with each feature on alone and all together (history: CABLE_HISTORY=on;
#               metrics: METRICS=on; presence: PRESENCE=on; all three), extended-protocol clients,
#               PAIRS times each: what each feature adds to the broadcast path, and where all of
#               them together stand against the reference;
#   sse         SSE_CLIENTS (10,000) subscribers, SENDERS senders, SSE_ROUNDS (50) rounds:
#               example-bench (memory) with its subscribers on WebSocket and on Server-Sent Events
#               (`/events`, `cable-bench broadcast --transport sse`; the senders are then WebSocket
#               clients besides), alternating, SSE_PAIRS (5) pairs: what the event-stream transport
#               costs per delivery against the WebSocket, with each pair's ratios;
#   connect     CONNECT_CLIENTS (19,000) idle subscribed connections against a fresh reference
#               and a fresh example-bench, CONNECT_PAIRS (2) times each, and RAILS_CONNECT_CLIENTS
#               (2,000) against a fresh Rails; the server's RSS per connection.
#
# Server CPU is one thing throughout: the server process's CPU time (utime + stime of
# /proc/<pid>/stat, every thread) during the measured phase of a run only, which cable-bench
# reads itself (--server-pid); connecting and closing are not in it. cable-bench also reads the
# server's RSS (/proc/<pid>/status) for connect. Prints Markdown tables of the medians with
# ratios to the reference.
#
# Settings are environment variables: the sizes above; SERIES, the series to run (default all:
# "broadcast echo broadcast-small redis backends history metrics features sse connect"); RAILS=0 leaves Rails out (with RAILS=1, the
# default, the script stops unless Ruby's ActionCable is installed: apt-get install ruby
# ruby-actioncable puma ruby-redis); QUICK=1 makes every series tiny, to check that the script
# and every target work (its figures mean nothing); OUT (a new temporary directory) keeps every
# run's report and JSON line; SERVER_BIN (default target/release/example-bench) and
# EXTRA_SERVER_ENV (NAME=value words, e.g. RUST_LOG=info) change the example-bench targets;
# BASELINE_BIN, another build of example-bench (an earlier commit's, say), adds it as one more
# target with the in-memory adapter, next to example-bench in every series it runs in, so that
# a change is measured before and after in the same series (a ratio row compares the two). Every run is bounded (--timeout-secs); every process started here is stopped on
# exit. Not a test: nothing in scripts/test.sh runs it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib.sh

if [[ "${QUICK:-0}" == 1 ]]; then
  : "${BROADCAST_CLIENTS:=200}" "${ROUNDS:=5}" "${PAIRS:=1}" "${RAILS_BROADCAST_CLIENTS:=50}"
  : "${RAILS_ROUNDS:=3}" "${CONNECT_CLIENTS:=300}" "${CONNECT_PAIRS:=1}" "${RAILS_CONNECT_CLIENTS:=100}"
  : "${ECHO_CLIENTS:=10}" "${ECHO_SECS:=1}" "${REDIS_CLIENTS:=100}" "${REDIS_ROUNDS:=20}" "${REDIS_PAIRS:=1}"
  : "${HISTORY_CLIENTS:=200}" "${HISTORY_ROUNDS:=5}" "${BACKEND_CLIENTS:=100}" "${BACKEND_ROUNDS:=20}"
  : "${BACKEND_PAIRS:=1}" "${SSE_CLIENTS:=200}" "${SSE_ROUNDS:=5}" "${SSE_PAIRS:=1}"
fi
BROADCAST_CLIENTS="${BROADCAST_CLIENTS:-10000}"
SENDERS="${SENDERS:-4}"
ROUNDS="${ROUNDS:-50}"
PAIRS="${PAIRS:-3}"
RAILS_BROADCAST_CLIENTS="${RAILS_BROADCAST_CLIENTS:-1000}"
RAILS_ROUNDS="${RAILS_ROUNDS:-10}"
REDIS_CLIENTS="${REDIS_CLIENTS:-1000}"
REDIS_ROUNDS="${REDIS_ROUNDS:-200}"
REDIS_PAIRS="${REDIS_PAIRS:-5}"
BACKEND_CLIENTS="${BACKEND_CLIENTS:-1000}"
BACKEND_ROUNDS="${BACKEND_ROUNDS:-200}"
BACKEND_PAIRS="${BACKEND_PAIRS:-3}"
HISTORY_CLIENTS="${HISTORY_CLIENTS:-10000}"
HISTORY_ROUNDS="${HISTORY_ROUNDS:-50}"
SSE_CLIENTS="${SSE_CLIENTS:-10000}"
SSE_ROUNDS="${SSE_ROUNDS:-50}"
SSE_PAIRS="${SSE_PAIRS:-5}"
CONNECT_CLIENTS="${CONNECT_CLIENTS:-19000}"
CONNECT_PAIRS="${CONNECT_PAIRS:-2}"
RAILS_CONNECT_CLIENTS="${RAILS_CONNECT_CLIENTS:-2000}"
ECHO_CLIENTS="${ECHO_CLIENTS:-100}"
ECHO_SECS="${ECHO_SECS:-5}"
SERIES="${SERIES:-broadcast echo broadcast-small redis backends history metrics features sse connect}"
RAILS="${RAILS:-1}"
SERVER_BIN="${SERVER_BIN:-target/release/example-bench}"
BASELINE_BIN="${BASELINE_BIN:-}"
if [[ -n "$BASELINE_BIN" && ! -x "$BASELINE_BIN" ]]; then
  echo "scripts/bench.sh: BASELINE_BIN=$BASELINE_BIN is not an executable" >&2
  exit 1
fi
OUT="${OUT:-$(mktemp -d -t bench.XXXXXX)}"
mkdir -p "$OUT"
# Clients come from several loopback addresses so that no run, nor the sockets left in
# TIME_WAIT by the one before, exhausts one address's ephemeral ports.
BIND_IPS="127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5"
BENCH=target/release/cable-bench

want() { [[ " $SERIES " == *" $1 "* ]]; }

RAILS_ON=0
if [[ "$RAILS" == 1 ]] && { want echo || want broadcast-small || want connect; }; then
  if why="$(rails_missing)"; then
    echo "scripts/bench.sh: $why, so Rails cannot be measured." >&2
    echo "  Install it (sudo apt-get install ${RAILS_PACKAGES[*]}) or leave Rails out with RAILS=0." >&2
    exit 1
  fi
  RAILS_ON=1
fi

step "cargo build --release -p example-bench -p cable-bench" >&2
cargo build --release -p example-bench -p cable-bench >&2

# Every process this script starts is stopped on exit: the servers (the Rails app by its
# stop.sh), then Redis.
declare -A PID URL RAILS_STATE
# shellcheck disable=SC2016 # expanded when the script exits
on_exit 'stop_pid "${REDIS_PID:-}" TERM'
# shellcheck disable=SC2016
on_exit 'for name in "${!PID[@]}"; do stop_server "$name"; done'

step "redis-server on 127.0.0.1 (private, spare port)" >&2
start_private_redis "$OUT/redis.log"
# The backends other than Redis, private too, only for the series that uses them.
BACKENDS=(memory redis)
if want backends; then
  step "PostgreSQL on 127.0.0.1 (private cluster, spare port)" >&2
  # shellcheck disable=SC2016 # expanded when the script exits
  on_exit 'stop_private_postgres "$OUT/postgres"'
  start_private_postgres "$OUT/postgres"
  step "nats-server with JetStream on 127.0.0.1 (private, spare port)" >&2
  # shellcheck disable=SC2016 # expanded when the script exits
  on_exit 'stop_pid "${NATS_PID:-}" TERM'
  start_private_nats "$OUT/nats"
  BACKENDS+=(postgres solid_cable nats)
fi

# start_server NAME: starts target NAME (ref, memory, baseline, redis, memory-history,
# redis-history, rails) on a new port; sets PID[NAME] and URL[NAME].
start_server() {
  local name="$1" port
  port="$(free_port)"
  URL[$name]="ws://127.0.0.1:$port/cable"
  case "$name" in
    ref)
      PORT="$port" BIND=127.0.0.1 target/release/cable-ref >"$OUT/server-ref.log" 2>&1 &
      PID[$name]=$! ;;
    memory | redis)
      # shellcheck disable=SC2086 # EXTRA_SERVER_ENV is a list of NAME=value words
      env CABLE_ADAPTER="$name" REDIS_URL="redis://127.0.0.1:$REDIS_PORT" PORT="$port" \
        BIND=127.0.0.1 ${EXTRA_SERVER_ENV:-} "$SERVER_BIN" >"$OUT/server-$name.log" 2>&1 &
      PID[$name]=$! ;;
    postgres)
      # shellcheck disable=SC2086 # EXTRA_SERVER_ENV is a list of NAME=value words
      env CABLE_ADAPTER=postgres DATABASE_URL="$PG_URL" PORT="$port" BIND=127.0.0.1 \
        ${EXTRA_SERVER_ENV:-} "$SERVER_BIN" >"$OUT/server-$name.log" 2>&1 &
      PID[$name]=$! ;;
    solid_cable)
      # shellcheck disable=SC2086 # EXTRA_SERVER_ENV is a list of NAME=value words
      env CABLE_ADAPTER=solid_cable CABLE_DATABASE_URL="$PG_URL" PORT="$port" BIND=127.0.0.1 \
        ${EXTRA_SERVER_ENV:-} "$SERVER_BIN" >"$OUT/server-$name.log" 2>&1 &
      PID[$name]=$! ;;
    nats)
      # shellcheck disable=SC2086 # EXTRA_SERVER_ENV is a list of NAME=value words
      env CABLE_ADAPTER=nats NATS_URL="nats://127.0.0.1:$NATS_PORT" PORT="$port" BIND=127.0.0.1 \
        ${EXTRA_SERVER_ENV:-} "$SERVER_BIN" >"$OUT/server-$name.log" 2>&1 &
      PID[$name]=$! ;;
    memory-metrics)
      # shellcheck disable=SC2086 # EXTRA_SERVER_ENV is a list of NAME=value words
      env CABLE_ADAPTER=memory METRICS=on PORT="$port" BIND=127.0.0.1 ${EXTRA_SERVER_ENV:-} \
        "$SERVER_BIN" >"$OUT/server-$name.log" 2>&1 &
      PID[$name]=$! ;;
    memory-presence)
      # shellcheck disable=SC2086 # EXTRA_SERVER_ENV is a list of NAME=value words
      env CABLE_ADAPTER=memory PRESENCE=on PORT="$port" BIND=127.0.0.1 ${EXTRA_SERVER_ENV:-} \
        "$SERVER_BIN" >"$OUT/server-$name.log" 2>&1 &
      PID[$name]=$! ;;
    memory-any)
      # shellcheck disable=SC2086 # EXTRA_SERVER_ENV is a list of NAME=value words
      env CABLE_ADAPTER=memory ACTIONS=any PORT="$port" BIND=127.0.0.1 ${EXTRA_SERVER_ENV:-} \
        "$SERVER_BIN" >"$OUT/server-$name.log" 2>&1 &
      PID[$name]=$! ;;
    memory-all)
      # shellcheck disable=SC2086 # EXTRA_SERVER_ENV is a list of NAME=value words
      env CABLE_ADAPTER=memory CABLE_HISTORY=on METRICS=on PRESENCE=on PORT="$port" \
        BIND=127.0.0.1 ${EXTRA_SERVER_ENV:-} "$SERVER_BIN" >"$OUT/server-$name.log" 2>&1 &
      PID[$name]=$! ;;
    memory-history | redis-history)
      # shellcheck disable=SC2086 # EXTRA_SERVER_ENV is a list of NAME=value words
      env CABLE_ADAPTER="${name%-history}" CABLE_HISTORY=on REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
        PORT="$port" BIND=127.0.0.1 ${EXTRA_SERVER_ENV:-} "$SERVER_BIN" >"$OUT/server-$name.log" 2>&1 &
      PID[$name]=$! ;;
    baseline)
      # shellcheck disable=SC2086 # EXTRA_SERVER_ENV is a list of NAME=value words
      env CABLE_ADAPTER=memory PORT="$port" BIND=127.0.0.1 ${EXTRA_SERVER_ENV:-} \
        "$BASELINE_BIN" >"$OUT/server-$name.log" 2>&1 &
      PID[$name]=$! ;;
    rails)
      # The Rails app identifies connections by ?user= and checks Origin unless told not to.
      RAILS_STATE[$name]="$(mktemp -d -p "$OUT" rails.XXXXXX)"
      RAILS_STATE_DIR="${RAILS_STATE[$name]}" PORT="$port" CABLE_ADAPTER=async \
        CABLE_DISABLE_FORGERY=1 interop/rails/start.sh >&2
      PID[$name]="$(cat "${RAILS_STATE[$name]}/puma.pid")"
      URL[$name]="ws://127.0.0.1:$port/cable?user=bench" ;;
  esac
  wait_for_port "$port" "$name" || exit 1
}

stop_server() {
  local name="$1"
  [[ -n "${PID[$name]:-}" ]] || return 0
  if [[ "$name" == rails ]]; then
    RAILS_STATE_DIR="${RAILS_STATE[$name]}" interop/rails/stop.sh >/dev/null 2>&1 || true
  else
    stop_pid "${PID[$name]}" INT
  fi
  unset "PID[$name]"
}

# run SERIES NAME N MODE ARGS...: one cable-bench run against NAME; the JSON line plus the
# target's name (LABEL, when set: one server measured two ways) goes to
# $OUT/SERIES-LABEL-N.json.
run() {
  local series="$1" name="$2" n="$3" mode="$4"
  shift 4
  local label="${LABEL:-$name}"
  local file="$OUT/$series-$label-$n"
  if ! "$BENCH" "$mode" --url "${URL[$name]}" --server-pid "${PID[$name]}" --bind-ips "$BIND_IPS" \
    "$@" >"$file.txt" 2>"$file.log"; then
    echo "  $series $name #$n FAILED (see $file.log)" >&2
    return 0
  fi
  tail -n 1 "$file.txt" | python3 -c '
import json, sys
d = json.load(sys.stdin); d["target"] = sys.argv[1]; d["series"] = sys.argv[2]; d["pair"] = int(sys.argv[3])
print(json.dumps(d))' "$label" "$series" "$n" >"$file.json"
  echo "  $series $label #$n: $(sed -n 2p "$file.txt" | tr -s ' ')" >&2
}

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"

TARGETS=(ref memory redis)
# With a baseline build, it runs right after the build under test in every series.
MEMORY_TARGETS=(memory)
if [[ -n "$BASELINE_BIN" ]]; then
  TARGETS=(ref memory baseline redis)
  MEMORY_TARGETS=(memory baseline)
fi
if want broadcast || want echo || want broadcast-small || want redis || want history || want metrics || want features; then
  for name in "${TARGETS[@]}"; do start_server "$name"; done
  if want echo; then start_server memory-any; fi
  if ((RAILS_ON)) && { want echo || want broadcast-small; }; then start_server rails; fi
fi

if want broadcast; then
  step "broadcast: $BROADCAST_CLIENTS subscribers, $SENDERS senders, $ROUNDS rounds, $PAIRS× each" >&2
  for n in $(seq 1 "$PAIRS"); do
    for name in "${TARGETS[@]}"; do
      run broadcast "$name" "$n" broadcast --clients "$BROADCAST_CLIENTS" --senders "$SENDERS" \
        --rounds "$ROUNDS" --ramp-per-sec 3000 --timeout-secs 90
    done
  done
fi

if want echo; then
  first_size=1
  for clients in $ECHO_CLIENTS; do
    step "echo: $clients clients, ${ECHO_SECS} s, $PAIRS× each" >&2
    series=echo
    ECHO_TARGETS=("${TARGETS[@]}" memory-any)
    if ((first_size)); then
      if ((RAILS_ON)); then ECHO_TARGETS+=(rails); fi
    else
      series="echo-$clients"
    fi
    first_size=0
    for n in $(seq 1 "$PAIRS"); do
      for name in "${ECHO_TARGETS[@]}"; do
        run "$series" "$name" "$n" echo --clients "$clients" --duration-secs "$ECHO_SECS" --timeout-secs 60
      done
    done
  done
fi

if want broadcast-small; then
  SMALL_TARGETS=(ref "${MEMORY_TARGETS[@]}")
  if ((RAILS_ON)); then SMALL_TARGETS+=(rails); fi
  step "broadcast (Rails size): $RAILS_BROADCAST_CLIENTS subscribers, $RAILS_ROUNDS rounds, $PAIRS× each" >&2
  for n in $(seq 1 "$PAIRS"); do
    for name in "${SMALL_TARGETS[@]}"; do
      run broadcast-small "$name" "$n" broadcast --clients "$RAILS_BROADCAST_CLIENTS" \
        --senders "$SENDERS" --rounds "$RAILS_ROUNDS" --ramp-per-sec 500 --timeout-secs 120 \
        --round-timeout-secs 10
    done
  done
fi

if want redis; then
  step "redis: $REDIS_CLIENTS subscribers, $SENDERS senders, $REDIS_ROUNDS rounds, memory and Redis $REDIS_PAIRS× each" >&2
  for n in $(seq 1 "$REDIS_PAIRS"); do
    for name in memory redis; do
      run redis "$name" "$n" broadcast --clients "$REDIS_CLIENTS" --senders "$SENDERS" \
        --rounds "$REDIS_ROUNDS" --ramp-per-sec 3000 --timeout-secs 90
    done
  done
fi
if want backends; then
  for name in "${BACKENDS[@]}"; do [[ -n "${PID[$name]:-}" ]] || start_server "$name"; done
  step "backends: $BACKEND_CLIENTS subscribers, $SENDERS senders, $BACKEND_ROUNDS rounds, ${BACKENDS[*]}, $BACKEND_PAIRS× each" >&2
  for n in $(seq 1 "$BACKEND_PAIRS"); do
    for name in "${BACKENDS[@]}"; do
      run backends "$name" "$n" broadcast --clients "$BACKEND_CLIENTS" --senders "$SENDERS" \
        --rounds "$BACKEND_ROUNDS" --ramp-per-sec 3000 --timeout-secs 90
    done
  done
fi
if want history; then
  for name in memory-history redis-history; do start_server "$name"; done
  step "history: $HISTORY_CLIENTS subscribers, $SENDERS senders, $HISTORY_ROUNDS rounds, history off and on, $PAIRS× each" >&2
  for n in $(seq 1 "$PAIRS"); do
    for adapter in memory redis; do
      for name in "$adapter" "$adapter-history"; do
        run history "$name" "$n" broadcast --clients "$HISTORY_CLIENTS" --senders "$SENDERS" \
          --rounds "$HISTORY_ROUNDS" --ramp-per-sec 3000 --timeout-secs 90
      done
      LABEL="$adapter-history-ext" run history "$adapter-history" "$n" broadcast --protocol ext \
        --clients "$HISTORY_CLIENTS" --senders "$SENDERS" --rounds "$HISTORY_ROUNDS" \
        --ramp-per-sec 3000 --timeout-secs 90
    done
  done
fi
if want metrics; then
  start_server memory-metrics
  step "metrics: $BROADCAST_CLIENTS subscribers, $SENDERS senders, $ROUNDS rounds, metrics off and on, $PAIRS× each" >&2
  for n in $(seq 1 "$PAIRS"); do
    for name in memory memory-metrics; do
      run metrics "$name" "$n" broadcast --clients "$BROADCAST_CLIENTS" --senders "$SENDERS" \
        --rounds "$ROUNDS" --ramp-per-sec 3000 --timeout-secs 90
    done
  done
fi
if want features; then
  for name in memory-history memory-metrics memory-presence memory-all; do
    [[ -n "${PID[$name]:-}" ]] || start_server "$name"
  done
  step "features: $BROADCAST_CLIENTS subscribers, $SENDERS senders, $ROUNDS rounds, each feature alone and all on, $PAIRS× each" >&2
  for n in $(seq 1 "$PAIRS"); do
    run features ref "$n" broadcast --clients "$BROADCAST_CLIENTS" --senders "$SENDERS" \
      --rounds "$ROUNDS" --ramp-per-sec 3000 --timeout-secs 90
    run features memory "$n" broadcast --clients "$BROADCAST_CLIENTS" --senders "$SENDERS" \
      --rounds "$ROUNDS" --ramp-per-sec 3000 --timeout-secs 90
    for name in memory memory-history memory-metrics memory-presence memory-all; do
      LABEL="$name-ext" run features "$name" "$n" broadcast --protocol ext \
        --clients "$BROADCAST_CLIENTS" --senders "$SENDERS" --rounds "$ROUNDS" \
        --ramp-per-sec 3000 --timeout-secs 90
    done
  done
fi
if want sse; then
  [[ -n "${PID[memory]:-}" ]] || start_server memory
  step "sse: $SSE_CLIENTS subscribers on WebSocket and on Server-Sent Events, $SENDERS senders, $SSE_ROUNDS rounds, $SSE_PAIRS pairs" >&2
  for n in $(seq 1 "$SSE_PAIRS"); do
    for transport in websocket sse; do
      LABEL="$transport" run sse memory "$n" broadcast --transport "$transport" \
        --clients "$SSE_CLIENTS" --senders "$SENDERS" --rounds "$SSE_ROUNDS" \
        --ramp-per-sec 3000 --timeout-secs 120
    done
  done
fi
for name in "${!PID[@]}"; do stop_server "$name"; done

if want connect; then
  # Idle memory: each run on a freshly started server, so earlier runs' heap does not count.
  step "connect: $CONNECT_CLIENTS idle connections, fresh server per run, $CONNECT_PAIRS× each" >&2
  for n in $(seq 1 "$CONNECT_PAIRS"); do
    for name in ref "${MEMORY_TARGETS[@]}"; do
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
fi

echo
echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r), $(rustc --version), $(redis-server --version | cut -d' ' -f1-3)$( ((RAILS_ON)) && echo ", Rails ActionCable $(ruby -e 'require "action_cable"; print ActionCable.version') on puma $(puma --version 2>/dev/null | cut -d' ' -f3)")."
echo "Load average before the series: $LOAD_BEFORE (anything well above 0 means other work shared the cores)."
if [[ "${QUICK:-0}" == 1 ]]; then echo "QUICK=1: tiny runs that check the script and every target; these figures mean nothing."; fi
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
         "baseline": "example-bench, baseline build (memory)",
         "redis": "example-bench, Redis", "rails": "Rails 6.1 ActionCable (puma)",
         "memory-any": "example-bench, memory, AnyAction channel",
         "memory-history": "memory, history on, plain clients",
         "memory-history-ext": "memory, history on, ext clients",
         "redis-history": "Redis, history on, plain clients",
         "redis-history-ext": "Redis, history on, ext clients",
         "memory-metrics": "example-bench, memory, metrics on",
         "memory-ext": "memory, ext clients, no feature on",
         "memory-metrics-ext": "memory, ext clients, metrics on",
         "memory-presence-ext": "memory, ext clients, presence on",
         "memory-all-ext": "memory, ext clients, history + metrics + presence on",
         "postgres": "example-bench, PostgreSQL (LISTEN/NOTIFY)",
         "solid_cable": "example-bench, Solid Cable (PostgreSQL, polling 0.1 s)",
         "nats": "example-bench, NATS (core subjects)",
         "websocket": "example-bench, memory: WebSocket subscribers",
         "sse": "example-bench, memory: Server-Sent Events subscribers"}

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

b = table("Broadcast to many subscribers", "broadcast", ["ref", "memory", "baseline", "redis"], bcols,
          [("memory", "ref"), ("memory", "baseline"), ("redis", "ref"), ("redis", "memory")])
s = table("Broadcast, Rails size", "broadcast-small", ["ref", "memory", "baseline", "rails"], bcols,
          [("memory", "ref"), ("memory", "baseline"), ("rails", "ref")])
r = table("Redis vs in-memory adapter", "redis", ["memory", "redis"], bcols, [("redis", "memory")])
BACKEND_TARGETS = ["memory", "redis", "postgres", "solid_cable", "nats"]
table("Every backend vs the in-memory adapter", "backends", BACKEND_TARGETS, bcols,
      [(t, "memory") for t in BACKEND_TARGETS[1:]])
if r and "memory" in r and "redis" in r:
    rs = runs[("redis", "redis")] + runs[("redis", "memory")]
    late = sum(x.get("late", 0) for x in rs)
    print(f"\nRedis minus memory at the median: time-to-all p50 {r['redis'][0] - r['memory'][0]:+.2f} ms, "
          f"per-delivery p50 {r['redis'][2] - r['memory'][2]:+.2f} ms; "
          f"{rs[0]['clients']:,} subscribers, {rs[0]['senders']} senders, {rs[0]['rounds']} rounds per run; "
          f"{sum(x['lost'] for x in rs)} lost and {late} late in all runs.")
sse = table("Server-Sent Events vs WebSocket", "sse", ["websocket", "sse"], bcols, [("sse", "websocket")])
if sse and "sse" in sse and "websocket" in sse:
    # Each pair ran back to back on the same server: its ratios are the least noisy figures.
    pairs = {}
    for t in ("websocket", "sse"):
        for r_ in runs[("sse", t)]:
            pairs.setdefault(r_["pair"], {})[t] = r_
    rows = []
    for n in sorted(pairs):
        p = pairs[n]
        if "websocket" in p and "sse" in p:
            w, e = p["websocket"], p["sse"]
            cpu = (e.get("server_cpu_us_per_delivery"), w.get("server_cpu_us_per_delivery"))
            rows.append((n, e["time_to_all_ms"]["p50"] / w["time_to_all_ms"]["p50"],
                         e["time_to_all_ms"]["p99"] / w["time_to_all_ms"]["p99"],
                         cpu[0] / cpu[1] if cpu[0] and cpu[1] else None, cpu[0], cpu[1]))
    if rows:
        print("\nPer pair, SSE/WebSocket: " + "; ".join(
            f"#{n}: time-to-all p50 {a:.2f}×, p99 {b:.2f}×, CPU/delivery "
            + (f"{c:.2f}× ({e:.2f} vs {w:.2f} µs)" if c else "–")
            for n, a, b, c, e, w in rows))
        cs = [r_[3] for r_ in rows if r_[3]]
        print(f"Median of the pairs' ratios: time-to-all p50 {statistics.median(r_[1] for r_ in rows):.2f}×, "
              f"p99 {statistics.median(r_[2] for r_ in rows):.2f}×"
              + (f", server CPU per delivery {statistics.median(cs):.2f}×" if cs else "") + ".")
hcols = bcols + [("positioned deliveries", lambda r: r.get("positioned", 0), 0)]
h = table("Stream history off and on", "history",
          ["memory", "memory-history", "memory-history-ext", "redis", "redis-history", "redis-history-ext"], hcols,
          [("memory-history", "memory"), ("memory-history-ext", "memory"),
           ("redis-history", "redis"), ("redis-history-ext", "redis")])
mt = table("Metrics off and on", "metrics", ["memory", "memory-metrics"], bcols,
           [("memory-metrics", "memory")])
ft = table("Every feature on (broadcast)", "features",
           ["ref", "memory", "memory-ext", "memory-history-ext", "memory-metrics-ext",
            "memory-presence-ext", "memory-all-ext"], hcols,
           [("memory", "ref"), ("memory-ext", "memory"), ("memory-history-ext", "memory-ext"),
            ("memory-metrics-ext", "memory-ext"), ("memory-presence-ext", "memory-ext"),
            ("memory-all-ext", "memory-ext"), ("memory-all-ext", "ref")])
ccols = [
    ("connections", lambda r: r["clients"], 0),
    ("RSS per connection (bytes)", lambda r: r.get("bytes_per_connection"), 0),
    ("RSS after (MiB)", lambda r: r.get("rss_after_bytes", 0) / 1048576, 1),
    ("connect CPU µs/connection", lambda r: 1e6 * r["server_connect_cpu_secs"] / r["clients"] if "server_connect_cpu_secs" in r else None, 0),
    ("connections lost", lambda r: r["connections_lost"], 0),
]
c = table("Idle subscribed connections", "connect", ["ref", "memory", "baseline", "rails"], ccols,
          [("memory", "ref"), ("memory", "baseline"), ("rails", "ref")])
ecols = [
    ("round trips/s", lambda r: r["round_trips_per_sec"], 0),
    ("round trip p50 (ms)", lat("p50"), 2),
    ("round trip p99 (ms)", lat("p99"), 2),
    ("server CPU µs/round trip", lambda r: r.get("server_cpu_us_per_round_trip"), 2),
]
e = table("Echo round trips", "echo", ["ref", "memory", "baseline", "redis", "memory-any", "rails"], ecols,
          [("memory", "ref"), ("memory", "baseline"), ("redis", "ref"), ("memory-any", "memory"), ("rails", "ref")])
# Further client counts (ECHO_CLIENTS="100 1000"): series echo-N.
echo_sizes = [("echo", e)] if e else []
for s_ in sorted({s_ for (s_, _) in runs if s_.startswith("echo-")}, key=lambda x: int(x[5:])):
    t_ = table(f"Echo round trips, {int(s_[5:]):,} clients", s_, ["ref", "memory", "baseline", "redis", "memory-any"], ecols,
               [("memory", "ref"), ("memory", "baseline"), ("redis", "ref"), ("memory-any", "memory")])
    if t_:
        echo_sizes.append((s_, t_))

print("\n### Targets\n")
def check(name, ok, detail):
    print(f"- {'met' if ok else 'MISSED'}: {name} ({detail})")
if b and "memory" in b and "ref" in b:
    m, r = b["memory"], b["ref"]
    lost = sum(x["lost"] for t in ("memory", "redis") for x in runs.get(("broadcast", t), []))
    check("broadcast time-to-all p50 ≤ 1.15× reference", m[0] <= 1.15 * r[0], ratio(m[0], r[0]))
    check("broadcast time-to-all p99 ≤ 1.3× reference", m[1] <= 1.3 * r[1], ratio(m[1], r[1]))
    check("zero lost", lost == 0, f"{lost} lost")
    if m[5] and r[5]:
        check("server CPU per delivery ≤ 1.25× reference", m[5] <= 1.25 * r[5], ratio(m[5], r[5]))
    if "redis" in b:
        check("Redis ≤ 1.3× in-memory (time-to-all p50)", b["redis"][0] <= 1.3 * m[0], ratio(b["redis"][0], m[0]))
if h:
    for adapter in ("memory", "redis"):
        off = h.get(adapter)
        for on in (f"{adapter}-history", f"{adapter}-history-ext"):
            if off and on in h:
                check(f"{on}: time-to-all p50 within 10 % of history off", h[on][0] <= 1.1 * off[0], ratio(h[on][0], off[0]))
                if h[on][5] and off[5]:
                    check(f"{on}: server CPU per delivery within 10 % of history off", h[on][5] <= 1.1 * off[5], ratio(h[on][5], off[5]))
    for ext in ("memory-history-ext", "redis-history-ext"):
        for r_ in runs.get(("history", ext), []):
            if r_.get("positioned") != r_["deliveries"]:
                check(f"{ext}: every delivery carried a position", False, f"{r_.get('positioned')} of {r_['deliveries']}")
if mt and "memory" in mt and "memory-metrics" in mt:
    off, on = mt["memory"], mt["memory-metrics"]
    check("metrics on: time-to-all p50 within 3 % of off", on[0] <= 1.03 * off[0], ratio(on[0], off[0]))
    if on[5] and off[5]:
        check("metrics on: server CPU per delivery within 3 % of off", on[5] <= 1.03 * off[5], ratio(on[5], off[5]))
if ft and "memory-all-ext" in ft and "ref" in ft:
    a, r = ft["memory-all-ext"], ft["ref"]
    lost = sum(x["lost"] for (s_, _), xs in runs.items() if s_ == "features" for x in xs)
    check("every feature on: time-to-all p50 ≤ 1.15× reference", a[0] <= 1.15 * r[0], ratio(a[0], r[0]))
    check("every feature on: time-to-all p99 ≤ 1.3× reference", a[1] <= 1.3 * r[1], ratio(a[1], r[1]))
    if a[5] and r[5]:
        check("every feature on: server CPU per delivery ≤ 1.25× reference", a[5] <= 1.25 * r[5], ratio(a[5], r[5]))
    check("every feature on: zero lost", lost == 0, f"{lost} lost")
if c and "memory" in c and c["memory"][1] is not None:
    check(f"{int(c['memory'][0]):,} idle connections at ≤ 4 KiB RSS each", c["memory"][1] <= 4096,
          f"{c['memory'][1]:,.0f} bytes")
for s_, t_ in echo_sizes:
    if "memory" in t_ and "ref" in t_:
        clients = runs[(s_, "memory")][0]["clients"]
        check(f"echo, {clients:,} clients: round trips/s ≥ 0.9× reference", t_["memory"][0] >= 0.9 * t_["ref"][0], ratio(t_["memory"][0], t_["ref"][0]))
        if t_["memory"][3] and t_["ref"][3]:
            check(f"echo, {clients:,} clients: server CPU per round trip ≤ 1.25× reference", t_["memory"][3] <= 1.25 * t_["ref"][3], ratio(t_["memory"][3], t_["ref"][3]))

# One line for the dated history in docs/benchmarks.md: the headline ratios of this run.
import datetime, subprocess
def cell(d, i):
    return ratio(d["memory"][i], d["ref"][i]) if d and "memory" in d and "ref" in d else "–"
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
idle = f"{c['memory'][1]:,.0f} B" if c and "memory" in c and c["memory"][1] else "–"
def echo_cell(i):
    cells = [f"{cell(t_, i)} ({runs[(s_, 'memory')][0]['clients']:,})" for s_, t_ in echo_sizes if (s_, "memory") in runs]
    return ", ".join(cells) or "–"
print("\nHistory row (docs/benchmarks.md, \"History\"):\n")
print(f"| {datetime.date.today()} | `{commit}` | {cell(b, 0)} | {cell(b, 1)} | {cell(b, 5)} | "
      f"{echo_cell(0)} | {echo_cell(3)} | {idle} ({cell(c, 1)}) |")
EOF
echo
echo "(per-run reports and JSON lines: $OUT)"
