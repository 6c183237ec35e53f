#!/usr/bin/env bash
# Instructions the daemon (BIN) runs per USSD step, user space only, under callgrind: a
# measure of the code's work that the host's drift cannot disturb (it does not see cache
# misses, the kernel or contention, and runs at low concurrency, so small groups).
# 4 warm-up dialogues per subscriber are not counted; then 40 per subscriber (50
# subscribers: 2 000 dialogues, 12 000 steps) are. The generator is GEN (default BIN).
# Usage: scripts/bench/instr.sh BIN [DIALOGUES_PER_SUBSCRIBER]
source "$(dirname "$0")/common.sh"
BIN=$1
N=${2:-40}
GEN=${GEN:-$BIN}
OUT=$BENCH_DIR/callgrind.out
rm -f "$OUT".*
start_daemon valgrind --tool=callgrind --callgrind-out-file="$OUT.%p" --dump-instr=no --instr-atstart=no "$BIN"
run() { loadtest "$GEN" --subscribers 50 --window 100 --dialogues "$1" --duration 600 --script 1,1,10,25000,1 2>/dev/null | tail -n 1; }
run 4 >/dev/null
callgrind_control -i on >/dev/null
run "$N" >"$BENCH_DIR/instr.json"
callgrind_control -i off >/dev/null
stop $D
trap - EXIT
steps=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["steps"])' "$BENCH_DIR/instr.json")
ir=$(callgrind_annotate "$OUT".* 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
echo "steps=$steps instructions=$ir per_step=$((ir / steps))"
