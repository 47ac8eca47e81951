#!/usr/bin/env bash
# The project's one test command: formatting, lints, every Rust test, and the end-to-end
# tests that drive our servers through the stock @rails/actioncable consumer.
# It installs what it needs on a fresh machine (Debian packages, npm packages) by itself and
# starts a Redis on 127.0.0.1:6379 and a NATS with JetStream on 127.0.0.1:4222 if none answers.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib.sh

# Debian packages the tests run for real: redis-server/redis-cli/redis-sentinel (the Redis
# adapter's tests start their own servers), postgresql (the PostgreSQL and Solid Cable adapters'
# tests use a server on 127.0.0.1:5432 and start their own with initdb/pg_ctl), mariadb-server
# (the Solid Cable adapter's MySQL tests use a MariaDB on 127.0.0.1:3306 and start their own with
# mariadb-install-db/mariadbd; it brings the `mariadb` client they run SQL with), sqlite3 (the
# two-node demo test on Solid Cable's SQLite writes a row as Rails would), nats-server (the NATS
# adapter's tests use one with JetStream on 127.0.0.1:4222 and start their own for outages),
# openssl (a TLS test's certificates), nginx (the load-balanced topology), python3 (free ports,
# NATS's greeting), chromium (the demo page's browser tests drive Debian's Chromium through
# playwright-core; no browser is ever downloaded), and Ruby's
# ActionCable under puma (the Rails reference app in interop/rails, which the side-by-side and
# Rails interop tests compare us with; with Ruby's GlobalID, which names records' streams).
ensure_packages() {
  local missing=()
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v redis-sentinel >/dev/null || missing+=(redis-sentinel)
  { pg_bin >/dev/null && command -v psql >/dev/null; } || missing+=(postgresql)
  { mariadbd_bin >/dev/null && command -v mariadb >/dev/null; } || missing+=(mariadb-server)
  command -v sqlite3 >/dev/null || missing+=(sqlite3)
  command -v nats-server >/dev/null || missing+=(nats-server)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v nginx >/dev/null || missing+=(nginx-light)
  command -v curl >/dev/null || missing+=(curl)
  command -v python3 >/dev/null || missing+=(python3)
  command -v chromium >/dev/null || missing+=(chromium)
  rails_missing >/dev/null && missing+=("${RAILS_PACKAGES[@]}")
  if ((${#missing[@]})); then
    step "installing ${missing[*]}"
    [[ " ${missing[*]} " == *" mariadb-server "* ]] && MARIADB_INSTALLED_NOW=1
    local sudo=""; [[ $(id -u) -eq 0 ]] || sudo="sudo"
    if ! { $sudo apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null; }; then
      echo "scripts/test.sh: could not install ${missing[*]}; install them by hand:" >&2
      echo "  sudo apt-get install ${missing[*]}" >&2
      exit 1
    fi
    # Debian's package starts its own service on 4222 where systemd runs, without JetStream;
    # installed just now, it is ours to turn off, so that ensure_nats starts one with it.
    if [[ " ${missing[*]} " == *" nats-server "* ]] && command -v systemctl >/dev/null &&
      systemctl is-active --quiet nats-server 2>/dev/null; then
      $sudo systemctl disable --now nats-server >/dev/null 2>&1 || true
    fi
  fi
  local why
  if why="$(rails_missing)"; then
    echo "scripts/test.sh: the Rails reference app cannot run: $why." >&2
    echo "  The side-by-side and Rails interop tests need it: sudo apt-get install ${RAILS_PACKAGES[*]}" >&2
    exit 1
  fi
}

ensure_redis() {
  if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then return; fi
  step "starting redis-server on 127.0.0.1:6379"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no \
    --logfile /tmp/actioncable-test-redis.log
  wait_until "redis-server on 127.0.0.1:6379" 5 redis-cli -h 127.0.0.1 -p 6379 ping || exit 1
}

# nats_info PORT: what the NATS server on 127.0.0.1:PORT says of itself: "jetstream", "core"
# (no JetStream), or nothing when none answers. Every NATS server greets with `INFO {json}`.
nats_info() {
  python3 - "$1" <<'PY' 2>/dev/null
import json, socket, sys
try:
    with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1) as s:
        line = s.makefile().readline()
    info = json.loads(line[len("INFO "):]) if line.startswith("INFO ") else None
except (OSError, ValueError):
    info = None
if info is not None:
    print("jetstream" if info.get("jetstream") else "core")
PY
}

nats_has_jetstream() { [[ "$(nats_info "$1")" == jetstream ]]; }

# A NATS server with JetStream on 127.0.0.1:4222 for the NATS adapter's tests: the one running
# there, or one started here (its store in /tmp), left running as the Redis above is. One that
# runs without JetStream (Debian's service, as configured out of the box) is not ours to stop.
ensure_nats() {
  case "$(nats_info 4222)" in
    jetstream) return ;;
    core)
      echo "scripts/test.sh: the NATS server on 127.0.0.1:4222 runs without JetStream, which the" >&2
      echo "  NATS adapter's history tests need: enable it (e.g. \`jetstream { store_dir: /var/lib/nats-server }\`" >&2
      echo "  in /etc/nats-server.conf, then restart it), or stop it and this script starts one." >&2
      exit 1
      ;;
  esac
  step "starting nats-server with JetStream on 127.0.0.1:4222"
  mkdir -p /tmp/actioncable-test-nats
  # Detached (setsid), its output to its log: it must outlive this script and not hold its stdout.
  setsid nats-server -a 127.0.0.1 -p 4222 -js -sd /tmp/actioncable-test-nats \
    -l /tmp/actioncable-test-nats.log </dev/null >/dev/null 2>&1 &
  wait_until "nats-server with JetStream on 127.0.0.1:4222" 10 nats_has_jetstream 4222 || exit 1
}

