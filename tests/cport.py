"""Helpers for the tests of the C port (port/c): build it with its own Makefile, find the tools,
talk to its harnesses.

Every C test builds through `make -C port/c <target>`, the same command a porter runs, so the
Makefile itself is under test. A build runs once per target per test session.

Tools: the host compiler (`cc`) is needed for the host tests; the Cortex-M3 cross toolchain
(`arm-none-eabi-gcc` with newlib) and `qemu-system-arm` for the firmware tests. `make test`
installs them as root (the top-level Makefile's `system-deps`); where they are missing the tests
that need them skip with the reason locally and fail on CI (`CI=true`), as the mosquitto tests do.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PORT_C = ROOT / "port" / "c"
BUILD = PORT_C / "build"
IN_CI = os.environ.get("CI") == "true"
BUILD_TIMEOUT_S = 300

NEWLIB_NANO_SPECS = Path("/usr/lib/arm-none-eabi/newlib/nano.specs")


def missing(reason: str) -> None:
    """Skip the test with `reason` locally; fail it on CI, where every tool must be there."""
    if IN_CI:
        pytest.fail(f"{reason} (CI must have it: `make system-deps` installs it as root)")
    pytest.skip(reason)


def require_host_compiler() -> None:
    if shutil.which("cc") is None or shutil.which("make") is None:
        missing("no host C compiler or make: apt-get install gcc make")


def require_cross_toolchain() -> None:
    if shutil.which("arm-none-eabi-gcc") is None:
        missing("no Cortex-M cross compiler: apt-get install gcc-arm-none-eabi")
    if not NEWLIB_NANO_SPECS.exists():
        missing("no newlib for arm-none-eabi: apt-get install libnewlib-arm-none-eabi")


def require_qemu() -> str:
    qemu = shutil.which("qemu-system-arm")
    if qemu is None:
        missing("no qemu-system-arm: apt-get install qemu-system-arm")
    assert qemu is not None
    return qemu


@functools.cache
def _make(target: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "--no-print-directory", "-C", str(PORT_C), target],
                          capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)


def make(target: str) -> str:
    """`make -C port/c <target>` (once per session); its stdout. Fails the test on an error."""
    result = _make(target)
    if result.returncode != 0:
        pytest.fail(f"make -C port/c {target} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def hexfield(data: bytes | str | None) -> str:
    """A byte string as the harnesses read it: "x" + hex, or "-" for none."""
    if data is None:
        return "-"
    if isinstance(data, str):
        data = data.encode("utf-8")
    return "x" + data.hex()


def unhexfield(token: str) -> bytes:
    assert token.startswith("x"), token
    return bytes.fromhex(token[1:])


def run_harness(program: str, requests: list[str]) -> list[str]:
    """Pipe `requests` (one a line) through a sanitized harness; its answers, one a request.

    The harness runs under ASan+UBSan: any memory error or undefined behaviour makes it exit
    non-zero with a report, which fails the test here.
    """
    result = subprocess.run([str(BUILD / "asan" / program)],
                            input="".join(r + "\n" for r in requests),
                            capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    assert result.returncode == 0, f"{program} exited {result.returncode}:\n{result.stderr[-4000:]}"
    answers = result.stdout.splitlines()
    assert len(answers) == len(requests), result.stderr[-4000:]
    return answers


def run_script(program: str, script: list[str]) -> list[str]:
    """Pipe a script (one event a line) through a sanitized harness that answers with any number
    of lines (each callback as it fires, the state after each event); its output lines.

    As run_harness: a memory error or undefined behaviour fails the test here.
    """
    result = subprocess.run([str(BUILD / "asan" / program)],
                            input="".join(line + "\n" for line in script),
                            capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    assert result.returncode == 0, f"{program} exited {result.returncode}:\n{result.stderr[-4000:]}"
    return result.stdout.splitlines()
