#!/usr/bin/env bash
# Runs one fuzz target for a bounded time on one core, starting from the committed seeds.
#
#   fuzz/run.sh TARGET SECONDS [extra libFuzzer flags...]
#
# TARGET is parse, framer or uri. New inputs go to fuzz/corpus/TARGET (not committed);
# crashes go to fuzz/artifacts/TARGET. Needs a nightly toolchain and cargo-fuzz.
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 TARGET SECONDS [libFuzzer flags...]" >&2
    exit 2
fi
target=$1
seconds=$2
shift 2

cd "$(dirname "$0")/.."
mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
exec cargo +nightly fuzz run --sanitizer none "$target" \
    "fuzz/corpus/$target" "fuzz/seeds/$target" \
    -- \
    -max_total_time="$seconds" \
    -timeout=10 \
    -rss_limit_mb=2048 \
    -dict=fuzz/sip.dict \
    -print_final_stats=1 \
    "$@"
