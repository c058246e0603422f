#!/usr/bin/env python3
"""Fails when the modules of a crate `use` each other in a cycle, or a source file is over
1,000 lines. A module's edges are the `crate::<module>` paths it names (test modules and
the crate root excluded); submodules count as their top-level module."""
import collections
import glob
import re
import sys

MAX_LINES = 1000
edges = collections.defaultdict(set)
problems = []
for f in sorted(glob.glob("crates/*/src/**/*.rs", recursive=True)):
    crate = f.split("/")[1]
    rel = f.split("/src/", 1)[1][:-3]
    top = rel.split("/")[0]
    text = open(f, encoding="utf-8").read()
    if text.count("\n") > MAX_LINES:
        problems.append(f"{f}: {text.count(chr(10))} lines (more than {MAX_LINES})")
    if top in ("lib", "main") or "tests" in top:
        continue
    # Only code that is compiled outside tests: drop `#[cfg(test)] mod tests { … }` tails.
    code = re.split(r"#\[cfg\(test\)\]\s*mod \w+\s*\{", text)[0]
    code = re.sub(r"//[^\n]*", "", code)  # comments name modules without using them
    for dep in set(re.findall(r"\bcrate::([a-z_][a-z0-9_]*)", code)):
        if dep != top:
            edges[(crate, top)].add(dep)


def cycle_from(crate, start):
    graph = {m: ds for (c, m), ds in edges.items() if c == crate}
    stack = [(start, [start])]
    seen = set()
    while stack:
        node, path = stack.pop()
        for d in sorted(graph.get(node, ())):
            if d == start:
                return path + [d]
            if d not in seen:
                seen.add(d)
                stack.append((d, path + [d]))
    return None


reported = set()
for crate, module in sorted(edges):
    c = cycle_from(crate, module)
    if c and frozenset(c) not in reported:
        reported.add(frozenset(c))
        problems.append(f"crates/{crate}: module cycle {' -> '.join(c)}")

for p in problems:
    print(p, file=sys.stderr)
sys.exit(1 if problems else 0)