# A PostgreSQL on 127.0.0.1:5432 that user postgres reaches without a password: the one running
# there, or a private cluster (trust authentication, in /tmp) started for the tests. It is left
# running, as the Redis above is.
ensure_postgres() {
  if psql -X -h 127.0.0.1 -p 5432 -U postgres -d postgres -Atc 'SELECT 1' >/dev/null 2>&1; then
    return
  fi
  step "starting PostgreSQL on 127.0.0.1:5432"
  local bin dir=/tmp/actioncable-test-postgres as=()
  bin="$(pg_bin)"
  [[ $(id -u) -eq 0 ]] && as=(runuser -u postgres --)
  if [[ ! -f $dir/PG_VERSION ]]; then
    mkdir -p "$dir"
    [[ $(id -u) -eq 0 ]] && chown postgres:postgres "$dir"
    "${as[@]}" "$bin/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
  fi
  "${as[@]}" "$bin/pg_ctl" -D "$dir" -l "$dir.log" -w \
    -o "-p 5432 -c listen_addresses=127.0.0.1 -k /tmp" start >/dev/null
  wait_until "PostgreSQL on 127.0.0.1:5432" 10 \
    psql -X -h 127.0.0.1 -p 5432 -U postgres -d postgres -Atc 'SELECT 1' || exit 1
}

# mariadbd, which Debian puts in /usr/sbin (not on every user's PATH).
mariadbd_bin() { command -v mariadbd || { [[ -x /usr/sbin/mariadbd ]] && echo /usr/sbin/mariadbd; }; }

mariadb_answers() { mariadb --no-defaults -h 127.0.0.1 -P 3306 -u root -e 'SELECT 1' >/dev/null 2>&1; }

