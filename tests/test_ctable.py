"""The generated C header compiles and says what the Python table says."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from airfsm.core.codes import State
from airfsm.core.table import MACHINE, edges
from airfsm.tools.ctable import render_header

PROGRAM = r"""
#include <stdio.h>
#include "airfsm_table.h"
int main(void) {
    unsigned steps = 0;
    for (int s = 0; s < AIRFSM_STATE_COUNT; s++) steps += airfsm_machine[s].n_steps;
    printf("%d %u %u\n", AIRFSM_STATE_COUNT, AIRFSM_EDGE_COUNT, steps);
    const airfsm_step_t *apn = &airfsm_machine[AIRFSM_STATE_BEARER].steps[1];
    printf("%s\n", apn->command);
    const airfsm_step_t *tcp = &airfsm_machine[AIRFSM_STATE_MQTT_CONNECT].steps[3];
    for (const char *const *u = tcp->urc_ok; *u; u++) printf("%s|", *u);
    printf("\n%u %d\n", airfsm_machine[AIRFSM_STATE_HTTP_AUTH].policy->retries,
           (int)airfsm_machine[AIRFSM_STATE_ONLINE].next);
    return 0;
}
"""


def test_header_is_deterministic() -> None:
    assert render_header() == render_header()


def test_header_compiles_and_matches_the_table(tmp_path: Path) -> None:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        if os.environ.get("CI") == "true":
            pytest.fail("no C compiler on the CI machine")
        pytest.skip("no C compiler: install gcc")
    (tmp_path / "airfsm_table.h").write_text(render_header())
    (tmp_path / "main.c").write_text(PROGRAM)
    exe = tmp_path / "table"
    subprocess.run([cc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-Wno-unused-const-variable",
                    "-o", str(exe), str(tmp_path / "main.c")], check=True, cwd=tmp_path,
                   capture_output=True, text=True)
    lines = subprocess.run([str(exe)], check=True, capture_output=True,
                           text=True).stdout.splitlines()
    n_steps = sum(len(row.steps) for row in MACHINE)
    assert lines[0] == f"{len(State)} {len(edges())} {n_steps}"
    assert lines[1] == MACHINE[State.BEARER].steps[1].command
    tcp = MACHINE[State.MQTT_CONNECT].steps[3]
    assert tcp.name == "tcp"
    assert lines[2] == "".join(u + "|" for u in tcp.urc_ok)
    policy = MACHINE[State.HTTP_AUTH].policy
    assert policy is not None
    assert lines[3] == f"{policy.retries} -1"
