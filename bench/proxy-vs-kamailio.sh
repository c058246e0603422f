#!/usr/bin/env bash
# Whole-system benchmark: the same failover call through Kamailio and through Rollover,
# driven by SIPp on 127.0.0.1. caller → proxy → target 1 answers 486 → target 2 answers 200
# → ACK → BYE.
#
# Reports per proxy, in one run: CPU time per completed call at a fixed rate (utime and stime
# of all the proxy's processes from /proc, divided by calls, total and apart; and the exact
# time on a CPU from the scheduler's count, which the clock-tick sampling of utime and stime
# only approximates; threads that exit during the run drop out of that sum), its memory
# after that run (Rollover's RSS; Kamailio's PSS summed over its processes), the highest
# rate sustained with 0 failed calls, and SIPp's INVITE→200 response-time percentiles.
# Kamailio runs tuned as operators run it: -x tlsf -m 1024 -M 16, children=CHILDREN (1),
# maxbuffer=4194304, debug=1, UDP only (bench/kamailio/failover.cfg.in).
#
# Usage: bench/proxy-vs-kamailio.sh [FIXED_RATE] [FIXED_SECONDS] [MAX_RATE_STEPS...]
# PROXIES="rollover" runs one side only; ROLLOVER_BIN=path measures another Rollover build
# (for a before/after comparison; ROLLOVER_TOML=template for a build that predates a config
# key); without it the release build is made and used.
# ROLLOVER_LUA=bench/routes.lua.in (with ROLLOVER_TOML=bench/rollover-script.toml.in) runs
# the same failover call as a routing script instead of a rule, for the script's cost.
# PERF=1 records a profile of each proxy during the fixed-rate run (PERF_CALLGRAPH=dwarf
# for call stacks through code built without frame pointers; PERF_FREQ samples per second).
# CALLGRIND=1 runs each proxy under valgrind's callgrind (Kamailio: every process it forks)
# and reports the instructions it executes in user space per call during the fixed-rate
# run: a figure that moves far less with the machine's noise than CPU time, for comparing
# two builds or the two proxies' user space (run it at a low rate, e.g. 50 cps).
# CACHESIM=1 (with CALLGRIND=1) also simulates the caches and reports data misses per call,
# the last level being CACHESIM_LL (size,ways,line; a core's 1 MiB L2 by default), for both
# proxies (Kamailio's processes summed, each with a cache of its own). With LINGER=32s at
# a low rate a proxy holds about as many lingering transactions as at 2,000 calls/s with
# the default 5 s: LINGER sets Rollover's [server] linger and Kamailio's tm wt_timer.
# BRANCHSIM=1 (with CALLGRIND=1) also simulates branch prediction and reports mispredicted
# conditional and indirect branches per call, for both proxies.
# THREADS=1 prints each thread's (or process's) time on a CPU and wake-ups per call during the
# fixed-rate run.
# SYSCALLS=1 counts the proxy's system calls per call during the fixed-rate run (strace -c).
# SYSCOUNT=1 counts the main ones (and context switches) with perf stat's tracepoints instead,
# which leaves the proxy's speed as it is.
# After the max rate, each proxy is offered 1.5x its max rate for OVERLOAD_SECONDS (10) s:
# the calls it completed per second against its max, what it refused, SIPp's
# retransmissions; then half its max for STEP_SECONDS to see that it recovered by itself.
# OVERLOAD_RATE=R offers R calls/s instead of 1.5x the max.
# FIXED_ONLY=1 runs the fixed-rate run only (no max-rate steps, no overload): what
# bench/cpu-series.sh repeats.
# CPU_QUOTA=P runs each proxy (all its processes) in a cgroup limited to P % of one core,
# so that the proxy, not SIPp, is what saturates: on a 2-core machine SIPp's three
# processes cannot offer 1.5x what a whole core of either proxy sustains.
# Every load step is bounded in calls and seconds; every process is stopped by its PID.
set -euo pipefail
cd "$(dirname "$0")/.."