# A MariaDB on 127.0.0.1:3306 that root reaches over TCP without a password: the one running
# there, or a private server (datadir in /tmp) started for the tests. It is left running, as the
# Redis above is. Debian's package may start its own server, whose root logs in through the
# Unix socket only: when this script just installed it, root is also allowed over TCP without a
# password (a test machine's server); otherwise the script says what to do.
ensure_mariadb() {
  if mariadb_answers; then return; fi
  if port_open 3306; then
    if [[ ${MARIADB_INSTALLED_NOW:-} == 1 && $(id -u) -eq 0 ]]; then
      step "allowing root on 127.0.0.1:3306 without a password (the MariaDB just installed)"
      mariadb --no-defaults -u root -e \
        "ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('') OR unix_socket" || true
      mariadb_answers && return
    fi
    echo "scripts/test.sh: a MariaDB/MySQL on 127.0.0.1:3306 refuses root without a password." >&2
    echo "  The Solid Cable tests need it: allow it, or stop that server and rerun (the script then starts its own)." >&2
    exit 1
  fi
  step "starting MariaDB on 127.0.0.1:3306"
  local bin dir=/tmp/actioncable-test-mariadb user=()
  bin="$(mariadbd_bin)"
  [[ $(id -u) -eq 0 ]] && user=(--user=root)
  if [[ ! -d $dir/data/mysql ]]; then
    mkdir -p "$dir"
    if ! mariadb-install-db --no-defaults --datadir="$dir/data" --auth-root-authentication-method=normal \
      --skip-test-db "${user[@]}" >"$dir.install.log" 2>&1; then
      cat "$dir.install.log" >&2
      exit 1
    fi
  fi
  "$bin" --no-defaults --datadir="$dir/data" --port=3306 --bind-address=127.0.0.1 \
    --socket="$dir/mysqld.sock" --pid-file="$dir/mysqld.pid" --skip-log-bin "${user[@]}" \
    </dev/null >"$dir.log" 2>&1 &
  disown
  wait_until "MariaDB on 127.0.0.1:3306" 20 mariadb_answers || { tail -n 20 "$dir.log" >&2; exit 1; }
}

# The Rails reference app (interop/rails, async adapter) on a spare port for the side-by-side
# and smoke tests, which find it through RAILS_CABLE_URL; stopped when this script exits. (The
# Rails interop test starts its own, with the Redis adapter.)
start_rails_app() {
  local port state
  port="$(free_port)"
  state="$(mktemp -d -t actioncable-rails.XXXXXX)"
  on_exit "RAILS_STATE_DIR='$state' '$PWD/interop/rails/stop.sh' >/dev/null; rm -rf '$state'"
  RAILS_STATE_DIR="$state" RAILS_LOG="$PWD/js-client/test-artifacts/rails-app.log" PORT="$port" \
    interop/rails/start.sh
  export RAILS_CABLE_URL="ws://127.0.0.1:$port/cable"
}

step "system packages and services"
ensure_packages
ensure_redis
ensure_postgres
ensure_mariadb
ensure_nats

# Work that needs neither the build nor the cores much starts now, in the background, and is
# waited for where its result is needed: the npm packages (network and disk), and, when the
# nightly toolchain is there to use it, cargo-fuzz and the fuzz targets' build (its own target
# directory, niced: it fills the cores while the tests below wait on sockets, instead of
# running alone after them).
npm_log="$(mktemp -t actioncable-npm-ci.XXXXXX)"
npm_pid=""
if [[ -f js-client/package.json ]]; then
  (cd js-client && npm ci --no-audit --no-fund) >"$npm_log" 2>&1 &
  npm_pid=$!
  on_exit "kill $npm_pid 2>/dev/null || true"
fi
fuzz_install_log="$(mktemp -t actioncable-cargo-fuzz.XXXXXX)"
fuzz_install_pid=""
if [[ "${FUZZ_SECS:-20}" != 0 ]] && cargo +nightly --version >/dev/null 2>&1; then
  (
    if ! command -v cargo-fuzz >/dev/null; then
      nice cargo install cargo-fuzz --locked || exit 1
    fi
    cd crates/actioncable && nice cargo +nightly fuzz build
  ) >"$fuzz_install_log" 2>&1 &
  fuzz_install_pid=$!
  on_exit "kill $fuzz_install_pid 2>/dev/null || true"
fi
# wait_background PID LOG WHAT: waits for a background job; on failure shows its log and stops.
wait_background() {
  if ! wait "$1"; then
    cat "$2" >&2
    echo "scripts/test.sh: $3 failed" >&2
    exit 1
  fi
}

