#!/usr/bin/env bash
# Builds the database the other scripts copy before each run: 1 000 households registered
# over USSD (84900000000 on) and confirmed (as their team leader would, here in one SQL
# statement), then the listing script run by 300 of them until LISTINGS
# listings exist (default 750 000, with three events each as in the figures before the
# sixth session, two after), then VACUUM. Takes a minute or two.
# Usage: scripts/bench/base.sh [BIN] [LISTINGS]   -> $BENCH_DIR/base.db
source "$(dirname "$0")/common.sh"
BIN=${1:-$ROOT/target/release/chogate}
LISTINGS=${2:-750000}
DB=$BENCH_DIR/base.db
rm -f "$DB" "$DB-wal" "$DB-shm"
config "$DB"
"$BIN" serve --config "$BENCH_DIR/chogate.toml" >"$BENCH_DIR/daemon.log" 2>&1 &
D=$!
trap 'stop $D' EXIT
wait_ready $D
loadtest "$BIN" --subscribers 1000 --dialogues 1 --duration 120 --window "$WINDOW" \
    --script "doan ket,1,1,Ban Chu,Hoang Van A,1" | tail -n 1
sqlite3 "$DB" "UPDATE households SET pending = 0; UPDATE villages SET pending = 0"
count() { sqlite3 "$DB" "SELECT COUNT(*) FROM listings"; }
while [ "$(count)" -lt "$LISTINGS" ]; do
    before=$(count)
    loadtest "$BIN" --subscribers 300 --window "$WINDOW" --duration 20 --script 1,1,10,25000,1 | tail -n 1
    [ "$(count)" -gt "$before" ] || { echo "no listing added in 20 s; see $BENCH_DIR/daemon.log" >&2; exit 1; }
done
stop $D
trap - EXIT
sqlite3 "$DB" "VACUUM"
echo "$DB: $(count) listings, $(sqlite3 "$DB" 'SELECT COUNT(*) FROM events') events"
