"""Generate or check docs/reliability.md (tests/reliability/report.py).

    python -m bench.reliability --out docs/reliability.md
    python -m bench.reliability --check docs/reliability.md

Everything runs on the virtual clock with fixed seeds: the page is the same on every machine.
`--check` exits 1 with one line when the committed page is not what the code gives today.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tests.reliability.report import compute, render


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reliability", description=__doc__)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--out", type=Path, help="write the page here")
    what.add_argument("--check", type=Path, help="compare the page here with a fresh one")
    args = parser.parse_args(argv)
    page = render(compute())
    if args.out is not None:
        args.out.write_text(page, encoding="utf-8")
        return 0
    try:
        committed = args.check.read_text(encoding="utf-8")
    except OSError as exc:
        print(f"bench.reliability: cannot read {args.check}: {exc.strerror}", file=sys.stderr)
        return 1
    if committed != page:
        print(f"bench.reliability: {args.check} is stale: run `python -m bench.reliability "
              f"--out {args.check}`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
