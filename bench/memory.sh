#!/usr/bin/env bash
# Rollover's memory under a sustained load and after it: the failover call of
# bench/proxy-vs-kamailio.sh (target 1 answers 486, target 2 answers 200, ACK, BYE) at RATE
# calls/s for SECONDS s, RSS sampled every 5 s, then 20, 40 and 60 s after the load stopped.
#
# Usage: bench/memory.sh [RATE] [SECONDS]
# LINGER=5s sets [server] linger (Kamailio's wait_timer habit); WORKERS=N sets workers (1);
# ROLLOVER_BIN=path measures another build. Every process is bounded and stopped by its PID.
set -euo pipefail
cd "$(dirname "$0")/.."

RATE=${1:-2000}
SECONDS_=${2:-30}
WORKERS=${WORKERS:-1}
if [ -z "${ROLLOVER_BIN:-}" ]; then
  cargo build --release -q -p rollover
  ROLLOVER_BIN=./target/release/rollover
fi
command -v sipp >/dev/null || { echo "needs sipp (Debian: sip-tester)" >&2; exit 1; }

W=$(mktemp -d /tmp/rollover-memory.XXXXXX)
PIDS=()
# Waits for them too: a run started right after this one must find its ports free.
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
PROXY_PORT=15060; T1=15070; T2=15080; UAC=15090
sed 's/{{HOLD_MS}}/0/' crates/rollover/tests/sipp/uac_answered.xml > "$W/uac.xml"
sed -e 's/{{CODE}}/486/; s/{{REASON}}/Busy Here/; s/{{DELAY_MS}}/0/; s/{{CONTACTS}}//' \
  crates/rollover/tests/sipp/uas_reject.xml > "$W/busy.xml"
sed -e 's/{{RING_MS}}/0/; s/{{ANSWER_MS}}/1/' crates/rollover/tests/sipp/uas_answer.xml > "$W/answer.xml"
sed -e "s/@PROXY_PORT@/$PROXY_PORT/g; s/@TARGET1@/127.0.0.1:$T1/g; s/@TARGET2@/127.0.0.1:$T2/g; s/@CHILDREN@/$WORKERS/g" \
  bench/rollover.toml.in > "$W/rollover.toml"
if [ -n "${LINGER:-}" ]; then
  sed -i "s/^\[server\]$/[server]\nlinger = \"$LINGER\"/" "$W/rollover.toml"
fi

limit=$(( SECONDS_ + 150 ))
sipp -sf "$W/busy.xml" -i 127.0.0.1 -p $T1 -nostdin -timeout ${limit}s >/dev/null 2>&1 & PIDS+=($!)
sipp -sf "$W/answer.xml" -i 127.0.0.1 -p $T2 -nostdin -timeout ${limit}s >/dev/null 2>&1 & PIDS+=($!)
RUST_LOG=warn "$ROLLOVER_BIN" proxy --config "$W/rollover.toml" >"$W/rollover.log" 2>&1 & P=$!; PIDS+=($P)
sleep 2
rss() { awk '/^VmRSS:/ { print int($2 / 1024) }' "/proc/$P/status"; }
echo "rollover $(git rev-parse --short HEAD), $RATE calls/s for $SECONDS_ s, workers=$WORKERS linger=${LINGER:-default (64·T1)}"
echo "before: $(rss) MB"
calls=$(( RATE * SECONDS_ ))
( cd "$W" && timeout $(( SECONDS_ + 60 )) sipp -sf uac.xml -s 100 127.0.0.1:$PROXY_PORT -i 127.0.0.1 -p $UAC \
    -r "$RATE" -m "$calls" -l $(( RATE * 4 )) -nostdin -timeout $(( SECONDS_ + 40 ))s \
    -trace_stat -stf stat.csv -fd 1 >/dev/null 2>&1 ) & LOAD=$!
peak=0
for (( t = 5; t <= SECONDS_; t += 5 )); do
  sleep 5
  m=$(rss); [ "$m" -gt "$peak" ] && peak=$m
  echo "  at ${t} s: $m MB"
done
wait $LOAD || true
read -r ok bad < <(python3 - "$W/stat.csv" <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1]), delimiter=";"))
h, last = rows[0], rows[-1]
print(last[h.index("SuccessfulCall(C)")], last[h.index("FailedCall(C)")])
PY
)
echo "end of load: $(rss) MB (peak sampled $peak MB); calls $ok ok, $bad failed"
for t in 20 40 60; do sleep 20; echo "$t s after: $(rss) MB"; done
