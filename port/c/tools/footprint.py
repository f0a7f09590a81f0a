"""What each object takes in a linked firmware image, from the GNU ld map file.

`arm-none-eabi-size` of the objects counts every function and table compiled; a firmware links
with -ffunction-sections -fdata-sections -Wl,--gc-sections and keeps only what it reaches. The
map file (-Wl,-Map) lists every input section the link kept, with its size and its object, under
the output section it went to: this sums them per object, so the core's figure is what an MCU
really pays for it (here: build/mps2/airfsm.elf, the controller firmware).

    python3 tools/footprint.py build/mps2/airfsm.map build/mps2/core/ build/mps2/generated/

prints each object whose path starts with one of the prefixes, its flash (code, constants and
the initial values of data) and static RAM (data and bss), their totals, and the whole image's.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

FLASH_SECTIONS = {".vectors", ".text", ".ARM.exidx"}
RAM_SECTIONS = {".bss"}
BOTH_SECTIONS = {".data"}  # in RAM, with its initial values in flash
# An input section: ` .text.name  0xADDRESS  0xSIZE object`, or the name alone on one line and
# the rest on the next (when the name is long).
INPUT = re.compile(r"^ (\S+)?\s+0x[0-9a-f]+\s+0x([0-9a-f]+)\s+(\S.*)$")
NAME_ONLY = re.compile(r"^ (\S+)$")
OUTPUT = re.compile(r"^(\.\S+)")


def footprint(map_text: str) -> dict[str, tuple[int, int]]:
    """object -> (flash bytes, RAM bytes) of what the link kept."""
    kept = map_text.split("Linker script and memory map", 1)[-1]
    sizes: dict[str, tuple[int, int]] = {}
    output = ""
    for line in kept.splitlines():
        if m := OUTPUT.match(line):
            output = m.group(1)
            continue
        if NAME_ONLY.match(line):
            continue  # its address, size and object are on the next line
        m = INPUT.match(line)
        if m is None or m.group(2) == "0":
            continue
        size, obj = int(m.group(2), 16), m.group(3).strip()
        flash, ram = sizes.get(obj, (0, 0))
        if output in FLASH_SECTIONS:
            flash += size
        elif output in RAM_SECTIONS:
            ram += size
        elif output in BOTH_SECTIONS:
            flash += size
            ram += size
        else:
            continue
        sizes[obj] = (flash, ram)
    return sizes


def main(map_path: str, prefixes: list[str]) -> int:
    sizes = footprint(Path(map_path).read_text())
    chosen = {obj: fr for obj, fr in sizes.items() if obj.startswith(tuple(prefixes))}
    print(f"  {'object':<36} {'flash':>6} {'RAM':>6}")
    for obj in sorted(chosen):
        flash, ram = chosen[obj]
        print(f"  {obj:<36} {flash:>6} {ram:>6}")
    print(f"core as linked: flash {sum(f for f, _ in chosen.values())} bytes, "
          f"static RAM {sum(r for _, r in chosen.values())} bytes")
    print(f"whole image:    flash {sum(f for f, _ in sizes.values())} bytes, "
          f"static RAM {sum(r for _, r in sizes.values())} bytes (board, C library, the app)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
