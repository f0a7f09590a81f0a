"""Packaging: `airfsm --version`, the sdist and wheel contents (docs, contrib, LICENSE,
py.typed), and documentation examples that a shell runs as written (bash and zsh alike)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

import airfsm

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TIMEOUT_S = 300  # a bound against hangs


def test_version_is_the_packages() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert airfsm.__version__ == version
    result = subprocess.run([sys.executable, "-m", "airfsm", "--version"], capture_output=True,
                            text=True, timeout=TIMEOUT_S)
    assert result.returncode == 0 and result.stdout.strip() == f"airfsm {version}"


def test_sdist_and_wheel_carry_docs_unit_license_and_types(tmp_path: Path) -> None:
    pytest.importorskip("hatchling")
    build = ("import sys\nfrom hatchling.build import build_sdist, build_wheel\n"
             "print(build_sdist(sys.argv[1]))\nprint(build_wheel(sys.argv[1]))\n")
    result = subprocess.run([sys.executable, "-c", build, str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=TIMEOUT_S)
    assert result.returncode == 0, result.stderr
    sdist_name, wheel_name = result.stdout.split()
    with tarfile.open(tmp_path / sdist_name) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    for wanted in ("contrib/airfsm.service", "docs/GATEWAY.md", "docs/FIRMWARE.md",
                   "README.md", "CHANGELOG.md", "LICENSE", "airfsm/py.typed",
                   "airfsm/host/bridge.py", "pyproject.toml", "Makefile"):
        assert wanted in names, wanted
    assert not any(".venv" in name or "__pycache__" in name for name in names)
    with zipfile.ZipFile(tmp_path / wheel_name) as wheel:
        members = set(wheel.namelist())
        metadata = next(wheel.read(m).decode() for m in members if m.endswith("/METADATA"))
    assert "airfsm/py.typed" in members and "airfsm/host/bridge.py" in members
    assert any(m.endswith("licenses/LICENSE") for m in members)
    assert "Classifier: License :: OSI Approved :: MIT License" in metadata
    assert "Provides-Extra: bridge" in metadata and "Provides-Extra: metrics" in metadata
    # No project URL is invented (pyproject.toml says why there are none yet); one added
    # later must be a real https address, not a placeholder.
    for line in metadata.splitlines():
        if line.startswith("Project-URL:"):
            url = line.split(",", 1)[-1].strip()
            assert url.startswith("https://") and "example" not in url, line


def _shell_blocks(text: str) -> list[str]:
    return re.findall(r"```(?:sh|bash|shell|console)\n(.*?)```", text, flags=re.S)


def unquoted_globs(line: str) -> list[str]:
    """Characters of a shell line that bash and zsh would expand as a pattern (zsh fails
    with "no matches found" when nothing matches): `?`, `*`, `[` outside quotes, before a
    comment."""
    found = []
    quote = ""
    previous = " "
    i = 0
    while i < len(line):
        c = line[i]
        if quote:
            if c == quote:
                quote = ""
            elif c == "\\" and quote == '"':
                i += 1
        elif c == "\\":
            i += 1
        elif c in "'\"":
            quote = c
        elif c == "#" and previous in " \t":
            break  # a comment
        elif c in "?*[":
            found.append(c)
        previous = c
        i += 1
    return found


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_documented_shell_examples_expand_nothing(doc: Path) -> None:
    problems = []
    for block in _shell_blocks(doc.read_text()):
        for line in block.splitlines():
            command = line.removeprefix("$ ")
            if unquoted_globs(command):
                problems.append(command)
    assert not problems, f"{doc.name}: quote these for zsh: {problems}"


def test_the_glob_scanner_finds_what_zsh_would_choke_on() -> None:
    assert unquoted_globs("airfsm sim --fault cme=14:AT+CPIN?@2") == ["?"]
    assert unquoted_globs("airfsm sim --fault 'cme=14:AT+CPIN?@2'") == []
    assert unquoted_globs("connect [--region cn-shanghai]  # comment [x]") == ["["]
    assert unquoted_globs("mosquitto_sub -t '/pk/dn/#' -v   # what?") == []


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_mosquitto_clients_is_named_where_its_commands_are(doc: Path) -> None:
    text = doc.read_text()
    if "mosquitto_sub" in text or "mosquitto_pub" in text:
        assert "mosquitto-clients" in text, f"{doc.name}: name the Debian package"


# ---------------------------------------------------------------------- the examples, run

# Every command the documented examples run, as a stub that records its arguments: the
# examples themselves run unchanged in bash and in zsh, and each stub call must be the same in
# both (what zsh would expand, split or refuse differently shows up as a difference).
EXAMPLE_COMMANDS = ("airfsm", "make", "mosquitto", "mosquitto_sub", "mosquitto_pub", "sudo",
                    "python3", "systemctl", "journalctl", "grep", "some-sensor")
# One file per call (by pid): the commands of a pipeline run at once.
_STUB = '#!/bin/sh\nprintf "%s\\037" "${0##*/}" "$@" > "$STUB_LOG/$$"\n'
# What a shell says when it takes a documented line for something else than it is.
_SHELL_TROUBLE = ("no matches found", "bad pattern", "parse error", "unmatched",
                  "bad substitution", "syntax error", "command not found", "unexpected")


def _run_example(shell: list[str], script: str, tmp_path: Path) -> tuple[list[str], int, str]:
    """Run one documented block with every example command stubbed; (the stub calls, sorted:
    background jobs and pipelines run in any order; the exit status; stderr)."""
    stubs = tmp_path / "stubs"
    venv_bin = tmp_path / "cwd" / ".venv" / "bin"
    venv_bin.mkdir(parents=True, exist_ok=True)
    stubs.mkdir(exist_ok=True)
    for name in EXAMPLE_COMMANDS:
        for where in (stubs, venv_bin) if name == "airfsm" else (stubs,):
            (where / name).write_text(_STUB)
            (where / name).chmod(0o755)
    log = tmp_path / f"calls-{Path(shell[0]).name}"
    shutil.rmtree(log, ignore_errors=True)
    log.mkdir()
    env = {"PATH": str(stubs), "STUB_LOG": str(log), "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    result = subprocess.run([*shell, "-c", script + "\nwait\n"], cwd=tmp_path / "cwd", env=env,
                            capture_output=True, text=True, timeout=TIMEOUT_S)
    calls = sorted(call.read_text() for call in log.iterdir())
    return calls, result.returncode, result.stderr


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_documented_shell_examples_run_alike_in_bash_and_zsh(doc: Path, tmp_path: Path) -> None:
    """Verbatim: each block as written, in bash and in zsh (as a script: an interactive zsh
    takes `#` for a comment only with `setopt interactive_comments`, README says so)."""
    bash, zsh = shutil.which("bash"), shutil.which("zsh")
    if bash is None or zsh is None:
        pytest.skip("bash and zsh are needed (Debian package zsh: `make system-deps`)")
    for block in _shell_blocks(doc.read_text()):
        in_bash = _run_example([bash, "--norc", "--noprofile"], block, tmp_path)
        in_zsh = _run_example([zsh, "-f"], block, tmp_path)
        for shell, (_calls, _code, err) in (("bash", in_bash), ("zsh", in_zsh)):
            trouble = [word for word in _SHELL_TROUBLE if word in err.lower()]
            allowed = "/opt/airfsm/bin/pip" in err and "no such file" in err.lower()
            assert not trouble or allowed, f"{doc.name}, {shell}: {err}\n{block}"
        assert in_bash[0], f"{doc.name}: nothing ran in\n{block}"
        assert in_zsh[:2] == in_bash[:2], f"{doc.name}: bash and zsh differ on\n{block}"