FIXED_RATE=${1:-200}
FIXED_SECONDS=${2:-10}
shift $(( $# > 2 ? 2 : $# ))
STEPS=("$@")
[ ${#STEPS[@]} -gt 0 ] || STEPS=(400 600 800 1000 1300 1600 2000 2500 3000)
STEP_SECONDS=${STEP_SECONDS:-4}
OVERLOAD_SECONDS=${OVERLOAD_SECONDS:-10}
CHILDREN=${CHILDREN:-1}  # Kamailio's UDP workers: 1 for the single-core comparison

need=()
command -v sipp >/dev/null || need+=(sip-tester)
command -v kamailio >/dev/null || need+=(kamailio)
if [ ${#need[@]} -gt 0 ]; then
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd=sudo
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ -z "${ROLLOVER_BIN:-}" ]; then
  cargo build --release -q -p rollover
  ROLLOVER_BIN=./target/release/rollover
fi

WORK=$(mktemp -d /tmp/rollover-bench.XXXXXX)
echo "work dir: $WORK"
PROXY_PORT=15060; T1=15070; T2=15080; UAC=15090
PIDS=()
# Waits for them too: a run started right after this one must find its ports free.
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -n "${CG:-}" ]; then sleep 0.5; rmdir "$CG" 2>/dev/null || true; fi
}
trap cleanup EXIT

sed 's/{{HOLD_MS}}/0/' crates/rollover/tests/sipp/uac_answered.xml > "$WORK/uac.xml"
sed -e 's/{{CODE}}/486/; s/{{REASON}}/Busy Here/; s/{{DELAY_MS}}/0/; s/{{CONTACTS}}//' \
  crates/rollover/tests/sipp/uas_reject.xml > "$WORK/busy.xml"
sed -e 's/{{RING_MS}}/0/; s/{{ANSWER_MS}}/1/' crates/rollover/tests/sipp/uas_answer.xml > "$WORK/answer.xml"
fill() { sed -e "s/@PROXY_PORT@/$PROXY_PORT/g; s/@TARGET1@/127.0.0.1:$T1/g; s/@TARGET2@/127.0.0.1:$T2/g; s/@CHILDREN@/$CHILDREN/g" "$1"; }

CLK=$(getconf CLK_TCK)
CACHESIM_LL=${CACHESIM_LL:-1048576,16,64}
# Sums callgrind's events over the files named, by the names in their "events:" line
# (the columns move with the simulations asked for): prints "NAME TOTAL" lines.
cg_events() {
  awk '/^events:/ { for (i = 2; i <= NF; i++) name[i] = $i }
       /^summary:/ { for (i = 2; i <= NF; i++) sum[name[i]] += $i }
       END { for (k in sum) print k, sum[k] }' "$@"
}
# One event's total from cg_events' output on stdin (0 when not simulated).
cg_get() { awk -v k="$1" '$1 == k { v = $2 } END { print v + 0 }'; }
# cg_per_call BUSY IDLE CALLS EVENT...: the named events summed, the idle run's (cg_events
# output; empty for none) taken off, per call.
cg_per_call() {
  local busy=$1 idle=$2 calls=$3 t=0 e; shift 3
  for e in "$@"; do t=$(( t + $(cg_get "$e" <<<"$busy") - $(cg_get "$e" <<<"$idle") )); done
  echo $(( t / (calls > 0 ? calls : 1) ))
}
# The PIDs of a process and all its descendants.
tree() {
  local p kids
  for p in "$@"; do
    [ -r "/proc/$p/stat" ] || continue
    echo "$p"
    kids=$(cat /proc/"$p"/task/*/children 2>/dev/null | tr '\n' ' ')
    if [ -n "${kids// /}" ]; then tree $kids; fi
  done
  return 0
}
# /proc/PID/stat fields summed over the process tree of PID: `stat_sum "14 15" PID` prints
# the sum of field 14 and of field 15 (fields numbered as in proc(5)).
stat_sum() {
  local fields=$1; shift
  for p in $(tree "$@"); do
    awk -v f="$fields" '{ sub(/.*\) /, ""); n = split(f, k, " "); for (i = 1; i <= n; i++) printf "%s ", $(k[i] - 2); print "" }' "/proc/$p/stat" 2>/dev/null || true
  done | awk -v f="$fields" 'BEGIN { n = split(f, k, " ") } { for (i = 1; i <= n; i++) t[i] += $i } END { for (i = 1; i <= n; i++) printf "%d%s", t[i], (i < n ? " " : "\n") }'
}
# "utime stime" (ticks, /proc/PID/stat fields 14 and 15) summed over a process tree.
ticks() { stat_sum "14 15" "$@"; }
# Sums, over every thread of a process tree, what the awk program $2 prints from each
# thread's /proc/PID/task/TID/$1.
sum_threads() {
  local file=$1 prog=$2 n=0 p v
  shift 2
  for p in $(tree "$@"); do
    for v in $(awk "$prog" /proc/"$p"/task/*/"$file" 2>/dev/null); do
      n=$(( n + v ))
    done
  done
  echo $n
}
# Minor page faults (/proc/PID/stat field 10) summed over a process tree: a page the
# allocator gave back and touched again costs one, in system time.
faults() { stat_sum 10 "$@"; }
# Nanoseconds on a CPU, from the scheduler's own count (schedstat, field 1): exact, where
# utime and stime are sampled at the clock tick (the two agree within 0.5 % in the runs of
# docs/performance.md, so the spread between runs is not the measurement's).
oncpu() { sum_threads schedstat '{ print $1 }' "$@"; }
# "TID name nanoseconds-on-CPU voluntary-switches" for every thread of a process tree
# (THREADS=1 prints each thread's share of the fixed-rate run).
per_thread() {
  local p t
  for p in $(tree "$@"); do
    for t in /proc/"$p"/task/*; do
      echo "${t##*/} $(tr ' ' _ < "$t/comm" 2>/dev/null) $(awk '{ print $1 }' "$t/schedstat" 2>/dev/null) $(awk '/^voluntary_ctxt_switches:/ { print $2 }' "$t/status" 2>/dev/null)"
    done
  done
}
# Voluntary context switches (a thread going to sleep: each is a wake-up later).
switches() { sum_threads status '/^voluntary_ctxt_switches:/ { print $2 }' "$@"; }
# "steal total" ticks of the whole machine (/proc/stat's cpu line): the time a virtual
# machine's CPUs were ready but the host ran something else. A run during which the host
# took a large share measures the host as much as the proxy: its figures are not comparable
# with a quiet run's (the ratio of two proxies in one run suffers less).
steal() {
  awk '/^cpu / { t = 0; for (i = 2; i <= 9; i++) t += $i; print $9, t }' /proc/stat
}
# Memory in MB: RSS for a single process (Rollover), summed PSS over Kamailio's processes
# (they share memory, so their RSS would count it once per process).
memory_mb() {
  local kb=0 p v
  if [ "$1" = kamailio ]; then
    for p in $(tree "$2"); do
      v=$(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)
      kb=$(( kb + ${v:-0} ))
    done
  else
    kb=$(awk '/^VmRSS:/ { print $2 }' "/proc/$2/status")
  fi
  echo $(( kb / 1024 ))
}

start_callees() {
  sipp -sf "$WORK/busy.xml" -i 127.0.0.1 -p $T1 -nostdin -timeout 600s >/dev/null 2>&1 & PIDS+=($!); CALLEE1=$!
  sipp -sf "$WORK/answer.xml" -i 127.0.0.1 -p $T2 -nostdin -timeout 600s >/dev/null 2>&1 & PIDS+=($!); CALLEE2=$!
}
stop_callees() { kill $CALLEE1 $CALLEE2 2>/dev/null || true; wait $CALLEE1 $CALLEE2 2>/dev/null || true; }

# CPU_QUOTA: a cgroup (v2 cpu.max, else v1 cfs quota) with a 10 ms period, short enough
# that the throttling does not come in bursts the proxy would see as overload.
CG=""
if [ -n "${CPU_QUOTA:-}" ]; then
  quota=$(( CPU_QUOTA * 100 ))
  if grep -qw cpu /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
    CG=/sys/fs/cgroup/rollover-bench-$$; mkdir -p "$CG"; echo "$quota 10000" > "$CG/cpu.max"
  else
    CG=/sys/fs/cgroup/cpu/rollover-bench-$$; mkdir -p "$CG"
    echo 10000 > "$CG/cpu.cfs_period_us"; echo "$quota" > "$CG/cpu.cfs_quota_us"
  fi
  echo "each proxy limited to ${CPU_QUOTA} % of one core ($CG)"
fi
# Runs a command inside the cgroup, if any (its children too: Kamailio forks). Called in
# the background, it execs, so $! is the proxy's own PID.
in_cg() {
  if [ -n "$CG" ]; then exec sh -c 'echo $$ > "$0/cgroup.procs"; exec "$@"' "$CG" "$@"; else exec "$@"; fi
}

start_proxy() {
  case "$1" in
    kamailio)
      fill bench/kamailio/failover.cfg.in > "$WORK/kamailio.cfg"
      # LINGER: tm keeps a finished transaction this long (wt_timer), as Rollover's linger.
      if [ -n "${LINGER:-}" ]; then sed -i "s/^loadmodule \"tmx.so\"$/&\nmodparam(\"tm\", \"wt_timer\", $(( ${LINGER%s} * 1000 )))/" "$WORK/kamailio.cfg"; fi
      # TLSF: Debian's default allocator (q_malloc with memory debugging) is ~3x slower.
      # Under CALLGRIND=1 every process of Kamailio is counted (valgrind follows its forks).
      in_cg ${CALLGRIND:+valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.kamailio.%p" --dump-instr=no ${CACHESIM:+--cache-sim=yes --LL=$CACHESIM_LL} ${BRANCHSIM:+--branch-sim=yes}} \
        kamailio -f "$WORK/kamailio.cfg" -DD -E -x tlsf -m 1024 -M 16 >"$WORK/kamailio.log" 2>&1 & PROXY=$! ;;
    rollover)
      fill "${ROLLOVER_TOML:-bench/rollover.toml.in}" > "$WORK/rollover.toml"
      if [ -n "${LINGER:-}" ]; then sed -i "s/^\[server\]$/[server]\nlinger = \"$LINGER\"/" "$WORK/rollover.toml"; fi
      if [ -n "${ROLLOVER_LUA:-}" ]; then fill "$ROLLOVER_LUA" > "$WORK/routes.lua"; fi
      in_cg env RUST_LOG=warn ${CALLGRIND:+valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out" --dump-instr=no ${CACHESIM:+--cache-sim=yes --LL=$CACHESIM_LL} ${BRANCHSIM:+--branch-sim=yes}} \
        "$ROLLOVER_BIN" proxy --config "$WORK/rollover.toml" >"$WORK/rollover.log" 2>&1 & PROXY=$! ;;
  esac
  PIDS+=($PROXY)
  sleep 1
  if [ -n "${CALLGRIND:-}" ]; then sleep 4; fi
  if ! kill -0 $PROXY 2>/dev/null; then
    echo "$1 did not start:" >&2; tail -5 "$WORK/$1.log" >&2; exit 1
  fi
}
# Stops the proxy and all its processes, and waits (at most 20 s) until they are gone and
# the port is free: a Kamailio full of transactions takes seconds to exit, and the next
# proxy must not find the port taken (or, worse, the last one still answering).
stop_proxy() {
  local all; all=$(tree $PROXY)
  kill $all 2>/dev/null || true
  wait $PROXY 2>/dev/null || true
  for _ in $(seq 200); do
    local alive=0 p
    for p in $all; do kill -0 "$p" 2>/dev/null && alive=1; done
    if [ $alive -eq 0 ] && ! ss -Hlun "sport = :$PROXY_PORT" | grep -q .; then return; fi
    sleep 0.1
  done
  echo "   (the proxy did not stop within 20 s)" >&2
}

# run_load RATE CALLS → prints "successful failed retransmissions caller% callees%" (the
# last two: SIPp's own CPU during the load, in % of one core: the calling SIPp, and the two
# answering ones summed); writes rtt to $WORK/rtt.csv
run_load() {
  local rate=$1 calls=$2 dir="$WORK/load-$1-$RANDOM" TIMEFORMAT='%3U %3S'
  mkdir -p "$dir"
  local t0 cu0 cs0 t1 cu1 cs1
  t0=$(date +%s.%N); read -r cu0 cs0 < <(ticks $CALLEE1 $CALLEE2)
  # `time` reports the caller's CPU (user, system), counted when its process is reaped.
  { time ( cd "$dir" && timeout $(( calls / rate + 40 )) sipp -sf "$WORK/uac.xml" -s 100 127.0.0.1:$PROXY_PORT -i 127.0.0.1 -p $UAC \
      -r "$rate" -m "$calls" -l $(( rate * 4 )) -nostdin -timeout $(( calls / rate + 30 ))s \
      -trace_stat -stf stat.csv -fd 1 -trace_rtt -rtt_freq 50 >/dev/null 2>&1 ) || true ; } 2> "$dir/caller-cpu"
  t1=$(date +%s.%N); read -r cu1 cs1 < <(ticks $CALLEE1 $CALLEE2)
  echo "$t0 $t1 $(( cu1 - cu0 + cs1 - cs0 ))" > "$dir/callees-cpu"
  python3 - "$dir" "$CLK" <<'PY'
import csv, glob, sys
d, clk = sys.argv[1], int(sys.argv[2])
rows = list(csv.reader(open(f"{d}/stat.csv"), delimiter=";"))
head, last = rows[0], rows[-1]
ok = int(last[head.index("SuccessfulCall(C)")]); bad = int(last[head.index("FailedCall(C)")])
created = int(last[head.index("TotalCallCreated")])
retrans = int(last[head.index("Retransmissions(C)")])
t0, t1, callee_ticks = open(f"{d}/callees-cpu").read().split()
wall = max(float(t1) - float(t0), 1e-3)
try:
    caller = sum(float(x) for x in open(f"{d}/caller-cpu").read().split()[-2:])
except ValueError:
    caller = 0.0
print(ok, bad + (created - ok - bad), retrans, f"{100 * caller / wall:.0f}", f"{100 * int(callee_ticks) / clk / wall:.0f}")
why = [f"{h}={last[i]}" for i, h in enumerate(head) if h.startswith("Failed") and h.endswith("(C)") and last[i] not in ("0", "")]
if why:
    print(" ".join(why), file=open(f"{d}/../failures.log", "a"))
rtts = []
for f in glob.glob(f"{d}/*_rtt.csv"):
    for r in csv.reader(open(f), delimiter=";"):
        try: rtts.append(float(r[1]))
        except (ValueError, IndexError): pass
with open(f"{d}/../rtt.csv", "w") as out:
    out.write("\n".join(str(x) for x in sorted(rtts)))
PY
}

percentiles() {
  python3 - "$WORK/rtt.csv" <<'PY'
import sys
v = [float(x) for x in open(sys.argv[1]).read().split()]
if not v: print("n/a n/a n/a"); sys.exit()
p = lambda q: v[min(len(v) - 1, int(q * len(v)))]
print(f"{p(0.5):.2f} {p(0.9):.2f} {p(0.99):.2f}")
PY
}

declare -A CPU EXACT USR SYS MEM SIPPCPU MAXRATE P50 P90 P99 OKCALLS OVER RECOVER OVERRATE
for proxy in ${PROXIES:-kamailio rollover}; do
  echo "== $proxy"
  start_callees; start_proxy $proxy
  read -r u0 s0 < <(ticks $PROXY)
  w0=$(switches $PROXY); c0=$(oncpu $PROXY); f0=$(faults $PROXY); read -r st0 tt0 < <(steal)
  if [ -n "${THREADS:-}" ]; then per_thread $PROXY > "$WORK/threads0-$proxy.txt"; fi
  if [ -n "${PERF:-}" ]; then
    # PERF=1: a call-graph profile of the proxy (every process: Kamailio forks its
    # workers) during the fixed-rate run.
    perf record -q -F ${PERF_FREQ:-999} --call-graph ${PERF_CALLGRAPH:-fp} -p "$(tree $PROXY | paste -sd,)" -o "$WORK/perf-$proxy.data" -- sleep "$FIXED_SECONDS" >/dev/null 2>&1 & PERF_PID=$!
  fi
  if [ -n "${SYSCALLS:-}" ]; then
    # SYSCALLS=1: the system calls of every process of the proxy during the fixed-rate
    # run (strace slows the proxy: its CPU figure is not comparable then).
    strace_args=(); for p in $(tree $PROXY); do strace_args+=(-p "$p"); done
    strace -c -f -o "$WORK/syscalls-$proxy.txt" "${strace_args[@]}" & STRACE_PID=$!
    sleep 1
  fi
  if [ -n "${SYSCOUNT:-}" ]; then
    # SYSCOUNT=1: the same count from the kernel's tracepoints (perf stat), which does not
    # stop the proxy at each call as strace does: its CPU figure stays comparable.
    perf stat -x, -o "$WORK/syscount-$proxy.txt" -p "$(tree $PROXY | paste -sd,)" \
      -e raw_syscalls:sys_enter,syscalls:sys_enter_sendto,syscalls:sys_enter_sendmmsg,syscalls:sys_enter_recvfrom,syscalls:sys_enter_recvmmsg,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_write,syscalls:sys_enter_futex,context-switches \
      -- sleep "$FIXED_SECONDS" >/dev/null 2>&1 & SYSCOUNT_PID=$!
  fi
  if [ -n "${CALLGRIND:-}" ] && [ $proxy = rollover ]; then callgrind_control -z $PROXY >/dev/null; fi
  load_start=$(date +%s.%N)
  read -r ok bad _ < <(run_load "$FIXED_RATE" $(( FIXED_RATE * FIXED_SECONDS )))
  load_seconds=$(python3 -c "import time; print(f'{time.time() - $load_start:.1f}')")
  if [ -n "${CALLGRIND:-}" ] && [ $proxy = rollover ]; then
    # Instructions executed in user space for the calls of the fixed-rate run only (all
    # threads): the dump after the zeroing.
    callgrind_control -d $PROXY >/dev/null; sleep 1
    ir=$(awk '/^summary:/ { print $2 }' "$WORK/callgrind.out.1")
    echo "   callgrind: $(( ir / (ok > 0 ? ok : 1) )) instructions per call in user space ($ok calls); profile: callgrind_annotate $WORK/callgrind.out.1"
    ev=$(cg_events "$WORK/callgrind.out.1")
    pc() { cg_per_call "$ev" "" "$ok" "$@"; }
    if [ -n "${CACHESIM:-}" ]; then
      # The last level simulated is CACHESIM_LL (a core's L2 by default): a data miss there
      # is a wait for memory further out, which the instruction count does not show.
      echo "   cache: $(pc Dr) data reads and $(pc Dw) writes per call; L1 instruction misses $(pc I1mr); L1 data misses $(pc D1mr D1mw); $CACHESIM_LL data misses $(pc DLmr DLmw) per call"
    fi
    if [ -n "${BRANCHSIM:-}" ]; then
      echo "   branches: $(pc Bc) conditional, $(pc Bcm) mispredicted; $(pc Bi) indirect, $(pc Bim) mispredicted, per call"
    fi
  fi
  if [ -n "${SYSCALLS:-}" ]; then
    kill -INT $STRACE_PID; wait $STRACE_PID || true
    echo "   system calls per call (strace -c, $ok calls):"
    awk -v n="$ok" '$1 ~ /^[0-9.]+$/ && NF >= 5 { printf "     %-16s %8.2f\n", $NF, $4 / n }' "$WORK/syscalls-$proxy.txt"
  fi
  if [ -n "${SYSCOUNT:-}" ]; then
    wait $SYSCOUNT_PID || true
    echo "   system calls per call (perf stat over ${FIXED_SECONDS} s, $ok calls):"
    awk -F, -v n="$ok" '$1 ~ /^[0-9]+$/ { name = $3; sub(/^.*sys_enter_?/, "", name); if (name == "") name = "all"; printf "     %-16s %8.2f\n", name, $1 / n }' "$WORK/syscount-$proxy.txt"
  fi
  read -r u1 s1 < <(ticks $PROXY)
  w1=$(switches $PROXY); c1=$(oncpu $PROXY); f1=$(faults $PROXY); read -r st1 tt1 < <(steal)
  if [ -n "${THREADS:-}" ]; then
    per_thread $PROXY > "$WORK/threads1-$proxy.txt"
    echo "   on CPU (µs) and wake-ups per call by thread:"
    awk -v n="$ok" 'NR == FNR { t0[$1] = $3; w0[$1] = $4; next } { d = $3 - t0[$1]; if (d > 0) printf "     %-8s %-18s %8.1f %6.2f\n", $1, $2, d / 1000 / (n > 0 ? n : 1), ($4 - w0[$1]) / (n > 0 ? n : 1) }' "$WORK/threads0-$proxy.txt" "$WORK/threads1-$proxy.txt"
  fi
  mem=$(memory_mb $proxy $PROXY)
  if [ -n "${PERF:-}" ]; then
    wait $PERF_PID || true
    echo "   profile: perf report -i $WORK/perf-$proxy.data"
  fi
  read -r p50 p90 p99 < <(percentiles)
  read -r cpu_us usr_us sys_us < <(python3 -c "n = max($ok, 1) / 1e6 * $CLK; print(f'{($u1 - $u0 + $s1 - $s0) / n:.1f} {($u1 - $u0) / n:.1f} {($s1 - $s0) / n:.1f}')")
  exact_us=$(python3 -c "print(f'{($c1 - $c0) / 1000 / max($ok, 1):.1f}')")
  steal_pct=$(python3 -c "print(f'{100 * ($st1 - $st0) / max($tt1 - $tt0, 1):.0f}')")
  echo "   fixed ${FIXED_RATE} cps x ${FIXED_SECONDS} s: $ok ok, $bad failed; CPU $cpu_us us/call (user $usr_us, system $sys_us); on CPU $exact_us us/call (schedstat); host steal $steal_pct %; $(python3 -c "print(f'{($w1 - $w0) / max($ok, 1):.2f}')") wake-ups/call; $(python3 -c "print(f'{($f1 - $f0) / max($ok, 1):.2f}')") page faults/call; memory $mem MB; INVITE→200 p50 $p50 ms p90 $p90 ms p99 $p99 ms"
  if [ -n "${CALLGRIND:-}" ] && [ $proxy = kamailio ]; then
    # valgrind's control tool cannot reach the processes Kamailio forks, so whole runs are
    # counted (each process writes its count when it exits): this one, then one as long
    # without calls; the difference is what the calls cost, start-up and timers left out.
    stop_proxy; sleep 1
    # Summed over the processes (each has a simulated cache and predictor of its own).
    busy_ev=$(cg_events "$WORK"/callgrind.kamailio.*)
    nproc=$(ls "$WORK"/callgrind.kamailio.* | wc -l)
    rm -f "$WORK"/callgrind.kamailio.*
    start_proxy kamailio; sleep "$load_seconds"; stop_proxy; sleep 1
    idle_ev=$(cg_events "$WORK"/callgrind.kamailio.*)
    rm -f "$WORK"/callgrind.kamailio.*
    per_call() { cg_per_call "$busy_ev" "$idle_ev" "$ok" "$@"; }
    echo "   callgrind: $(per_call Ir) instructions per call in user space ($ok calls; $nproc processes; $(cg_get Ir <<<"$busy_ev") with the calls, $(cg_get Ir <<<"$idle_ev") idle for ${load_seconds} s)"
    if [ -n "${CACHESIM:-}" ]; then
      echo "   cache: L1 instruction misses $(per_call I1mr); L1 data misses $(per_call D1mr D1mw); $CACHESIM_LL data misses $(per_call DLmr DLmw) per call (with the calls less idle)"
    fi
    if [ -n "${BRANCHSIM:-}" ]; then
      echo "   branches: $(per_call Bc) conditional, $(per_call Bcm) mispredicted; $(per_call Bi) indirect, $(per_call Bim) mispredicted, per call (with the calls less idle)"
    fi
    start_proxy kamailio
  fi
  CPU[$proxy]=$cpu_us; EXACT[$proxy]=$exact_us; USR[$proxy]=$usr_us; SYS[$proxy]=$sys_us; MEM[$proxy]=$mem; OKCALLS[$proxy]="$ok/$bad"; P50[$proxy]=$p50; P90[$proxy]=$p90; P99[$proxy]=$p99
  best=0
  if [ -n "${FIXED_ONLY:-}" ]; then STEPS=(); fi
  for rate in "${STEPS[@]}"; do
    read -r ok bad _ uac uas < <(run_load "$rate" $(( rate * STEP_SECONDS )))
    echo "   step $rate cps x ${STEP_SECONDS} s: $ok ok, $bad failed; SIPp CPU: caller $uac %, callees $uas % of a core $( [ "$bad" -gt 0 ] && tail -1 "$WORK/failures.log" 2>/dev/null )"
    if [ "$bad" -eq 0 ] && [ "$ok" -eq $(( rate * STEP_SECONDS )) ]; then best=$rate; SIPPCPU[$proxy]="$uac / $uas"; else break; fi
  done
  MAXRATE[$proxy]=$best
  if [ "$best" -gt 0 ]; then
    over=${OVERLOAD_RATE:-$(( best * 3 / 2 ))}
    read -r ok bad re _ < <(run_load "$over" $(( over * OVERLOAD_SECONDS )))
    pct=$(( ok * 100 / (best * OVERLOAD_SECONDS) ))
    OVERRATE[$proxy]=$over
    echo "   overload $over cps x ${OVERLOAD_SECONDS} s: $ok completed ($pct % of the max rate's calls), $bad refused or failed, $re retransmissions $( [ "$bad" -gt 0 ] && tail -1 "$WORK/failures.log" 2>/dev/null )"
    OVER[$proxy]="$pct % ($ok ok, $bad refused/failed, $re retr.)"
    sleep 2
    half=$(( best / 2 ))
    read -r ok bad re _ < <(run_load "$half" $(( half * STEP_SECONDS )))
    echo "   after it, $half cps x ${STEP_SECONDS} s: $ok ok, $bad failed"
    RECOVER[$proxy]="$ok/$bad"
  fi
  stop_proxy; stop_callees
  sleep 1
done

echo
echo "| proxy | CPU per call (µs) at ${FIXED_RATE} cps: total (user + system) | on CPU per call (µs, schedstat) | memory after it (MB; RSS, Kamailio: PSS summed) | calls ok/failed | max rate with 0 failures (cps) | SIPp CPU at the max rate, caller / callees (% of a core) | at 1.5x max: completed vs max | then max/2: ok/failed | INVITE→200 p50 / p90 / p99 (ms) |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for proxy in ${PROXIES:-kamailio rollover}; do
  echo "| $proxy | ${CPU[$proxy]} (${USR[$proxy]} + ${SYS[$proxy]}) | ${EXACT[$proxy]} | ${MEM[$proxy]} | ${OKCALLS[$proxy]} | ${MAXRATE[$proxy]} | ${SIPPCPU[$proxy]:-} | ${OVER[$proxy]:-} at ${OVERRATE[$proxy]:-} cps | ${RECOVER[$proxy]:-} | ${P50[$proxy]} / ${P90[$proxy]} / ${P99[$proxy]} |"
done
if [ -n "${CPU[kamailio]:-}" ] && [ -n "${CPU[rollover]:-}" ]; then
  python3 -c "k=${CPU[kamailio]}; r=${CPU[rollover]}; ku=${USR[kamailio]}; ru=${USR[rollover]}; ke=${EXACT[kamailio]}; re=${EXACT[rollover]}; user = f'{ru/ku:.2f}' if ku else 'n/a'; print(f'CPU per call, rollover / kamailio: {r/k:.2f} (user: {user}); on CPU (schedstat): {re/ke:.2f}')"
  echo "max rate, rollover / kamailio: ${MAXRATE[rollover]} / ${MAXRATE[kamailio]}"
fi
