#!/usr/bin/env bash
# Memory of many open dialogues: 100 000 subscribers (84940000000 on, unregistered: each
# dialogue sits on the registration menu) dial once and then think for two minutes, so that
# every dialogue stays open; chogate's RSS and peak RSS (VmHWM) each second over 32 s, and
# the number of dialogues opened. The database starts empty.
# Usage: scripts/bench/memory.sh BIN [SUBSCRIBERS (default 100000)]
source "$(dirname "$0")/common.sh"
BIN=$1
SUBS=${2:-100000}
DB=$BENCH_DIR/memory.db
rm -f "$DB" "$DB-wal" "$DB-shm"
USSD_EXTRA="session_timeout_secs = 600" config "$DB"
"$BIN" serve --config "$BENCH_DIR/chogate.toml" >"$BENCH_DIR/daemon.log" 2>&1 &
D=$!
trap 'stop $D' EXIT
wait_ready $D
status() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$D/status"; }
idle=$(status VmRSS)
loadtest "$BIN" --window 1000 --subscribers "$SUBS" --msisdn-base 84940000000 --dialogues 1 --duration 30 \
    --think-ms 120000 >"$BENCH_DIR/memory.json" 2>"$BENCH_DIR/memory.err" &
L=$!
trap 'kill -INT $L 2>/dev/null || true; stop $D' EXIT
for i in $(seq 32); do
    sleep 1
    opened=$(curl -s "http://127.0.0.1:$HTTP_PORT/metrics" | awk '/^chogate_ussd_dialogues_total\{outcome="opened"\}/ {print $2}')
    echo "$i s: rss $(status VmRSS) kB, peak $(status VmHWM) kB, dialogues opened $opened"
done | tail -n 4
kill -INT $L 2>/dev/null || true
wait $L || true
echo "idle ${idle} kB; peak $(status VmHWM) kB"
