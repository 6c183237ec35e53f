#!/usr/bin/env bash
# Two builds alternated run by run in the order A B B A A B ..., ROUNDS pairs, each run on a
# fresh daemon and a fresh copy of the base database (run.sh); then the ratio B/A of each
# pair, their geometric mean, and each build's daemon CPU per step. The host's speed drifts
# by a third within minutes, so only pairs run side by side are compared.
# Each build starts from $BASE_A / $BASE_B when set (a build with a newer migration needs
# its own migrated and vacuumed copy: the older one refuses it), else from $BASE; and reads
# the menus of $MENUS_A / $MENUS_B when set (an older build cannot read newer menu files).
# Usage: scripts/bench/ab.sh BIN_A BIN_B ROUNDS [loadtest args incl. --duration N]
source "$(dirname "$0")/common.sh"
BASE_A=${BASE_A:-${BASE:-$BENCH_DIR/base.db}}
BASE_B=${BASE_B:-${BASE:-$BENCH_DIR/base.db}}
A=$1
B=$2
ROUNDS=$3
shift 3
[ $# -gt 0 ] || set -- --subscribers 300 --window 1000 --duration 8 --script 1,1,10,25000,1
for i in $(seq "$ROUNDS"); do
    if [ $((i % 2)) = 1 ]; then order="A B"; else order="B A"; fi
    for x in $order; do
        if [ "$x" = A ]; then bin=$A base=$BASE_A menus=${MENUS_A:-}; else bin=$B base=$BASE_B menus=${MENUS_B:-}; fi
        BASE=$base MENUS=$menus "$(dirname "$0")/run.sh" "$x" "$bin" "$@"
    done
done | tee "$BENCH_DIR/ab.last" | python3 -c '
import math, re, statistics, sys
args = sys.argv[1]
duration = int(re.search(r"--duration[ =](\d+)", args).group(1))
rows = [l.split() for l in sys.stdin if l.strip()]
for r in rows:
    print(" ".join(r))
def parse(r):
    steps = float(r[1])
    cs = int(re.search(r"daemon_cpu=(\d+)cs", " ".join(r)).group(1))
    return steps, cs * 1e4 / (steps * duration)
a = [parse(r) for r in rows if r[0] == "A"]
b = [parse(r) for r in rows if r[0] == "B"]
if not a or not b:
    sys.exit("a run failed: no figures for %s" % ("A" if not a else "B"))
ratios = [y[0] / x[0] for x, y in zip(a, b)]
print("steps/s B/A per pair:", " ".join("%.3f" % r for r in ratios),
      "geomean %.3f" % math.exp(sum(map(math.log, ratios)) / len(ratios)))
print("daemon CPU per step (us), median: A %.2f B %.2f" % (
    statistics.median(x[1] for x in a), statistics.median(y[1] for y in b)))
' "$*"
