#!/usr/bin/env bash
# The registrar under load, driven by SIPp on 127.0.0.1, one proxy worker (workers = 1) so
# that every figure is per core, the per-source flood limit off (SIPp is one source).
#
# 1. Authenticated registrations on each store (STORES, default "sqlite redis"): USERS users
#    (1000) are made with `rollover user add` (password on stdin); SIPp registers them in
#    turn, one user per call (injection file, `-inf`), each call a digest exchange:
#    REGISTER → 401 → REGISTER with credentials (MD5, qop=auth) → 200 with the binding.
#    First FIXED_RATE registrations/s for FIXED_SECONDS s, for the CPU per registration
#    (utime + stime of the proxy from /proc/PID/stat, and of redis-server apart); then
#    increasing rates (STEPS, STEP_SECONDS s each, a fresh proxy for each) until one fails
#    or falls short: the highest rate with every registration answered 200, none failed,
#    none late.
#    SQLite: the embedded store in the work dir, WAL with synchronous=NORMAL (as the code
#    opens it). Redis: a redis-server of the script's own on a loopback port, RDB snapshots
#    off, appendonly yes with appendfsync everysec (the README's advice; a killed Redis
#    loses no acknowledged write, a power cut up to a second, as SQLite's WAL here).
# 2. CPU per call, a call to a registered user (`targets = ["location:"]`, the phone having
#    registered with digest, then answering as a SIPp UAS on the port it registered from)
#    against the same call to a static target (the same UAS), through the same build and
#    configuration: CALL_RATE calls/s (500) for CALL_SECONDS s (20), a fresh proxy on the
#    SQLite store for each run, CALL_REPEAT (2) runs of each, alternating. The caller is a
#    trusted gateway (`[security] trusted`), as in the tests: it need not authenticate.
#
# Usage: bench/registrar.sh [FIXED_RATE] [FIXED_SECONDS] [STEPS...]
# ROLLOVER_BIN=path measures another build; without it the release build is made and used.
# Every load step is bounded in calls and seconds; every process is stopped by its PID.
set -euo pipefail
cd "$(dirname "$0")/.."

