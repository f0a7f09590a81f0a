"""The C port's build: warning-free under the strict flags, a core that uses no more of the C
library than string.h, and `make size` reporting the Cortex-M3 footprint."""

from __future__ import annotations

import re
import subprocess

from tests.cport import PORT_C, make, require_cross_toolchain, require_host_compiler

# The only headers the portable core may include: the freestanding ones and string.h.
CORE_HEADERS = {"stdbool.h", "stddef.h", "stdint.h", "string.h"}


def core_sources() -> list[str]:
    require_host_compiler()
    return make("print-core").split()


STRICT = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-Wconversion")


def test_every_build_uses_the_strict_flags() -> None:
    require_host_compiler()
    make("all")  # -Werror: a single warning fails the build, and with it this test
    commands = subprocess.run(["make", "--no-print-directory", "-C", str(PORT_C), "-n", "-B",
                               "all", "harnesses"], capture_output=True, text=True,
                              check=True).stdout.splitlines()
    compiles = [c for c in commands if c.startswith("cc ")]
    for source in [*core_sources(), "posix/hal_posix.c", "probe/probe.c"]:
        lines = [c for c in compiles if source in c]
        assert lines, source
        for line in lines:
            assert all(flag in line.split() for flag in STRICT), line
    assert any("-fsanitize=address,undefined" in c for c in compiles if "core/aliyun.c" in c)


def test_core_uses_no_library_beyond_string_h() -> None:
    sources = core_sources()
    assert "core/digest.c" in sources and "core/aliyun.c" in sources
    assert "generated/airfsm_table.c" in sources
    # the core's own headers, and the generated table's (port/c/generated/)
    headers = [*(PORT_C / "core").glob("*.h"), *(PORT_C / "generated").glob("*.h")]
    local = {p.name for p in headers}
    assert "airfsm_table.h" in local
    for name in [*sources, *(str(h.relative_to(PORT_C)) for h in headers)]:
        text = (PORT_C / name).read_text()
        for header in re.findall(r'#include\s+[<"]([^>"]+)[>"]', text):
            assert header in CORE_HEADERS or header in local, f"{name} includes {header}"
        for call in ("malloc", "free(", "printf", "sprintf"):
            assert call not in re.sub(r"/\*.*?\*/", "", text, flags=re.S), f"{name}: {call}"


def test_size_reports_flash_ram_and_structs_for_every_core_object() -> None:
    require_cross_toolchain()
    out = make("size")
    for source in core_sources():
        assert source.replace("core/", "build/mps2/core/").replace(".c", ".o") in out
    flash, ram = map(int, re.search(r"flash \(text\+data\): (\d+) bytes\s+static RAM "
                                    r"\(data\+bss\): (\d+) bytes", out).groups())
    assert flash > 1000  # the hashes alone are more
    assert ram >= 0
    sizes = dict(re.findall(r"^\s+(\w+_t)\s+(\d+)$", out, re.M))
    assert int(sizes["aliyun_auth_reply_t"]) >= 2 * 257 + 254  # the buffers are in it
    stack = {m[0]: int(m[1]) for m in re.findall(r"^\s+(\w+)\s+(\d+) {3}\S", out, re.M)}
    # The auth body signs: its chain goes through the HMAC, deeper than the HMAC alone.
    assert stack["aliyun_auth_body"] > stack["hmac_init"] > 0
    assert "aliyun_parse_auth_reply" in stack


def test_size_reports_the_core_as_linked_and_one_controllers_ram() -> None:
    """The figures issue 9 asks for (its targets, 16 KB of flash and 4 KB of RAM, are printed
    beside them, not asserted: port/c/README.md says what is reached)."""
    require_cross_toolchain()
    out = make("size")
    linked = dict(re.findall(r"^\s+build/mps2/(\S+)\.o\s+(\d+)\s+\d+$", out, re.M))
    for source in core_sources():  # every core object is linked into the firmware ...
        assert int(linked[source.removesuffix(".c")]) > 0, source
    flash, ram = map(int, re.search(r"core as linked: flash (\d+) bytes, static RAM (\d+) bytes",
                                    out).groups())
    assert flash == sum(int(v) for v in linked.values())  # ... and the total is their sum
    assert ram == 0  # the core has no static state: everything is in the caller's airfsm_t
    (controller,) = re.findall(r"sizeof\(airfsm_t\) = (\d+) bytes of RAM", out)
    sizes = dict(re.findall(r"^\s+(\w+_t)\s+(\d+)$", out, re.M))
    assert int(controller) == int(sizes["airfsm_t"]) > int(sizes["at_channel_t"])
    assert "targets at the default sizes: flash <= 16384 bytes, RAM <= 4096 bytes" in out
