# shellcheck shell=bash
# Helpers shared by the scripts in this folder and by interop/rails/*.sh. Source it:
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# Every wait here is bounded; every process is stopped by its own PID, never by name.

# `==> message [m:ss]`, the scripts' progress line with the time since the script started
# (bench.sh sends it to stderr: its tables go to stdout).
step() { printf '\n==> %s [%d:%02d]\n' "$*" $((SECONDS / 60)) $((SECONDS % 60)); }

# A TCP port on 127.0.0.1 that was free a moment ago.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_until WHAT SECONDS COMMAND...: runs COMMAND (output discarded) every 0.1 s until it
# succeeds; after SECONDS it prints "WHAT did not come up" and returns 1.
wait_until() {
  local what="$1" secs="$2" i
  shift 2
  for ((i = 0; i < secs * 10; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "$what did not come up within ${secs} s" >&2
  return 1
}

# port_open PORT: is something listening on 127.0.0.1:PORT?
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_for_port PORT WHAT [SECONDS=10]: until 127.0.0.1:PORT accepts connections.
wait_for_port() { wait_until "$2 (port $1)" "${3:-10}" port_open "$1"; }

# stop_pid PID [SIGNAL=TERM] [SECONDS=5]: send SIGNAL, wait up to SECONDS for the process to
# exit, then SIGKILL it. Reaps it when it is a child of this shell. A PID that is already gone
# is fine.
stop_pid() {
  local pid="$1" sig="${2:-TERM}" secs="${3:-5}" i
  [[ -n "$pid" ]] || return 0
  kill "-$sig" "$pid" 2>/dev/null || true
  for ((i = 0; i < secs * 10; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "PID $pid still running ${secs} s after SIG$sig; sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

# on_exit COMMAND: run COMMAND (a string for eval) when the script exits, however it exits;
# commands run in reverse order of registration. Replaces the script's EXIT trap.
_ON_EXIT=()
_run_on_exit() {
  local i
  for ((i = ${#_ON_EXIT[@]} - 1; i >= 0; i--)); do eval "${_ON_EXIT[i]}" || true; done
}
on_exit() {
  _ON_EXIT+=("$1")
  trap _run_on_exit EXIT
}

# start_private_redis LOGFILE: a redis-server on a spare port of 127.0.0.1 (no persistence),
# started as a child of this shell; sets REDIS_PORT and REDIS_PID and waits until it answers.
# The caller stops it (stop_pid "$REDIS_PID"). Never 6379: that one may be another's.
start_private_redis() {
  local log="$1"
  REDIS_PORT="$(free_port)"
  # Its output goes to the log too: it must not hold this script's stdout open (a caller that
  # reads the script's output would wait for it).
  # shellcheck disable=SC2094 # redis-server appends to its log, and so does this redirection
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
    --daemonize no --logfile "$log" </dev/null >>"$log" 2>&1 &
  # shellcheck disable=SC2034 # for the caller
  REDIS_PID=$!
  wait_until "redis-server on port $REDIS_PORT" 10 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping
}

# The Debian packages that run the Rails reference app (interop/rails), and Rails' PostgreSQL
# adapter for the actioncable-postgres interop tests (Active Record and the pg gem).
# shellcheck disable=SC2034 # for the scripts that source this file
RAILS_PACKAGES=(ruby ruby-actioncable puma ruby-redis ruby-globalid ruby-activerecord ruby-pg)

# rails_missing: prints why the Rails reference app or Rails' PostgreSQL adapter cannot run
# here (and returns 0), or returns 1 when Ruby, ActionCable, the redis gem, GlobalID, Active
# Record, the pg gem and puma are all installed.
rails_missing() {
  if ! command -v ruby >/dev/null; then echo "ruby is not installed"; return 0; fi
  if ! command -v puma >/dev/null; then echo "puma is not installed"; return 0; fi
  if ! ruby -e 'require "action_cable"; require "redis"; require "global_id"' >/dev/null 2>&1; then
    echo "Ruby's ActionCable, its redis gem or GlobalID is not installed"
    return 0
  fi
  if ! ruby -e 'require "pg"; require "active_record"' >/dev/null 2>&1; then
    echo "Ruby's pg gem or Active Record is not installed"
    return 0
  fi
  return 1
}

# pg_bin: the newest Debian PostgreSQL server directory (/usr/lib/postgresql/<version>/bin).
pg_bin() {
  local dir
  dir="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin 2>/dev/null | sort -V | tail -n 1)"
  [[ -n $dir && -x $dir/initdb ]] && echo "$dir"
}

# start_private_postgres DIR: a private PostgreSQL cluster in DIR (trust authentication, no
# fsync) on a spare port of 127.0.0.1, run by user postgres when this is root; sets PG_PORT and
# PG_URL (database postgres). stop_private_postgres DIR stops it.
start_private_postgres() {
  local dir="$1" bin as=()
  bin="$(pg_bin)" || { echo "PostgreSQL is not installed (apt-get install postgresql)" >&2; return 1; }
  [[ $(id -u) -eq 0 ]] && as=(runuser -u postgres --)
  mkdir -p "$dir"
  if [[ $(id -u) -eq 0 ]]; then
    chown postgres:postgres "$dir"
    # User postgres must reach DIR: a caller's private directory (mktemp -d is 0700) gets
    # search permission, nothing more (its files stay unlistable and unreadable).
    local up
    up="$(dirname "$(realpath "$dir")")"
    while [[ $up != / ]]; do
      [[ $(stat -c %A "$up") == *x ]] || chmod o+x "$up"
      up="$(dirname "$up")"
    done
  fi
  "${as[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
  PG_PORT="$(free_port)"
  "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w \
    -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $dir -c fsync=off" start >/dev/null
  # shellcheck disable=SC2034 # for the caller
  PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
}

stop_private_postgres() {
  local dir="$1" bin as=()
  [[ -f $dir/data/postmaster.pid ]] || return 0
  bin="$(pg_bin)" || return 0
  [[ $(id -u) -eq 0 ]] && as=(runuser -u postgres --)
  "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
}

# start_private_nats DIR: a nats-server with JetStream (its store in DIR) on a spare port of
# 127.0.0.1, a child of this shell; sets NATS_PORT and NATS_PID and waits until it accepts
# connections. The caller stops it (stop_pid "$NATS_PID").
start_private_nats() {
  local dir="$1"
  command -v nats-server >/dev/null ||
    { echo "nats-server is not installed (apt-get install nats-server)" >&2; return 1; }
  mkdir -p "$dir"
  NATS_PORT="$(free_port)"
  nats-server -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$dir" -l "$dir/nats.log" \
    </dev/null >/dev/null 2>&1 &
  # shellcheck disable=SC2034 # for the caller
  NATS_PID=$!
  wait_until "nats-server on port $NATS_PORT" 10 port_open "$NATS_PORT"
}
