#!/usr/bin/env python3
"""Which functions cost more time than their instructions explain: a loaded proxy's perf
profile beside a callgrind count of the same build.

    python3 bench/stall-ratio.py PERF_DATA CALLGRIND_OUT [ROWS]

PERF_DATA: `perf record` of the proxy under load (`PERF=1 … 2000 20` in
bench/proxy-vs-kamailio.sh). CALLGRIND_OUT: its instructions at a low rate (`CALLGRIND=1 …
50 10`). For each user-space function it prints its share of the user-space samples, its
share of the instructions, and the ratio of the two. Parsing code, which works on a message
just read, sits near 1 or below; a ratio of 5 or more is time spent waiting for memory
(state tables, cold structures), which an instruction count does not show.
"""

import collections
import re
import subprocess
import sys


def perf_shares(path):
    out = subprocess.run(
        ["perf", "report", "-i", path, "--no-children", "--sort", "sym", "--stdio", "-g", "none"],
        capture_output=True, text=True, check=True,
    ).stdout
    shares = collections.Counter()
    for line in out.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+\[\.\]\s+(.*)$", line)
        if m:
            shares[m.group(2).strip()] += float(m.group(1))
    total = sum(shares.values()) or 1.0
    return {k: 100 * v / total for k, v in shares.items()}


def callgrind_shares(path):
    out = subprocess.run(
        ["callgrind_annotate", "--inclusive=no", "--threshold=100", path],
        capture_output=True, text=True, check=True,
    ).stdout
    counts = collections.Counter()
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) \([ \d.]+%\)\s+\S+?:(.*?)( \[.*\])?$", line)
        if not m or "PROGRAM TOTALS" in line:
            continue
        counts[m.group(2).strip()] += int(m.group(1).replace(",", ""))
    # Frames above the program's own code carry the whole count (inclusive entry points).
    top = max(counts.values(), default=0)
    counts = {k: v for k, v in counts.items() if v < top / 4}
    total = sum(counts.values()) or 1
    return {k: 100 * v / total for k, v in counts.items()}


def same(a, b):
    # callgrind and perf name generic functions slightly differently: compare the ends.
    a, b = a[-60:], b[-60:]
    return a.endswith(b) or b.endswith(a)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    rows = int(sys.argv[3]) if len(sys.argv) > 3 else 30
    perf = perf_shares(sys.argv[1])
    cg = callgrind_shares(sys.argv[2])
    table = []
    for name, p in perf.items():
        if "memmove" in name or "memcpy" in name:
            c = sum(v for k, v in cg.items() if "memmove" in k or "memcpy" in k)
        else:
            c = sum(v for k, v in cg.items() if same(k, name))
        table.append((p, c, name))
    table.sort(reverse=True)
    print("| function | share of user-space samples under load | share of instructions | ratio |")
    print("|---|---|---|---|")
    for p, c, name in table[:rows]:
        ratio = f"{p / c:.1f}" if c > 0 else "n/a"
        print(f"| `{name[:90]}` | {p:.1f} % | {c:.1f} % | {ratio} |")


if __name__ == "__main__":
    main()
