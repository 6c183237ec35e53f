#!/usr/bin/env bash
# Notifications through the outbox: N queued SMS (inserted straight into a fresh database),
# the generator as an SMSC (mt-sink: answers submit_sm, sends a delivery receipt for each),
# chogate started against it; timed from chogate's start until every message is marked
# delivered (its receipt matched). Prints the rate, chogate's CPU, and the sink's rate
# each second.
# Usage: scripts/bench/notify.sh BIN [N (default 200000)] [WINDOW (default 500)]
source "$(dirname "$0")/common.sh"
BIN=$1
N=${2:-200000}
W=${3:-500}
SINK_PORT=${SINK_PORT:-12777}
DB=$BENCH_DIR/notify.db
rm -f "$DB" "$DB-wal" "$DB-shm"
cat >"$BENCH_DIR/notify.toml" <<TOML
[database]
url = "sqlite://$DB"
[http]
listen = "127.0.0.1:$HTTP_PORT"
[smpp_server]
listen = "127.0.0.1:$SMPP_PORT"
[[smsc]]
name = "sink"
host = "127.0.0.1"
port = $SINK_PORT
system_id = "gw"
password = "secret"
window = $W
text_mode = "gsm"
[ussd]
menus_dir = "$ROOT/menus"
[log]
filter = "warn"
TOML
"$BIN" migrate --config "$BENCH_DIR/notify.toml" >/dev/null
python3 - "$DB" "$N" <<'PY'
import sqlite3, sys, time
db, n = sys.argv[1], int(sys.argv[2])
c = sqlite3.connect(db)
now = int(time.time() * 1000)
c.executemany(
    "INSERT INTO outbox (msisdn, text, lang, kind, status, created_at_ms, expires_at_ms, next_attempt_at_ms) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    [("849%08d" % i, "Don moi D%06d: 10 kg na, 250.000d. Quay *384# de nhan don." % i, "vi",
      "order_new", "queued", now, now + 86400000, now) for i in range(n)])
c.commit()
PY
sync
S=""
D=""
trap '[ -z "$D" ] || stop $D; [ -z "$S" ] || kill -INT $S 2>/dev/null || true' EXIT
"$BIN" loadtest --role mt-sink --listen "127.0.0.1:$SINK_PORT" --system-id gw --password secret --duration 120 \
    --window "$W" >"$BENCH_DIR/sink.json" 2>"$BENCH_DIR/sink.err" &
S=$!
sleep 0.5
t0=$(date +%s.%N)
"$BIN" serve --config "$BENCH_DIR/notify.toml" >"$BENCH_DIR/daemon.log" 2>&1 &
D=$!
delivered() {
    python3 -c "
import sqlite3, sys
c = sqlite3.connect('file:' + sys.argv[1] + '?mode=ro', uri=True)
print(c.execute(\"SELECT COUNT(*) FROM outbox WHERE status = 'delivered'\").fetchone()[0])" "$DB" 2>/dev/null || echo 0
}
deadline=$((SECONDS + 110)) # the sink stops after 120 s
while [ "$(delivered)" != "$N" ]; do
    kill -0 $D 2>/dev/null || { echo "the daemon exited; see $BENCH_DIR/daemon.log" >&2; exit 1; }
    kill -0 $S 2>/dev/null || { echo "the sink exited; see $BENCH_DIR/sink.err" >&2; exit 1; }
    [ $SECONDS -lt $deadline ] || { echo "not all delivered after 110 s: $(delivered) of $N" >&2; exit 1; }
    sleep 0.1
done
t1=$(date +%s.%N)
cpu=$(awk '{print ($14 + $15) / 100}' "/proc/$D/stat")
stop $D
kill -INT $S 2>/dev/null || true
wait $S || true
trap - EXIT
python3 -c "import sys; t = float(sys.argv[2]) - float(sys.argv[1]); n = int(sys.argv[3]); print('N=%d window=%s: all delivered after %.2f s -> %.0f/s, chogate CPU %s s' % (n, sys.argv[4], t, n / t, sys.argv[5]))" "$t0" "$t1" "$N" "$W" "$cpu"
echo "sink, per second: $(grep -E '^\[ +[0-9]+s\]' "$BENCH_DIR/sink.err" | awk '{print $4}' | tr '\n' ' ')"