FIXED_RATE=${1:-500}
FIXED_SECONDS=${2:-10}
shift $(( $# > 2 ? 2 : $# ))
STEPS=("$@")
[ ${#STEPS[@]} -gt 0 ] || STEPS=(2000 4000 6000 7000 8000 10000 12000)
STEP_SECONDS=${STEP_SECONDS:-4}
USERS=${USERS:-1000}
STORES=${STORES:-sqlite redis}
CALL_RATE=${CALL_RATE:-500}
CALL_SECONDS=${CALL_SECONDS:-20}
CALL_REPEAT=${CALL_REPEAT:-2}

command -v sipp >/dev/null || { echo "needs sipp (Debian: sip-tester)" >&2; exit 1; }
case " $STORES " in *" redis "*)
  command -v redis-server >/dev/null || { echo "needs redis-server (Debian: redis-server)" >&2; exit 1; } ;;
esac
if [ -z "${ROLLOVER_BIN:-}" ]; then
  cargo build --release -q -p rollover
  ROLLOVER_BIN=./target/release/rollover
fi
BIN=$(realpath "$ROLLOVER_BIN")

W=$(mktemp -d /tmp/rollover-registrar.XXXXXX)
echo "work dir: $W ($(df -T "$W" | awk 'NR == 2 { print $2 " on " $1 }'))"
PROXY_PORT=15260; PHONE=15270; UAC=15290; REDIS_PORT=16390
PIDS=()
# Waits for them too: a run started right after this one must find its ports free.
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
for p in $PROXY_PORT $PHONE $UAC; do
  if ss -Hlun "sport = :$p" | grep -q .; then echo "UDP port $p is taken" >&2; exit 1; fi
done
if ss -Hltn "sport = :$REDIS_PORT" | grep -q .; then echo "TCP port $REDIS_PORT is taken" >&2; exit 1; fi

# The tests' digest phone, one user per call: [field0] of the injection file is the user,
# [field1] the password (quoted: SIPp 3.6 reads a bare nested [field0] as the keyword's end).
sed -e 's/{{Q}}/1.0/; s/{{FINAL}}/200/; s/\[service\]/[field0]/g' \
    -e 's/\[authentication\]/[authentication username="[field0]" password="[field1]"]/' \
  crates/rollover/tests/sipp/uac_register_digest.xml > "$W/register.xml"
sed 's/{{HOLD_MS}}/0/' crates/rollover/tests/sipp/uac_answered.xml > "$W/uac.xml"
sed -e 's/{{RING_MS}}/0/; s/{{ANSWER_MS}}/1/' crates/rollover/tests/sipp/uas_answer.xml > "$W/answer.xml"
{
  echo SEQUENTIAL
  for i in $(seq -w 1 "$USERS"); do echo "user$i;pw-$i-secret"; done
} > "$W/users.csv"
printf 'SEQUENTIAL\nphone;pw-phone-secret\n' > "$W/phone.csv"

CLK=$(getconf CLK_TCK)
# "utime stime" (ticks, /proc/PID/stat fields 14 and 15, all threads) of one process.
ticks() {
  if [ -n "${1:-}" ] && [ -r "/proc/$1/stat" ]; then
    awk '{ sub(/.*\) /, ""); print $12, $13 }' "/proc/$1/stat"
  else
    echo "0 0"
  fi
}
now() { date +%s.%N; }
# UDP datagrams dropped for a full socket buffer, machine-wide (/proc/net/snmp).
drops() { awk '/^Udp:/ { if (h) { print $6; exit } h = 1 }' /proc/net/snmp; }

# config STORE EXTRA_SECURITY → the proxy's configuration on stdout.
config() {
  local store
  case "$1" in
    sqlite) store="path = \"$W/data-$2\"" ;;
    redis) store="url = \"redis://127.0.0.1:$REDIS_PORT/0\"" ;;
  esac
  cat <<EOF
[server]
listen = ["udp:127.0.0.1:$PROXY_PORT"]
record_route = true
workers = 1

[security]
# SIPp sends everything from one address: the per-source flood limit is off.
flood_rate = 0
secret = "benchmark-secret-not-for-production"
$3

[registrar]
domains = ["example.com"]
max_expires = 3600

[auth]
require = true
# SIPp answers MD5 challenges only.
algorithms = ["MD5"]

[store]
$store

[failover]
no_response_timeout = 10
ring_timeout = 20

[[route]]
name = "static"
match.request_uri = '^sip:100@'
targets = ["sip:100@127.0.0.1:$PHONE"]

[[route]]
name = "registered"
match.request_uri = '^sip:phone@'
targets = ["location:"]
EOF
}

# add_users CONFIG CSV: `rollover user add` for every line of the injection file.
add_users() {
  local t0 n=0 user pw
  t0=$(now)
  while IFS=';' read -r user pw; do
    [ "$user" = SEQUENTIAL ] && continue
    printf '%s\n' "$pw" | ( cd "$W" && "$BIN" user add "$user@example.com" --config "$1" >/dev/null )
    n=$(( n + 1 ))
  done < "$2"
  python3 -c "print(f'   {$n} users added in {$(now) - $t0:.1f} s')"
}

start_redis() {
  mkdir -p "$W/redis"
  redis-server --port $REDIS_PORT --bind 127.0.0.1 --dir "$W/redis" --save '' \
    --appendonly yes --appendfsync everysec --daemonize no >"$W/redis.log" 2>&1 & REDIS=$!
  PIDS+=($REDIS)
  for _ in $(seq 50); do
    if ss -Hltn "sport = :$REDIS_PORT" | grep -q .; then return; fi
    sleep 0.1
  done
  echo "redis-server did not start:" >&2; tail -5 "$W/redis.log" >&2; exit 1
}
stop_redis() { kill "$REDIS" 2>/dev/null || true; wait "$REDIS" 2>/dev/null || true; REDIS=""; }

start_proxy() {
  ( cd "$W" && RUST_LOG=warn exec "$BIN" proxy --config "$1" ) >"$W/proxy.log" 2>&1 & PROXY=$!
  PIDS+=($PROXY)
  for _ in $(seq 50); do
    if ss -Hlun "sport = :$PROXY_PORT" | grep -q .; then return; fi
    kill -0 $PROXY 2>/dev/null || break
    sleep 0.1
  done
  echo "the proxy did not start:" >&2; tail -5 "$W/proxy.log" >&2; exit 1
}
# Stops the proxy and waits (at most 20 s) until it is gone and its port is free.
stop_proxy() {
  kill $PROXY 2>/dev/null || true
  for _ in $(seq 200); do
    if ! kill -0 $PROXY 2>/dev/null && ! ss -Hlun "sport = :$PROXY_PORT" | grep -q .; then
      wait $PROXY 2>/dev/null || true; return
    fi
    sleep 0.1
  done
  echo "   (the proxy did not stop within 20 s)" >&2
}

# sipp_run NAME SECONDS_LIMIT SIPP_ARGS... → SIPp in $W/NAME, bounded; prints
# "successful failed retransmissions wall_seconds sipp_cpu_seconds".
sipp_run() {
  local name=$1 limit=$2 dir t0 t1 cpu
  shift 2
  dir="$W/$name"; mkdir -p "$dir"
  t0=$(now)
  # `times` in the subshell: its own CPU time, then its children's (SIPp's).
  cpu=$( cd "$dir" && { timeout "$limit" sipp "$@" -nostdin -trace_stat -stf stat.csv -fd 1 \
      >/dev/null 2>sipp.err || true; } && times )
  t1=$(now)
  python3 - "$dir" "$t0" "$t1" "$cpu" <<'PY'
import csv, re, sys
d, t0, t1, cpu = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
try:
    rows = list(csv.reader(open(f"{d}/stat.csv"), delimiter=";"))
    head, last = rows[0], rows[-1]
    ok = int(last[head.index("SuccessfulCall(C)")]); bad = int(last[head.index("FailedCall(C)")])
    created = int(last[head.index("TotalCallCreated")])
    retrans = int(last[head.index("Retransmissions(C)")])
    why = [f"{h}={last[i]}" for i, h in enumerate(head)
           if h.startswith("Failed") and h.endswith("(C)") and last[i] not in ("0", "")]
    if why:
        print(" ".join(why), file=open(f"{d}/../failures.log", "a"))
except (OSError, IndexError, ValueError):
    ok, bad, created, retrans = 0, 1, 1, 0
secs = sum(int(m) * 60 + float(s) for m, s in re.findall(r"(\d+)m([\d.]+)s", cpu)[2:])
print(ok, bad + (created - ok - bad), retrans, f"{t1 - t0:.2f}", f"{secs:.2f}")
PY
}

# register_load NAME RATE CALLS → "ok failed retrans wall_s sipp_cpu_s proxy_us redis_us
# udp_drops" (proxy and redis-server CPU per successful registration, µs).
register_load() {
  local name=$1 rate=$2 calls=$3 pu0 ps0 pu1 ps1 ru0 rs0 ru1 rs1 res d0
  d0=$(drops)
  read -r pu0 ps0 < <(ticks $PROXY); read -r ru0 rs0 < <(ticks "${REDIS:-}")
  res=$(sipp_run "$name" $(( calls / rate + 40 )) -sf "$W/register.xml" -inf "$W/users.csv" \
    127.0.0.1:$PROXY_PORT -i 127.0.0.1 -p $UAC -r "$rate" -m "$calls" -l $(( rate * 4 )) \
    -timeout $(( calls / rate + 30 ))s)
  read -r pu1 ps1 < <(ticks $PROXY); read -r ru1 rs1 < <(ticks "${REDIS:-}")
  read -r ok _ <<<"$res"
  python3 -c "n = max($ok, 1) / 1e6 * $CLK; print('$res', f'{($pu1 - $pu0 + $ps1 - $ps0) / n:.1f}', f'{($ru1 - $ru0 + $rs1 - $rs0) / n:.1f}', $(drops) - $d0)"
}

declare -A FIXED MAXRATE
for store in $STORES; do
  echo "== registrations on $store"
  REDIS=""
  [ "$store" = redis ] && start_redis
  config "$store" reg "" > "$W/$store.toml"
  add_users "$W/$store.toml" "$W/users.csv"
  start_proxy "$W/$store.toml"
  read -r ok bad re wall scpu pus rus _ < <(register_load "$store-fixed" "$FIXED_RATE" $(( FIXED_RATE * FIXED_SECONDS )))
  echo "   fixed $FIXED_RATE/s x ${FIXED_SECONDS} s: $ok ok, $bad failed, $re retransmissions, ${wall} s; CPU per registration: proxy $pus µs, redis-server $rus µs"
  FIXED[$store]="$pus|$rus|$ok/$bad"
  best=0; bestcpu=""
  for rate in "${STEPS[@]}"; do
    calls=$(( rate * STEP_SECONDS ))
    # A fresh proxy for each step: every registration leaves its nonce count in the
    # proxy's table for the nonce's lifetime (nonce_ttl, 5 min), and once that table holds
    # 100,000 every authenticated request sweeps all of it (see docs/performance.md); the
    # steps together would reach that, and measure it instead of the rate.
    stop_proxy; start_proxy "$W/$store.toml"
    read -r ok bad re wall scpu pus rus udp < <(register_load "$store-$rate" "$rate" "$calls")
    # Late: the calls took over 10 % longer than they should (SIPp or the proxy fell behind).
    late=$(python3 -c "print(int($wall > $STEP_SECONDS * 1.1 + 1))")
    pct=$(python3 -c "print(f'proxy {$pus * $ok / $wall / 1e4:.0f} %, sipp {$scpu / $wall * 100:.0f} %')")
    echo "   step $rate/s x ${STEP_SECONDS} s: $ok ok, $bad failed, $re retransmissions, ${wall} s; CPU per registration: proxy $pus µs, redis-server $rus µs; busy: $pct of a core; UDP drops $udp $( [ "$bad" -gt 0 ] && tail -1 "$W/failures.log" 2>/dev/null )"
    if [ "$bad" -eq 0 ] && [ "$ok" -eq "$calls" ] && [ "$late" -eq 0 ]; then
      best=$rate; bestcpu="$pus|$rus"
    else
      break
    fi
  done
  MAXRATE[$store]="$best|$bestcpu"
  stop_proxy
  [ -n "$REDIS" ] && stop_redis
  sleep 1
done

echo "== calls: registered user against static target, $CALL_RATE calls/s x $CALL_SECONDS s"
config sqlite calls 'trusted = ["127.0.0.1/32"]   # the caller: a gateway, no digest' > "$W/calls.toml"
add_users "$W/calls.toml" "$W/phone.csv"
declare -A CALLCPU CALLRUNS
for (( i = 1; i <= CALL_REPEAT; i++ )); do
  for kind in static registered; do
    start_proxy "$W/calls.toml"
    # The phone registers (digest) from the port it then answers on.
    read -r ok bad _ < <(sipp_run "phone-$kind-$i" 20 -sf "$W/register.xml" -inf "$W/phone.csv" \
      127.0.0.1:$PROXY_PORT -i 127.0.0.1 -p $PHONE -m 1 -timeout 10s)
    [ "$ok" -eq 1 ] || { echo "the phone did not register" >&2; exit 1; }
    sipp -sf "$W/answer.xml" -i 127.0.0.1 -p $PHONE -nostdin -timeout $(( CALL_SECONDS + 60 ))s \
      >/dev/null 2>&1 & UAS=$!; PIDS+=($UAS)
    sleep 0.5
    user=100; [ $kind = registered ] && user=phone
    calls=$(( CALL_RATE * CALL_SECONDS ))
    read -r u0 s0 < <(ticks $PROXY)
    read -r ok bad re wall _ < <(sipp_run "call-$kind-$i" $(( CALL_SECONDS + 40 )) -sf "$W/uac.xml" -s $user \
      127.0.0.1:$PROXY_PORT -i 127.0.0.1 -p $UAC -r "$CALL_RATE" -m "$calls" -l $(( CALL_RATE * 4 )) \
      -timeout $(( CALL_SECONDS + 30 ))s)
    read -r u1 s1 < <(ticks $PROXY)
    read -r cpu usr sys < <(python3 -c "n = max($ok, 1) / 1e6 * $CLK; print(f'{($u1 - $u0 + $s1 - $s0) / n:.1f} {($u1 - $u0) / n:.1f} {($s1 - $s0) / n:.1f}')")
    echo "   $kind #$i: $ok ok, $bad failed, $re retransmissions, ${wall} s; CPU $cpu µs/call (user $usr, system $sys)"
    CALLCPU[$kind]="${CALLCPU[$kind]:-} $cpu"; CALLRUNS[$kind]="${CALLRUNS[$kind]:-} $ok/$bad"
    kill $UAS 2>/dev/null || true; wait $UAS 2>/dev/null || true
    stop_proxy
    sleep 1
  done
done

echo
echo "$ROLLOVER_BIN (tree at $(git rev-parse --short HEAD)), $(nproc) cores, workers = 1, $USERS users, MD5 digest"
echo "| store | CPU per registration at $FIXED_RATE/s: proxy (µs) | redis-server (µs) | registrations ok/failed | highest rate with 0 failures (/s, steps of $STEP_SECONDS s) | CPU per registration there: proxy / redis-server (µs) |"
echo "|---|---|---|---|---|---|"
for store in $STORES; do
  IFS='|' read -r fp fr fo <<<"${FIXED[$store]}"
  IFS='|' read -r mr mp mrd <<<"${MAXRATE[$store]}"
  [ "$store" = redis ] || { fr="-"; mrd="-"; }
  echo "| $store | $fp | $fr | $fo | $mr | ${mp:-} / ${mrd:-} |"
done
[ "$CALL_REPEAT" -gt 0 ] || exit 0
echo
echo "| call ($CALL_RATE calls/s x $CALL_SECONDS s) | proxy CPU per call, each run (µs) | mean (µs) | calls ok/failed, each run |"
echo "|---|---|---|---|"
for kind in static registered; do
  mean=$(python3 -c "v = [float(x) for x in '${CALLCPU[$kind]}'.split()]; print(f'{sum(v) / len(v):.1f}')")
  echo "| $kind | ${CALLCPU[$kind]# } | $mean | ${CALLRUNS[$kind]# } |"
done