step "cargo fmt --check"
cargo fmt --all -- --check

# Each top-level module imports only the layers below it (docs/architecture.md).
step "module layers"
python3 scripts/check-layers.py crates/actioncable/src crates/actioncable-redis/src \
  crates/actioncable-postgres/src crates/actioncable-solid-cable/src crates/actioncable-nats/src

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

# Alone, so no other member's crate features reach the guide's code: a newcomer's app has only section 1's list.
step "the guide as an app (crates/guide-check)"
cargo check -p guide-check

# The demo's tests read the page's modules from js-client/node_modules: npm ci must be done.
if [[ -n "$npm_pid" ]]; then
  step "js-client: npm ci (run in the background)"
  wait_background "$npm_pid" "$npm_log" "npm ci"
  tail -n 2 "$npm_log"
fi

# Each crate's tests get the features they need from their own dev-dependencies.
step "cargo test"
cargo test --workspace

# --- fuzzing: a short bounded run of every cargo-fuzz target (needs the nightly toolchain) ---
# `cargo test` already replays the committed corpus on stable (tests/it/fuzz_corpus.rs); here
# libFuzzer explores from it for FUZZ_SECS seconds per target (FUZZ_SECS=0 skips). New inputs
# go to a temporary directory, never into the repository. Longer runs: docs/reliability.md.
FUZZ_TARGETS=(command_decode command_handling)
if [[ "${FUZZ_SECS:-20}" != 0 ]] && cargo +nightly --version >/dev/null 2>&1; then
  if [[ -n "$fuzz_install_pid" ]]; then
    step "cargo-fuzz and the fuzz targets (built in the background)"
    wait_background "$fuzz_install_pid" "$fuzz_install_log" "cargo install cargo-fuzz / cargo fuzz build"
  fi
  # The node tests' servers build meanwhile (another target directory; a fuzz run uses one core).
  if [[ -f js-client/package.json ]]; then
    bins_log="$(mktemp -t actioncable-bins.XXXXXX)"
    cargo build --workspace --bins >"$bins_log" 2>&1 &
    bins_pid=$!
    on_exit "kill $bins_pid 2>/dev/null || true"
  fi
  for target in "${FUZZ_TARGETS[@]}"; do
    step "cargo fuzz run $target (${FUZZ_SECS:-20} s)"
    fuzz_work="$(mktemp -d)"
    # libFuzzer reports every new input; keep that in a log and show it only on failure.
    if (cd crates/actioncable && cargo +nightly fuzz run "$target" "$fuzz_work" "fuzz/corpus/$target" \
      -- -max_total_time="${FUZZ_SECS:-20}" -max_len=4096 -print_final_stats=1) >"$fuzz_work.log" 2>&1; then
      grep -E '^(Done|stat::(number_of_executed_units|new_units_added|peak_rss_mb))' "$fuzz_work.log" || true
    else
      tail -n 80 "$fuzz_work.log"
      echo "cargo fuzz run $target failed; crash inputs are in crates/actioncable/fuzz/artifacts/$target" >&2
      exit 1
    fi
    rm -rf "$fuzz_work" "$fuzz_work.log"
  done
else
  echo "No nightly toolchain (or FUZZ_SECS=0): skipping the bounded fuzz run; the corpus was replayed by cargo test."
fi
# --- end of fuzzing ---

if [[ -f js-client/package.json ]]; then
  step "js-client: build example servers"
  # Every server binary the node tests start: the examples' and actioncable-server's
  # (test/actioncable-server.e2e.test.mjs). Built during the fuzz runs when there were any.
  if [[ -n "${bins_pid:-}" ]]; then
    wait_background "$bins_pid" "$bins_log" "cargo build --workspace --bins"
  else
    cargo build --workspace --bins
  fi
  step "js-client: the Rails reference app for the side-by-side tests"
  start_rails_app
  step "js-client: node --test"
  rm -rf js-client/test-artifacts/screenshots # this run's pictures only
  (cd js-client && npm test)
fi
step "all tests passed"
