"""Packaging: `airfsm --version`, the sdist and wheel contents (docs, contrib, LICENSE,
py.typed), and documentation examples that a shell runs as written (bash and zsh alike)."""

from __future__ import annotations

import re
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
