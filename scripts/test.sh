#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every test (unit, integration, interop).
# Installs or starts what the tests need; works on a fresh Debian machine with the Rust
# toolchain. Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -D warnings"
cargo clippy --all-targets --locked -- -D warnings

# A throwaway PostgreSQL cluster for the store tests (tests/store.rs runs every test against
# SQLite and PostgreSQL): the machine's binaries (installed from Debian's packages if
# missing), a data directory in a temporary folder, 127.0.0.1 on a free port, trust auth,
# no fsync; stopped and removed on exit. PostgreSQL refuses to run as root, so as root the
# cluster runs as the postgres user.
PG_TMP=""
PG_BIN=""
PG_AS=()
stop_postgres() {
    if [ -n "$PG_TMP" ]; then
        (cd / && "${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_TMP/data" -m immediate stop >/dev/null 2>&1) || true
        rm -rf "$PG_TMP"
    fi
}
start_postgres() {
    PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -z "$PG_BIN" ]; then
        step "installing PostgreSQL (Debian package)"
        local sudo=()
        [ "$(id -u)" -eq 0 ] || sudo=(sudo)
        "${sudo[@]}" apt-get update -qq
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq postgresql >/dev/null
        PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    fi
    PG_TMP=$(mktemp -d)
    trap stop_postgres EXIT
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres: "$PG_TMP"
        PG_AS=(runuser -u postgres --)
    fi
    (cd / && "${PG_AS[@]}" "$PG_BIN/initdb" -D "$PG_TMP/data" -U postgres --auth=trust -E UTF8 --no-locale \
        >"$PG_TMP/initdb.log" 2>&1) || { cat "$PG_TMP/initdb.log"; return 1; }
    local port tries
    for tries in 1 2 3 4 5 6 7 8 9 10; do
        port=$((20000 + RANDOM % 40000))
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            continue # taken
        fi
        if (cd / && "${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_TMP/data" -l "$PG_TMP/data/server.log" -w -t 60 \
            -o "-c listen_addresses=127.0.0.1 -p $port -k $PG_TMP -c fsync=off -c max_connections=300" \
            start >/dev/null); then
            export CHOGATE_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
            echo "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$port ($PG_TMP)"
            return 0
        fi
    done
    cat "$PG_TMP/data/server.log" || true
    return 1
}

step "chogate menus check --walk (every path of the shipped menus against a worst-case market)"
cargo run --locked --quiet -- menus check --walk menus

step "PostgreSQL for the store tests"
start_postgres

step "cargo test"
cargo test --locked "$@"
