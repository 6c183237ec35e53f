#!/usr/bin/env bash
# Where a step's time goes inside chogate: one run (1 000 subscribers, windows of 1 000,
# the listing script, plus ARGS) on a fresh daemon and database, then chogate's own
# histograms from /metrics as the share of observations within each bucket up to 25 ms:
# step_seconds (a subscriber PDU read -> answer and next screen sent), action_seconds (an
# action as its caller waits for the writer), commit_seconds (one group commit); and the
# WAL's size at the end.
# Usage: scripts/bench/latency.sh LABEL BIN [loadtest args, e.g. --think-ms 10 --ramp-ms 10 --duration 15]
source "$(dirname "$0")/common.sh"
LABEL=$1
BIN=$2
shift 2
start_daemon "$BIN"
loadtest "$BIN" --subscribers 1000 --window "$WINDOW" --script 1,1,10,25000,1 "$@" 2>/dev/null | tail -n 1 |
    python3 -c '
import json, sys
d = json.load(sys.stdin)
print(sys.argv[1], round(d["steps_per_s"]), "generator:", d["latency_ms"], "errors:", d["errors"])
' "$LABEL"
curl -s "http://127.0.0.1:$HTTP_PORT/metrics" >"$BENCH_DIR/metrics.txt"
for m in chogate_ussd_step_seconds chogate_db_action_seconds chogate_db_commit_seconds; do
    grep -E "^${m}_(bucket|count)" "$BENCH_DIR/metrics.txt" | python3 -c '
import sys
rows = [l.split() for l in sys.stdin]
total = float(rows[-1][1]) or 1.0
shares = " ".join("%s:%.3f" % (n.split("\"")[1], float(v) / total) for n, v in rows[:-1][:7])
print("  ", sys.argv[1].replace("chogate_", ""), int(float(rows[-1][1])), shares)
' "$m"
done
echo "   WAL at the end: $(stat -c %s "$DB-wal" 2>/dev/null || echo 0) bytes"
stop $D
trap - EXIT
