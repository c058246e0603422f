#!/usr/bin/env bash
# CPU per call, run after run: ROUNDS fixed-rate runs of each proxy (bench/proxy-vs-kamailio.sh
# with FIXED_ONLY=1), the order alternating from one round to the next so that neither proxy
# always runs right after the other. Prints each round's CPU per call (schedstat, all
# threads and processes), the host's steal during each run, the ratio, and the median ratio
# over all rounds and over the quiet ones (steal ≤ QUIET_STEAL % on both sides, 3 by
# default): one run on this kind of guest moves by ±15 %, so a single ratio is not a result.
#
# Usage: bench/cpu-series.sh [ROUNDS] [RATE] [SECONDS]   (defaults: 5 2000 30)
# CHILDREN, ROLLOVER_BIN and ROLLOVER_TOML are passed through. Every run is bounded by the
# benchmark's own limits and stops its processes by PID.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${1:-5}
RATE=${2:-2000}
SECONDS_PER_RUN=${3:-30}
QUIET_STEAL=${QUIET_STEAL:-3}
if [ -z "${ROLLOVER_BIN:-}" ]; then
  cargo build --release -q -p rollover
  ROLLOVER_BIN=./target/release/rollover
fi
export ROLLOVER_BIN FIXED_ONLY=1
LOG=$(mktemp /tmp/rollover-series.XXXXXX)
echo "log: $LOG"

rows=()
for round in $(seq "$ROUNDS"); do
  if [ $(( round % 2 )) -eq 1 ]; then order="kamailio rollover"; else order="rollover kamailio"; fi
  PROXIES="$order" bash bench/proxy-vs-kamailio.sh "$RATE" "$SECONDS_PER_RUN" >"$LOG.$round" 2>&1 || {
    echo "round $round failed:"; tail -5 "$LOG.$round"; exit 1
  }
  cat "$LOG.$round" >>"$LOG"
  # "== proxy" then its "fixed …" line: on CPU µs per call, steal %, calls ok/failed.
  row=$(awk -v round="$round" -v order="$order" '
    /^== / { p = $2 }
    /^   fixed / {
      for (i = 1; i <= NF; i++) {
        if ($i == "on" && $(i+1) == "CPU") cpu[p] = $(i+2)
        if ($i == "steal") steal[p] = $(i+1)
        if ($i == "ok,") ok[p] = $(i-1)
        if ($i == "failed;") bad[p] = $(i-1)
      }
    }
    END {
      printf "%d|%s|%s|%s|%s|%s|%s|%s|%.3f\n", round, order, cpu["kamailio"], steal["kamailio"],
        cpu["rollover"], steal["rollover"], ok["kamailio"] "/" bad["kamailio"],
        ok["rollover"] "/" bad["rollover"], cpu["rollover"] / cpu["kamailio"]
    }' "$LOG.$round")
  rows+=("$row")
  echo "round $row"
done

echo
echo "| round | order | Kamailio µs/call (steal %) | Rollover µs/call (steal %) | calls ok/failed (K / R) | ratio |"
echo "|---|---|---|---|---|---|"
for r in "${rows[@]}"; do
  IFS='|' read -r n order kc ks rc rs kok rok ratio <<<"$r"
  echo "| $n | $order | $kc ($ks) | $rc ($rs) | $kok / $rok | $ratio |"
done
printf '%s\n' "${rows[@]}" | QUIET=$QUIET_STEAL python3 -c '
import os, statistics, sys
quiet = float(os.environ["QUIET"])
rows = [l.rstrip("\n").split("|") for l in sys.stdin if l.strip()]
ratios = [float(r[8]) for r in rows]
calm = [float(r[8]) for r in rows if float(r[3]) <= quiet and float(r[5]) <= quiet]
print(f"median ratio, all {len(ratios)} rounds: {statistics.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f})")
if calm:
    print(f"median ratio, {len(calm)} quiet rounds (steal <= {quiet:g} % on both sides): {statistics.median(calm):.2f} (min {min(calm):.2f}, max {max(calm):.2f})")
else:
    print(f"no quiet round (steal <= {quiet:g} % on both sides)")
'
