"""Committed generated files: write them, and tell which ones the table no longer gives.

The diagrams (`airfsm diagram`) and the C table (`airfsm ctable`) are generated from the machine
table and committed; `make test` checks them with `--check DIR`. Both generators hand a
`{file name: text}` mapping to the two functions here, so "fresh" means the same for both: the
same bytes (UTF-8, LF line ends) as the table gives now.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path

DIFF_LINES = 20  # how much of a stale file's diff a report shows


def write_changed(out_dir: Path, files: Mapping[str, str]) -> list[Path]:
    """Write each file into `out_dir` (created if needed) unless it already holds those bytes;
    every path, written or not. OSError when the folder or a file cannot be written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in files.items():
        path = out_dir / name
        data = text.encode("utf-8")
        if not path.exists() or path.read_bytes() != data:
            path.write_bytes(data)
        paths.append(path)
    return paths


def stale(directory: Path, files: Mapping[str, str], suffixes: tuple[str, ...]) -> list[str]:
    """One problem per file of `directory` that differs from `files`: changed (with a short
    diff), missing, or no longer generated (a file with one of `suffixes` that `files` lacks).
    Empty: the folder is up to date."""
    if not directory.is_dir():
        return [f"{directory}: not a folder"]
    committed = {p.name for p in directory.iterdir() if p.is_file() and p.suffix in suffixes}
    problems = []
    for name in sorted(committed | set(files)):
        path = directory / name
        if name not in files:
            problems.append(f"{path}: no longer generated from the table (delete it)")
        elif name not in committed:
            problems.append(f"{path}: missing")
        elif path.read_bytes() != files[name].encode("utf-8"):
            diff = list(difflib.unified_diff(
                path.read_text("utf-8", "replace").splitlines(), files[name].splitlines(),
                f"{path} (committed)", f"{path} (from the table)", lineterm="", n=1))
            shown = "\n".join(diff[:DIFF_LINES]) + ("\n..." if len(diff) > DIFF_LINES else "")
            problems.append(f"{path}: differs from what the table gives\n{shown}")
    return problems
