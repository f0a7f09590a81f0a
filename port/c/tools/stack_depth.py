"""Worst-case stack of the C core's entry points, from GCC's call graphs (-fcallgraph-info=su).

Each .ci file (VCG text) lists the functions of one object with their frame sizes and the calls
between them. The deepest chain below a function is its frame plus the deepest chain below any
function it calls. Recursion (the core has none) is cut where it closes. Calls through function
pointers (the HAL's) and into the C library (memcpy ...) are not in the graph: add their frames.

    python3 tools/stack_depth.py core build/mps2/core/*.ci
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

NODE = re.compile(r'node: \{ title: "([^"]+)" label: "[^"]*?(\d+) bytes')
EDGE = re.compile(r'edge: \{ sourcename: "([^"]+)" targetname: "([^"]+)"')


def function(title: str) -> str:
    """"path/file.c:name" (defined here) or "name" (defined elsewhere) -> name."""
    return title.rsplit(":", 1)[-1]


def main(header_dir: str, graphs: list[str]) -> int:
    frames: dict[str, int] = {}
    calls: dict[str, list[str]] = {}
    for path in graphs:
        text = Path(path).read_text()
        for title, size in NODE.findall(text):
            frames[function(title)] = int(size)
        for source, target in EDGE.findall(text):
            calls.setdefault(function(source), []).append(function(target))

    def deepest(name: str, above: tuple[str, ...]) -> tuple[int, list[str]]:
        best, chain = 0, []
        for callee in calls.get(name, []):
            if callee not in above and callee in frames:
                depth, below = deepest(callee, (*above, name))
                if depth > best:
                    best, chain = depth, below
        return frames[name] + best, [name, *chain]

    headers = " ".join(p.read_text() for p in Path(header_dir).glob("*.h"))
    public = [n for n in frames if re.search(rf"\b{re.escape(n)}\s*\(", headers)]
    for depth, chain in sorted((deepest(n, ()) for n in public), reverse=True):
        print(f"  {chain[0]:<26} {depth:5d}   {' > '.join(chain)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
