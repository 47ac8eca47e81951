#!/usr/bin/env bash
# Start the Rails reference app under puma, in the background, on 127.0.0.1 only; returns once
# its HTTP routes answer (at most 15 s). Settings (environment):
#   PORT                   listening port (default 28080)
#   CABLE_ADAPTER          async (default) | redis
#   REDIS_URL              redis adapter only (default redis://127.0.0.1:6379/1)
#   CABLE_CHANNEL_PREFIX   redis adapter only, optional
#   CABLE_DISABLE_FORGERY  1 accepts any Origin header, or none
#   CABLE_WORKERS          ActionCable's worker pool size (default 4)
#   RAILS_STATE_DIR        where puma.pid (and by default the log) go
#                          (default ${TMPDIR:-/tmp}/actioncable-rails)
#   RAILS_LOG              puma's and ActionCable's log (default $RAILS_STATE_DIR/server.log)
# stop.sh with the same RAILS_STATE_DIR stops it. Needs Debian's ruby, ruby-actioncable, puma
# and ruby-redis (scripts/test.sh installs them).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../../scripts/lib.sh
source "$HERE/../../scripts/lib.sh"

STATE="${RAILS_STATE_DIR:-${TMPDIR:-/tmp}/actioncable-rails}"
PORT="${PORT:-28080}"
export CABLE_ADAPTER="${CABLE_ADAPTER:-async}"
PIDFILE="$STATE/puma.pid"
LOG="${RAILS_LOG:-$STATE/server.log}"
mkdir -p "$STATE" "$(dirname "$LOG")"

if why="$(rails_missing)"; then
  echo "rails app: $why; install: apt-get install ${RAILS_PACKAGES[*]}" >&2
  exit 1
fi
if [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  echo "rails app: already running with PID $(cat "$PIDFILE") (state in $STATE)" >&2
  exit 1
fi
if [[ "$CABLE_ADAPTER" == redis ]]; then
  url="${REDIS_URL:-redis://127.0.0.1:6379/1}"
  if ! redis-cli -u "$url" ping >/dev/null 2>&1; then
    echo "rails app: the redis adapter needs a Redis at $url, and none answers" >&2
    exit 1
  fi
fi

cd "$HERE"
: >"$LOG"
nohup puma -e production -t 0:5 -b "tcp://127.0.0.1:$PORT" config.ru >>"$LOG" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$PIDFILE"

# Ready once the control routes answer; stop waiting early if puma has exited.
answers_or_exited() { ! kill -0 "$pid" 2>/dev/null || curl -sf -o /dev/null "http://127.0.0.1:$PORT/stats"; }
if ! wait_until "rails app on port $PORT" 15 answers_or_exited || ! kill -0 "$pid" 2>/dev/null; then
  echo "rails app: not ready; the end of $LOG:" >&2
  tail -n 20 "$LOG" >&2
  stop_pid "$pid" TERM 5
  rm -f "$PIDFILE"
  exit 1
fi
echo "rails app up: pid=$pid port=$PORT adapter=$CABLE_ADAPTER log=$LOG"
