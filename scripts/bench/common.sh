# Shared by the benchmark scripts (sourced). Everything lives under $BENCH_DIR; the daemon
# listens on fixed loopback ports so that runs are alike. Nothing here needs root. Beyond
# the release build they need curl, python3 and GNU time; base.sh needs sqlite3 and
# instr.sh valgrind (Debian's packages curl, python3, time, sqlite3, valgrind).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH_DIR=${BENCH_DIR:-/tmp/chogate-bench}
HTTP_PORT=${HTTP_PORT:-18090}
SMPP_PORT=${SMPP_PORT:-12795}
WINDOW=${WINDOW:-1000}
mkdir -p "$BENCH_DIR"

# config DB_FILE: writes $BENCH_DIR/chogate.toml for a daemon on DB_FILE (one USSD centre
# account, windows of $WINDOW, the menus of $MENUS (default: this checkout's) plus
# $USSD_EXTRA in [ussd], warnings only).
config() {
    cat >"$BENCH_DIR/chogate.toml" <<TOML
[database]
url = "sqlite://$1"
[http]
listen = "127.0.0.1:$HTTP_PORT"
[smpp_server]
listen = "127.0.0.1:$SMPP_PORT"
[[smpp_server.accounts]]
system_id = "ussdc"
password = "ussdc123"
window = $WINDOW
[ussd]
menus_dir = "${MENUS:-$ROOT/menus}"
${USSD_EXTRA:-}
[log]
filter = "warn"
TOML
}

# fresh_copy BASE DB: DB becomes a copy of BASE with no WAL, flushed to disk.
fresh_copy() {
    cp "$1" "$2"
    rm -f "$2-wal" "$2-shm"
    sync
}

# wait_ready PID: until the daemon answers /ready (or it died).
wait_ready() {
    local i
    for i in $(seq 300); do
        curl -sf "http://127.0.0.1:$HTTP_PORT/ready" >/dev/null && return 0
        kill -0 "$1" 2>/dev/null || { echo "the daemon exited; see $BENCH_DIR/daemon.log" >&2; return 1; }
        sleep 0.1
    done
    echo "the daemon did not get ready" >&2
    return 1
}

# stop PID: SIGTERM and wait for it; SIGKILL after 30 s.
stop() {
    local i
    kill -TERM "$1" 2>/dev/null || true
    for i in $(seq 300); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.1
    done
    echo "PID $1 ignored SIGTERM for 30 s: killed" >&2
    kill -KILL "$1" 2>/dev/null || true
}

# start_daemon CMD...: `CMD serve` (CMD: the binary, perhaps behind valgrind) on a fresh
# copy of $BASE (default $BENCH_DIR/base.db) at $DB (default $BENCH_DIR/run.db); sets D to
# its PID, stops it on exit, and returns once it is ready.
start_daemon() {
    DB=${DB:-$BENCH_DIR/run.db}
    fresh_copy "${BASE:-$BENCH_DIR/base.db}" "$DB"
    config "$DB"
    "$@" serve --config "$BENCH_DIR/chogate.toml" >"$BENCH_DIR/daemon.log" 2>&1 &
    D=$!
    trap 'stop $D' EXIT
    wait_ready $D
}

# cpu_cs PID: user + system CPU of a process so far, in hundredths of a second.
cpu_cs() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# The generator's arguments as a USSD centre bound to the daemon's SMPP server.
GEN_ARGS=(loadtest --role ussdc --connect "127.0.0.1:$SMPP_PORT" --system-id ussdc --password ussdc123)

# loadtest BIN ARGS...: runs the generator of BIN.
loadtest() {
    local bin=$1
    shift
    "$bin" "${GEN_ARGS[@]}" "$@"
}
