#!/usr/bin/env bash
# One measured run: a fresh daemon (BIN) on a fresh copy of $BENCH_DIR/base.db, the load
# generator of the same build against it, then one line: label, steps/s, latency, errors,
# the daemon's CPU over the run (centiseconds) and the generator's (seconds).
# Usage: scripts/bench/run.sh LABEL BIN [loadtest args]
#   default args: --subscribers 300 --window 1000 --duration 8 --script 1,1,10,25000,1
source "$(dirname "$0")/common.sh"
LABEL=$1
BIN=$2
shift 2
[ $# -gt 0 ] || set -- --subscribers 300 --window 1000 --duration 8 --script 1,1,10,25000,1
start_daemon "$BIN"
t0=$(cpu_cs $D)
/usr/bin/time -f "gen_cpu %U %S" -o "$BENCH_DIR/gen.time" \
    "$BIN" "${GEN_ARGS[@]}" "$@" 2>"$BENCH_DIR/gen.err" | tail -n 1 >"$BENCH_DIR/last.json"
t1=$(cpu_cs $D)
stop $D
trap - EXIT
summary=$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
l = d["latency_ms"]
print(round(d["steps_per_s"]), "p50", l["p50"], "p99", l["p99"], "max", l["max"], "err", d.get("errors"))
' "$BENCH_DIR/last.json")
echo "$LABEL $summary daemon_cpu=$((t1 - t0))cs $(cat "$BENCH_DIR/gen.time")"
