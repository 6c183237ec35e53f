#!/usr/bin/env bash
# Where the daemon's CPU goes by thread: a 15 s run (run.sh's default load unless ARGS are
# given), and each thread's share of a core over the 8 s from its 4th second, with the
# group commits made meanwhile.
# Usage: scripts/bench/threads.sh BIN [loadtest args without --duration]
source "$(dirname "$0")/common.sh"
BIN=$1
shift
[ $# -gt 0 ] || set -- --subscribers 300 --window 1000 --script 1,1,10,25000,1
start_daemon "$BIN"
loadtest "$BIN" "$@" --duration 15 >"$BENCH_DIR/threads.json" 2>/dev/null &
L=$!
sleep 4
snapshot() {
    for t in /proc/$D/task/*; do
        echo "$(tr ' ' _ <"$t/comm") $(awk '{print $14 + $15}' "$t/stat")"
    done | awk '{a[$1] += $2} END {for (k in a) print k, a[k]}' | sort
}
commits() { curl -s "http://127.0.0.1:$HTTP_PORT/metrics" | awk '/^chogate_db_commit_seconds_count/ {n = $2} END {print n + 0}'; }
c0=$(commits)
snapshot >"$BENCH_DIR/threads.0"
sleep 8
snapshot >"$BENCH_DIR/threads.1"
c1=$(commits)
wait $L
join "$BENCH_DIR/threads.0" "$BENCH_DIR/threads.1" | awk '{printf "%s %.0f%%\n", $1, ($3 - $2) / 8}'
echo "group commits per second: $(python3 -c "print(round(($c1 - $c0) / 8))")"
tail -n 1 "$BENCH_DIR/threads.json" | cut -c1-160
