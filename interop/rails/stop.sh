#!/usr/bin/env bash
# Stop the Rails reference app that start.sh started with the same RAILS_STATE_DIR: only the PID
# in its puma.pid (SIGTERM, SIGKILL after 10 s). Nothing recorded there: nothing to do.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../../scripts/lib.sh
source "$HERE/../../scripts/lib.sh"

STATE="${RAILS_STATE_DIR:-${TMPDIR:-/tmp}/actioncable-rails}"
PIDFILE="$STATE/puma.pid"
[[ -f "$PIDFILE" ]] || exit 0
pid="$(cat "$PIDFILE")"
if kill -0 "$pid" 2>/dev/null; then
  stop_pid "$pid" TERM 10
  echo "rails app stopped: pid=$pid"
fi
rm -f "$PIDFILE"
