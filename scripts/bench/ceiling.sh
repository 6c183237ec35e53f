#!/usr/bin/env bash
# chogate against the ceiling of the benchmark itself: the same generator run against the
# null gateway (`loadtest --role null-gateway`: chogate's SMPP engine answering each PDU at
# once with a fixed screen, no menus, no database) and against chogate (run.sh), alternated
# N C C N N C ..., ROUNDS pairs; then the ratio C/N of each pair and their geometric mean.
# The host's speed drifts within minutes; the ratio of runs side by side drifts less.
# The null gateway runs on NULL_THREADS runtime threads (default 1; chogate's runtime has 2
# plus its writer thread).
# Usage: scripts/bench/ceiling.sh BIN ROUNDS [loadtest args incl. --duration N]
source "$(dirname "$0")/common.sh"
BIN=$1
ROUNDS=$2
shift 2
[ $# -gt 0 ] || set -- --subscribers 300 --window "$WINDOW" --duration 8 --script 1,1,10,25000,1

# The null gateway takes the generator's scripts and MSISDNs (and its own --window, which
# the generator's would repeat), and ends when the generator unbinds.
NULL_ARGS=()
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case ${args[i]} in
        --script | --msisdn-base | --subscribers) NULL_ARGS+=("${args[i]}" "${args[i + 1]:-}"); i=$((i + 1)) ;;
        --script=* | --msisdn-base=* | --subscribers=*) NULL_ARGS+=("${args[i]}") ;;
    esac
done

null_run() {
    "$BIN" loadtest --role null-gateway --listen "127.0.0.1:$SMPP_PORT" --system-id ussdc --password ussdc123 \
        --window "$WINDOW" --threads "${NULL_THREADS:-1}" --duration 600 "${NULL_ARGS[@]}" \
        >"$BENCH_DIR/null.json" 2>"$BENCH_DIR/null.err" &
    local n=$! i
    trap 'kill $n 2>/dev/null || true' EXIT
    for i in $(seq 100); do
        grep -q "listening on" "$BENCH_DIR/null.err" && break
        kill -0 $n 2>/dev/null || { cat "$BENCH_DIR/null.err" >&2; return 1; }
        sleep 0.1
    done
    "$BIN" "${GEN_ARGS[@]}" "$@" 2>/dev/null | tail -n 1 >"$BENCH_DIR/last.json"
    wait $n
    trap - EXIT
    python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
l = d["latency_ms"]
print("N", round(d["steps_per_s"]), "p50", l["p50"], "p99", l["p99"], "max", l["max"], "err", d.get("errors"))
' "$BENCH_DIR/last.json"
}

for i in $(seq "$ROUNDS"); do
    if [ $((i % 2)) = 1 ]; then order="N C"; else order="C N"; fi
    for x in $order; do
        if [ "$x" = N ]; then null_run "$@"; else "$(dirname "$0")/run.sh" C "$BIN" "$@"; fi
    done
done | tee "$BENCH_DIR/ceiling.last" | python3 -c '
import math, sys
rows = [l.split() for l in sys.stdin if l.strip()]
for r in rows:
    print(" ".join(r))
n = [float(r[1]) for r in rows if r[0] == "N"]
c = [float(r[1]) for r in rows if r[0] == "C"]
ratios = [b / a for a, b in zip(n, c)]
if ratios:
    g = math.exp(sum(map(math.log, ratios)) / len(ratios))
    print("chogate / ceiling per pair:", " ".join("%.2f" % r for r in ratios), "geometric mean %.2f" % g)
'
