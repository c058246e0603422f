#!/usr/bin/env bash
# Runs every test Rollover has: formatting, lints, unit, conformance, property and
# integration tests (the integration tests drive SIPp, Kamailio, baresip, PJSUA2 and
# redis-server, installed here when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v sipp >/dev/null 2>&1 || need_apt+=(sip-tester)
# Kamailio for the interop tests (tests/kamailio.rs); Debian's package, run there in the
# foreground as the current user, so its own service need not run.
command -v kamailio >/dev/null 2>&1 || [ -x /usr/sbin/kamailio ] || need_apt+=(kamailio)
# baresip, a phone the tests place calls from (tests/sipp/phones.rs).
command -v baresip >/dev/null 2>&1 || need_apt+=(baresip-core)
# Redis for the shared location store's tests (rollover-registrar, tests/registrar.rs);
# each test starts its own server on a loopback port.
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
# prlimit (util-linux, on every Debian system) starts the proxy with too few files for its
# second worker (tests/process.rs).
command -v prlimit >/dev/null 2>&1 || need_apt+=(util-linux)
# unshare (util-linux) and ip (iproute2) make the network namespace whose loopback holds
# whole IPv6 /64s, for the per-/64 flood and connection limit tests (tests/security.rs).
command -v unshare >/dev/null 2>&1 || need_apt+=(util-linux)
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || need_apt+=(iproute2)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing ${need_apt[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# PJSIP's own user agent (Python bindings) for the interoperability tests. Outside CI the
# tests skip when it cannot be imported; under CI=true a missing peer fails the run.
if ! python3 -c "import pjsua2" >/dev/null 2>&1; then
  echo "== installing pjsua2-python (PJSIP interop tests)"
  if ! python3 -m pip install -q pjsua2-python; then
    if [ "${CI:-}" = "true" ]; then
      echo "pjsua2-python could not be installed: the interop tests cannot run" >&2
      exit 1
    fi
    echo "   (not installed: the PJSIP interop tests will skip)"
  fi
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== module cycles and file sizes"
python3 scripts/module-cycles.py
echo "== shell scripts parse"
for f in scripts/*.sh bench/*.sh .ci/run; do bash -n "$f"; done
echo "== cargo clippy"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
# The flood test at its full rate (30,000 INVITEs/s and 5,000 junk datagrams/s from two
# sources during 1,500 calls) needs the optimised proxy: a debug build cannot read that
# many datagrams on 2 cores, so the run above floods it at a third of the rate.
echo "== flood test against the release build"
cargo build --release --locked -p rollover
ROLLOVER_BIN="$PWD/target/release/rollover" cargo test --locked -p rollover --test security -- flood
