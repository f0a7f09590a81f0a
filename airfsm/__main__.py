"""`python -m airfsm` and the `airfsm` console script."""

from __future__ import annotations

import sys

from airfsm.cli import main

if __name__ == "__main__":
    sys.exit(main())
