#!/usr/bin/env bash
# Builds Rollover with profile-guided optimisation (PGO): an instrumented build runs a
# training load, LLVM merges what it counted, and the release build is made again with
# the counts, so the compiler lays out the paths calls take together and moves the rest
# out of the way. Rollover's user space is bound by instruction fetch more than by memory
# (docs/performance.md), which is what this changes.
#
# Usage: bench/pgo.sh [OUT]   (default: target/pgo/rollover)
#
# Needs llvm-profdata of the LLVM rustc was built with (`rustc -vV` says which; on Debian
# 12 with Rust 1.95, `apt-get install llvm-22`; LLVM_PROFDATA names another). The training
# load is bench/proxy-vs-kamailio.sh's failover call through Rollover alone (the dial
# plan's rule at 300 and 1,500 calls/s, and the same call routed by a Lua script at 300),
# on 127.0.0.1, bounded like every run of that script. Figures measured on that same call
# are an upper bound for other traffic (docs/performance.md, "Profile-guided").
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-target/pgo/rollover}
llvm_major=$(rustc -vV | awk '/^LLVM version:/ { split($3, v, "."); print v[1] }')
PROFDATA=${LLVM_PROFDATA:-$(command -v "llvm-profdata-$llvm_major" || command -v llvm-profdata || true)}
if [ -z "$PROFDATA" ]; then
  echo "pgo: no llvm-profdata for LLVM $llvm_major (apt-get install llvm-$llvm_major, or set LLVM_PROFDATA)" >&2
  exit 1
fi
have_major=$("$PROFDATA" --version | sed -n 's/.*LLVM version \([0-9]*\).*/\1/p' | head -1)
if [ "$have_major" != "$llvm_major" ]; then
  echo "pgo: $PROFDATA is LLVM $have_major, rustc's is $llvm_major: it cannot read rustc's profiles" >&2
  exit 1
fi

# With --target, RUSTFLAGS reach Rollover's code but not build scripts or proc-macros
# (which would otherwise write profiles of their own while building).
HOST=$(rustc -vV | awk '/^host:/ { print $2 }')
DATA=$(mktemp -d /tmp/rollover-pgo.XXXXXX)
echo "pgo: profiles in $DATA"

# 1. Instrumented: every function counts its branches into $DATA/raw at exit (the proxy
# exits cleanly on SIGTERM, which is how the benchmark stops it).
RUSTFLAGS="-Cprofile-generate=$DATA/raw" \
  cargo build --release --locked -q -p rollover --target "$HOST" --target-dir target/pgo-generate

# 2. Training.
export ROLLOVER_BIN=target/pgo-generate/$HOST/release/rollover PROXIES=rollover FIXED_ONLY=1 CHILDREN=1
bash bench/proxy-vs-kamailio.sh 300 20 >"$DATA/train-300.log" 2>&1
bash bench/proxy-vs-kamailio.sh 1500 20 >"$DATA/train-1500.log" 2>&1
ROLLOVER_TOML=bench/rollover-script.toml.in ROLLOVER_LUA=bench/routes.lua.in \
  bash bench/proxy-vs-kamailio.sh 300 10 >"$DATA/train-lua.log" 2>&1
grep -h "fixed" "$DATA"/train-*.log | sed 's/^/pgo: trained on/'
if ! ls "$DATA"/raw/*.profraw >/dev/null 2>&1; then
  echo "pgo: the training runs wrote no profile" >&2
  exit 1
fi

# 3. Merged, and the release build made again with it.
"$PROFDATA" merge -o "$DATA/rollover.profdata" "$DATA"/raw/*.profraw
RUSTFLAGS="-Cprofile-use=$DATA/rollover.profdata" \
  cargo build --release --locked -q -p rollover --target "$HOST" --target-dir target/pgo-use
mkdir -p "$(dirname "$OUT")"
cp "target/pgo-use/$HOST/release/rollover" "$OUT"
echo "pgo: built $OUT"
