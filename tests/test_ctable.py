"""The generated C table (`airfsm ctable`): committed fresh, clean under the strict flags on the
host and the Cortex-M3, and holding the Python table's values, read back by a C program that
includes the header and links the .c. What the table exports beside the machine (placeholder
bounds, settings ranges, what each check reads, ONLINE's commands) is checked against the code
that enforces or uses it: validate(), the auth reply scan, the judge, a controller online."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from airfsm.core import aliyun, at, payload, table
from airfsm.core.at import AtResponse
from airfsm.core.codes import AtResult, Check, Outcome, Placeholder, State, Trigger
from airfsm.core.judge import ANSWERS, judge_answer, judge_urc
from airfsm.core.settings import BODY_CAPACITY, CMD_CAPACITY, SETTING_RANGES, U31_MAX, Settings
from airfsm.core.table import (
    MACHINE,
    MPUB_PIECES,
    MPUB_TEMPLATE,
    ONLINE_STEPS,
    PLACEHOLDER_MAX,
    URCS,
    Step,
    edge_table,
    edges,
    expand,
    expanded_max,
    split_template,
)
from airfsm.sim import SimConfig, parse_fault
from airfsm.tools import ctable, fresh
from tests.cport import PORT_C, require_cross_toolchain, require_host_compiler
from tests.harness import make_rig

REPO = Path(__file__).resolve().parent.parent
COMMITTED = PORT_C / "generated"
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-Wconversion", "-Wshadow",
          "-Wstrict-prototypes", "-Wmissing-prototypes", "-Wunused-const-variable=2"]


def templates() -> list[str]:
    """Every command template the port expands: the steps', ONLINE's and AT+MPUB's."""
    return [*(s.command for row in MACHINE for s in row.steps),
            *(s.command for s in ONLINE_STEPS), MPUB_TEMPLATE]


# ---------------------------------------------------------------------- the files and the command


def test_generation_is_deterministic_across_processes(tmp_path: Path) -> None:
    outputs = []
    for seed in ("1", "2"):
        out = tmp_path / seed
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run([sys.executable, "-m", "airfsm", "ctable", "--out", str(out)],
                       check=True, env=env, cwd=REPO, capture_output=True)
        outputs.append({p.name: p.read_bytes() for p in sorted(out.iterdir())})
    assert outputs[0] == outputs[1]
    assert outputs[0] == {name: text.encode() for name, text in ctable.generate().items()}


def test_committed_table_is_fresh() -> None:
    assert fresh.stale(COMMITTED, ctable.generate(), ctable.CHECKED_SUFFIXES) == [], (
        "run `make ctable` and commit port/c/generated/")


def test_check_names_a_changed_missing_or_stray_file(tmp_path: Path) -> None:
    assert ctable.run(tmp_path, None, stdout=io.StringIO(), stderr=io.StringIO()) == 0
    out, err = io.StringIO(), io.StringIO()
    assert ctable.run(Path("unused"), tmp_path, stdout=out, stderr=err) == 0
    assert "up to date" in out.getvalue() and err.getvalue() == ""

    source = tmp_path / ctable.SOURCE_NAME
    source.write_text(source.read_text().replace(".timeout_ms = 300u", ".timeout_ms = 301u"))
    (tmp_path / ctable.HEADER_NAME).unlink()
    (tmp_path / "airfsm_old.c").write_text("/* from an older table */\n")
    (tmp_path / "notes.txt").write_text("not a C file: never compared")
    out, err = io.StringIO(), io.StringIO()
    assert ctable.run(Path("unused"), tmp_path, stdout=out, stderr=err) == 1
    report = err.getvalue()
    assert f"{source}: differs from what the table gives" in report
    assert "+        .timeout_ms = 300u" in report
    assert f"{tmp_path / ctable.HEADER_NAME}: missing" in report
    assert f"{tmp_path / 'airfsm_old.c'}: no longer generated" in report
    assert "notes.txt" not in report
    assert "make ctable" in report
    assert out.getvalue() == ""


def test_bad_folders_are_one_line_and_exit_1(tmp_path: Path) -> None:
    err = io.StringIO()
    assert ctable.run(Path("unused"), tmp_path / "nope", stdout=io.StringIO(), stderr=err) == 1
    assert err.getvalue().count("\n") == 1 and "not a folder" in err.getvalue()
    a_file = tmp_path / "file"
    a_file.write_text("x")
    result = subprocess.run([sys.executable, "-m", "airfsm", "ctable", "--out", str(a_file)],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and f"cannot write {a_file}" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_registers_the_command() -> None:
    from airfsm import cli

    args = cli.build_parser().parse_args(["ctable", "--check", "port/c/generated"])
    assert args.handler is ctable.cmd_ctable
    assert args.check == "port/c/generated"
    assert cli.build_parser().parse_args(["ctable"]).out == ctable.DEFAULT_DIR


def test_the_hash_follows_the_data_not_its_spelling() -> None:
    machine = next(e for e in ctable.EXPORTS if isinstance(e, ctable.Table) and e.name == "machine")
    position = ctable.EXPORTS.index(machine)

    def exports_with(entry: ctable.Table) -> list[ctable.Export]:
        return [*ctable.EXPORTS[:position], entry, *ctable.EXPORTS[position + 1:]]

    autobaud = MACHINE[State.AUTOBAUD]
    slower_at = dataclasses.replace(autobaud.steps[1], timeout_ms=autobaud.steps[1].timeout_ms + 1)
    slower = list(MACHINE)
    slower[State.AUTOBAUD] = dataclasses.replace(autobaud, steps=(autobaud.steps[0], slower_at))
    other_spelling = dataclasses.replace(
        machine, render_data=lambda table: ctable.Section(["/* spelt otherwise */"], []))
    base = ctable.table_hash()
    assert ctable.table_hash(exports_with(dataclasses.replace(machine, data=tuple(slower)))) != base
    assert ctable.table_hash(exports_with(other_spelling)) == base
    assert ctable.generate()[ctable.HEADER_NAME].count(base[:8].hex()) == 2  # number, text


def test_the_header_declares_and_the_source_defines() -> None:
    files = ctable.generate()
    header, source = files[ctable.HEADER_NAME], files[ctable.SOURCE_NAME]
    # nothing in the header takes storage: every object is `extern`, every table in the .c
    for line in header.splitlines():
        if re.match(r"(static )?const ", line):
            pytest.fail(f"a definition in the header: {line}")
    declared = re.findall(r"^extern const [\w ]+?\*?(?:const )?(\w+)(?:\[|;)", header, re.M)
    assert len(declared) > 30
    for name in declared:
        assert re.search(rf"^const [\w ]+?\*?(?:const )?{name}\b", source, re.M), name
    # arrays indexed by an enum say which row is which
    assert "[AIRFSM_STATE_BEARER] = {" in source
    assert ("[AIRFSM_STATE_ONLINE] = {\n"
            "        [AIRFSM_TRIGGER_DONE] = { AIRFSM_NO_STATE, false },") in source
    assert "[AIRFSM_CHECK_MQTT_STATUS] = {" in source
    assert "[AIRFSM_PLACEHOLDER_IOT_TOKEN] = 256u," in source


# ---------------------------------------------------------------------- C reads what Python says

DUMP_HELPERS = r"""
#include <stdio.h>
#include <string.h>
#include "airfsm_config.h"
#include "airfsm_table.h"

static void put_hex(const char *text, size_t len) {
    if (len == 0) {
        fputs("-", stdout);
        return;
    }
    for (size_t i = 0; i < len; i++) printf("%02x", (unsigned)(unsigned char)text[i]);
}

static void put_text(const airfsm_text_t *t) {
    put_hex(t->text, t->len);
    if (t->text == NULL || strlen(t->text) != t->len) fputs("!len", stdout);
}

static void put_urcs(const uint8_t *rows, unsigned n) {
    if ((rows == NULL) != (n == 0)) fputs("!null", stdout);
    if (n == 0) fputs("-", stdout);
    for (unsigned i = 0; i < n; i++) {
        if (i) putchar(',');
        if (rows[i] >= AIRFSM_URC_COUNT) {
            fputs("!row", stdout);
            continue;
        }
        put_text(&airfsm_urcs[rows[i]].prefix);
    }
}

static void put_pieces(const airfsm_template_t *command) {
    for (unsigned i = 0; i < command->n_pieces; i++) {
        const airfsm_piece_t *p = &command->pieces[i];
        if (i) putchar('|');
        if (p->text != NULL) {
            putchar('L');
            put_hex(p->text, p->len);
            if (strlen(p->text) != p->len) fputs("!len", stdout);
        } else {
            printf("P%s", airfsm_placeholder_name[p->placeholder]);
        }
    }
}

static void put_step(const char *where, const airfsm_step_t *s) {
    printf("step %s %s ", where, s->name);
    put_pieces(&s->command);
    printf(" check=%s when=%s timeout=%lu prompt=%d ok=", airfsm_check_name[s->check],
           airfsm_cond_name[s->when], (unsigned long)s->timeout_ms, (int)s->prompt);
    put_urcs(s->urc_ok, s->n_urc_ok);
    fputs(" fail=", stdout);
    put_urcs(s->urc_fail, s->n_urc_fail);
    printf(" urc_timeout=%lu final=%d poll=%lu limit=%u on_fail=%s settle=%lu\n",
           (unsigned long)s->urc_timeout_ms, (int)s->urc_is_final, (unsigned long)s->poll_ms,
           (unsigned)s->poll_limit, s->on_fail < 0 ? "-" : airfsm_trigger_name[s->on_fail],
           (unsigned long)s->settle_ms);
}

static void dump_table(void) {
    printf("hash %s %016llx %016llx\n", AIRFSM_TABLE_HASH_HEX,
           (unsigned long long)AIRFSM_TABLE_HASH, (unsigned long long)airfsm_table_hash);
    printf("initial %s\n", airfsm_state_name[AIRFSM_INITIAL_STATE]);
    for (unsigned s = 0; s < AIRFSM_STATE_COUNT; s++) {
        const airfsm_state_spec_t *row = &airfsm_machine[s];
        printf("state %s steps=%u next=%s policy=", airfsm_state_name[s], (unsigned)row->n_steps,
               row->next < 0 ? "-" : airfsm_state_name[row->next]);
        if (row->policy != NULL) {
            const airfsm_policy_t *p = row->policy;
            printf("%u,%lu,%lu,%s,%d,%u", (unsigned)p->retries, (unsigned long)p->backoff_base_ms,
                   (unsigned long)p->backoff_cap_ms, airfsm_state_name[p->on_exhausted],
                   (int)p->reset_on_exhausted, (unsigned)p->hardware_resets);
        } else {
            fputs("-", stdout);
        }
        fputs(" summary=", stdout);
        put_hex(row->summary, strlen(row->summary));
        putchar('\n');
        if ((row->steps == NULL) != (row->n_steps == 0)) puts("!steps");
        for (unsigned i = 0; i < row->n_steps; i++) {
            char where[40];
            snprintf(where, sizeof where, "%s/%u", airfsm_state_name[s], i);
            put_step(where, &row->steps[i]);
        }
    }
    for (unsigned i = 0; i < AIRFSM_EDGE_COUNT; i++) {
        const airfsm_edge_t *e = &airfsm_edges[i];
        printf("edge %s %s %s %d\n", airfsm_trigger_name[e->trigger], airfsm_state_name[e->source],
               airfsm_state_name[e->dest], (int)e->reset_module);
    }
    for (unsigned s = 0; s < AIRFSM_STATE_COUNT; s++) {
        for (unsigned t = 0; t < AIRFSM_TRIGGER_COUNT; t++) {
            const airfsm_next_t *n = &airfsm_next[s][t];
            printf("next %s %s %s %d\n", airfsm_state_name[s], airfsm_trigger_name[t],
                   n->dest < 0 ? "-" : airfsm_state_name[n->dest], (int)n->reset_module);
        }
    }
    for (unsigned t = 0; t < AIRFSM_TRIGGER_COUNT; t++) {
        printf("trigger %s escalates=%d priority=%u\n", airfsm_trigger_name[t],
               (int)airfsm_trigger_escalates[t], (unsigned)airfsm_link_priority[t]);
    }
    printf("escalation %lu %lu %lu\n", (unsigned long)AIRFSM_ESCALATION_BACKOFF_BASE_MS,
           (unsigned long)AIRFSM_ESCALATION_BACKOFF_CAP_MS,
           (unsigned long)AIRFSM_ESCALATIONS_WITHOUT_BACKOFF);
    for (unsigned i = 0; i < AIRFSM_URC_COUNT; i++) {
        const airfsm_urc_t *u = &airfsm_urcs[i];
        fputs("urc ", stdout);
        put_text(&u->prefix);
        printf(" %s %s %d\n", airfsm_urc_kind_name[u->kind],
               u->trigger < 0 ? "-" : airfsm_trigger_name[u->trigger], (int)u->urc_only);
    }
    for (unsigned i = 0; i < AIRFSM_FINAL_CODE_COUNT; i++) {
        const airfsm_final_code_t *f = &airfsm_final_codes[i];
        fputs("final ", stdout);
        put_text(&f->text);
        printf(" %s %d\n", airfsm_at_result_name[f->result], (int)f->has_code);
    }
    for (unsigned i = 0; i < AIRFSM_PROMPT_LINE_COUNT; i++) {
        fputs("prompt ", stdout);
        put_text(&airfsm_prompt_lines[i]);
        putchar('\n');
    }
    printf("data_prompt %u\n", (unsigned)AIRFSM_DATA_PROMPT);
    for (unsigned c = 0; c < AIRFSM_CHECK_COUNT; c++) {
        const airfsm_check_answer_t *a = &airfsm_check_answers[c];
        printf("check %s ", airfsm_check_name[c]);
        put_text(&a->prefix);
        printf(" %d %ld ", (int)a->field, (long)a->pass_value);
        put_text(&a->token);
        printf(" %d %d\n", (int)a->text_field, (int)a->in_urc);
    }
    for (unsigned i = 0; i < AIRFSM_SETTING_COUNT; i++) {
        const airfsm_setting_range_t *r = &airfsm_settings[i];
        printf("setting %s %lu %lu %lu\n", r->name, (unsigned long)r->default_value,
               (unsigned long)r->min, (unsigned long)r->max);
    }
    fputs("default_apn ", stdout);
    put_text(&airfsm_default_apn);
    fputs("\ndefault_sign_method ", stdout);
    put_text(&airfsm_default_sign_method);
    putchar('\n');
    for (unsigned p = 0; p < AIRFSM_PLACEHOLDER_COUNT; p++) {
        printf("placeholder %s %u\n", airfsm_placeholder_name[p],
               (unsigned)airfsm_placeholder_max[p]);
    }
    printf("longest %lu %lu %lu\n", (unsigned long)AIRFSM_LONGEST_COMMAND,
           (unsigned long)AIRFSM_LONGEST_AUTH_BODY, (unsigned long)AIRFSM_AUTH_BODY_MAX);
    fputs("mpub ", stdout);
    put_pieces(&airfsm_mpub);
    putchar('\n');
}
"""


def dump_program() -> str:
    """The dump: the fixed part above, then lines written from the export list (every enum and
    constant, whatever is added to it later) and ONLINE's commands."""
    body = ["int main(void) {", "    dump_table();"]
    for export in ctable.EXPORTS:
        if isinstance(export, ctable.Codes):
            base = ctable.snake(export.enum.__name__)
            body.append(f'    for (unsigned i = 0; i < AIRFSM_{base.upper()}_COUNT; i++) '
                        f'printf("enum {export.enum.__name__} %u %s\\n", i, '
                        f'airfsm_{base}_name[i] ? airfsm_{base}_name[i] : "-");')
        elif isinstance(export, ctable.Constants):
            for c in export.items:
                if isinstance(c.value, str):
                    body += [f'    fputs("text {c.name} ", stdout);',
                             f"    put_text(&airfsm_{c.name.lower()});", "    putchar('\\n');"]
                else:
                    body.append(f'    printf("const {c.name} %lu\\n", '
                                f"(unsigned long)AIRFSM_{c.name});")
    for name in MARKERS:
        body += [f'    fputs("marker {name} ", stdout);', f"    put_text(&airfsm_{name});",
                 "    putchar('\\n');"]
    for step in ONLINE_STEPS:
        body.append(f'    put_step("online/{step.name}", &airfsm_online_{step.name});')
    return DUMP_HELPERS + "\n".join([*body, "    return 0;", "}", ""])


MARKERS = {"msub_header": at.MSUB_HEADER, "msub_length_unit": at.MSUB_LENGTH_UNIT,
           "httpread_header": at.HTTPREAD_HEADER, "hex_mode_on": at.HEX_MODE_ON,
           "hex_mode_off": at.HEX_MODE_OFF}


def hx(data: str | bytes) -> str:
    raw = data.encode("ascii") if isinstance(data, str) else data
    return raw.hex() if raw else "-"


def pieces_text(pieces: tuple[bytes | Placeholder, ...]) -> str:
    return "|".join(f"L{p.hex()}" if isinstance(p, bytes) else f"P{p.name}" for p in pieces)


def step_line(where: str, step: Step) -> str:
    pieces = pieces_text(split_template(step.command))
    final = any(at.is_final_code(u.encode()) for u in (*step.urc_ok, *step.urc_fail))
    return (f"step {where} {step.name} {pieces} check={step.check.name} when={step.when.name} "
            f"timeout={step.timeout_ms} prompt={int(step.prompt)} "
            f"ok={','.join(hx(u) for u in step.urc_ok) or '-'} "
            f"fail={','.join(hx(u) for u in step.urc_fail) or '-'} "
            f"urc_timeout={step.urc_timeout_ms} final={int(final)} poll={step.poll_ms} "
            f"limit={step.poll_limit} on_fail={step.on_fail.name if step.on_fail else '-'} "
            f"settle={step.settle_ms}")


def expected_dump() -> list[str]:
    """What the C program must print, from the Python table."""
    digest = ctable.table_hash()[:8].hex()
    lines = [f"hash {digest} {digest} {digest}", f"initial {MACHINE[0].state.name}"]
    for row in MACHINE:
        p = row.policy
        policy = "-" if p is None else (f"{p.retries},{p.backoff_base_ms},{p.backoff_cap_ms},"
                                        f"{p.on_exhausted.name},{int(p.reset_on_exhausted)},"
                                        f"{p.hardware_resets}")
        lines.append(f"state {row.state.name} steps={len(row.steps)} "
                     f"next={row.next.name if row.next is not None else '-'} policy={policy} "
                     f"summary={hx(row.summary)}")
        lines += [step_line(f"{row.state.name}/{i}", s) for i, s in enumerate(row.steps)]
    lines += [f"edge {e.trigger.name} {e.source.name} {e.dest.name} {int(e.reset_module)}"
              for e in edges()]
    lookup = edge_table()
    for state in State:
        for trigger in Trigger:
            edge = lookup.get((state, trigger))
            reset = int(edge is not None and edge.reset_module)
            lines.append(f"next {state.name} {trigger.name} {edge.dest.name if edge else '-'} "
                         f"{reset}")
    for trigger in Trigger:
        lines.append(f"trigger {trigger.name} "
                     f"escalates={int(trigger in table.ESCALATING_TRIGGERS)} "
                     f"priority={table.link_priority(trigger)}")
    base_ms, cap_ms = table.ESCALATION_BACKOFF_MS
    lines.append(f"escalation {base_ms} {cap_ms} {table.ESCALATIONS_WITHOUT_BACKOFF}")
    lines += [f"urc {hx(u.prefix)} {u.kind.name} {u.trigger.name if u.trigger else '-'} "
              f"{int(u.urc_only)}" for u in URCS]
    lines += [f"final {hx(t)} {r.name} {int(c)}" for t, r, c in at.FINAL_CODES]
    lines += [f"prompt {hx(p)}" for p in at.PROMPT_LINES]
    lines.append(f"data_prompt {ord('>')}")
    for check in Check:
        a = ANSWERS[check]
        lines.append(f"check {check.name} {hx(a.prefix)} {a.field} {a.pass_value} {hx(a.token)} "
                     f"{a.text_field} {int(a.in_urc)}")
    lines += [f"setting {name} {default} {low} {high}"
              for name, default, low, high, _note in ctable.settings_rows(SETTING_RANGES)]
    lines += [f"default_apn {hx(ctable.setting_default('apn'))}",
              f"default_sign_method {hx(ctable.setting_default('sign_method'))}"]
    lines += [f"placeholder {p.name} {PLACEHOLDER_MAX[p]}" for p in Placeholder]
    longest = max(expanded_max(split_template(t)) for t in templates())
    lines.append(f"longest {longest} {ctable.longest_auth_body()} {ctable.longest_auth_body()}")
    lines.append("mpub " + pieces_text(split_template(MPUB_TEMPLATE)))
    for export in ctable.EXPORTS:
        if isinstance(export, ctable.Codes):
            names = {m.value: m.name for m in export.enum}
            lines += [f"enum {export.enum.__name__} {i} {names.get(i, '-')}"
                      for i in range(max(names) + 1)]
        elif isinstance(export, ctable.Constants):
            lines += [f"text {c.name} {hx(c.value)}" if isinstance(c.value, str)
                      else f"const {c.name} {c.value}" for c in export.items]
    lines += [f"marker {name} {hx(text)}" for name, text in MARKERS.items()]
    lines += [step_line(f"online/{step.name}", step) for step in ONLINE_STEPS]
    return lines


def write_table(folder: Path) -> None:
    for name, text in ctable.generate().items():
        (folder / name).write_text(text)


def test_c_program_reads_what_the_python_table_says(tmp_path: Path) -> None:
    require_host_compiler()
    write_table(tmp_path)
    (tmp_path / "dump.c").write_text(dump_program())
    exe = tmp_path / "dump"
    build = subprocess.run(["cc", *STRICT, "-I", str(tmp_path), "-I", str(PORT_C / "core"),
                            "-o", str(exe), str(tmp_path / "dump.c"),
                            str(tmp_path / ctable.SOURCE_NAME)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    lines = subprocess.run([str(exe)], check=True, capture_output=True,
                           text=True).stdout.splitlines()
    expected = expected_dump()
    assert len(lines) == len(expected)
    for got, want in zip(lines, expected, strict=True):
        assert got == want
    # the counts say what the Python says, and next[][] holds every edge
    assert sum(line.startswith("step ") for line in lines) == (
        sum(len(row.steps) for row in MACHINE) + len(ONLINE_STEPS))
    assert sum(line.startswith("edge ") for line in lines) == len(edges())
    nexts = [line.split()[1:] for line in lines if line.startswith("next ")]
    for e in edges():
        assert [e.source.name, e.trigger.name, e.dest.name, str(int(e.reset_module))] in nexts
    assert sum(n[2] != "-" for n in nexts) == len(edges())


def test_table_compiles_clean_for_the_host(tmp_path: Path) -> None:
    require_host_compiler()
    write_table(tmp_path)
    # the table next to the port's other headers in one unit: no name defined twice
    (tmp_path / "together.c").write_text(
        '#include "airfsm_config.h"\n#include "aliyun.h"\n#include "digest.h"\n'
        '#include "hal.h"\n#include "timebase.h"\n#include "airfsm_table.h"\n'
        "int airfsm_states(void);\nint airfsm_states(void) { return AIRFSM_STATE_COUNT; }\n")
    for unit in (ctable.SOURCE_NAME, "together.c"):
        result = subprocess.run(["cc", *STRICT, "-O2", "-I", str(tmp_path), "-I",
                                 str(PORT_C / "core"), "-c", "-o", str(tmp_path / "out.o"),
                                 str(tmp_path / unit)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


def test_table_compiles_clean_for_cortex_m3(tmp_path: Path) -> None:
    require_cross_toolchain()
    write_table(tmp_path)
    obj = tmp_path / "airfsm_table.o"
    result = subprocess.run(["arm-none-eabi-gcc", *STRICT, "-mcpu=cortex-m3", "-mthumb", "-Os",
                             "-ffreestanding", "-c", "-o", str(obj),
                             str(tmp_path / ctable.SOURCE_NAME)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    size = subprocess.run(["arm-none-eabi-size", str(obj)], capture_output=True, text=True,
                          check=True).stdout.splitlines()[1].split()
    text, data, bss = map(int, size[:3])
    assert text > 1000 and data == 0 and bss == 0  # all of it const: flash, no RAM


# ------------------------------------------------------- what the table exports against the code


def test_templates_split_into_pieces_that_expand_as_the_controller_fills_them() -> None:
    values = {p.name.lower(): f"<{p.name.lower()}>" for p in Placeholder}
    used: set[Placeholder] = set()
    for template in templates():
        pieces = split_template(template)
        assert b"{" not in b"".join(p for p in pieces if isinstance(p, bytes)), template
        rebuilt = "".join(p.decode() if isinstance(p, bytes) else "{" + p.name.lower() + "}"
                          for p in pieces)
        assert rebuilt == template
        expanded = "".join(p.decode() if isinstance(p, bytes) else values[p.name.lower()]
                           for p in pieces)
        assert expanded == template.format_map(values)
        used |= {p for p in pieces if isinstance(p, Placeholder)}
    assert used == set(Placeholder)  # none declared that no template uses
    assert set(ctable.TEMPLATES) == {split_template(t) for t in templates()}  # all exported
    with pytest.raises(ValueError, match="placeholder"):
        split_template("AT+X={no_such_value}")


def mpub_values(topic: str, qos: int, message: bytes) -> list[bytes | int]:
    values: list[bytes | int] = [b""] * len(Placeholder)
    values[Placeholder.TOPIC] = topic.encode()
    values[Placeholder.QOS] = qos
    values[Placeholder.MESSAGE] = message
    return values


def test_the_mpub_template_is_what_the_encoder_sends() -> None:
    rng = random.Random(8)
    for _ in range(300):
        topic = "/" + "".join(rng.choice("abcXYZ019_/-.") for _ in range(rng.randint(1, 60)))
        qos = rng.choice(payload.QOS_LEVELS)
        for data, hex_mode, message in (
                (text := bytes(rng.choice(b'ab "\\\r\n{}') for _ in range(rng.randint(0, 200))),
                 False, payload.escape_mpub(text)),
                (binary := rng.randbytes(rng.randint(0, 100)), True,
                 binary.hex().upper().encode())):
            template = bytearray(CMD_CAPACITY)
            n = expand(MPUB_PIECES, mpub_values(topic, qos, message), template)
            written = bytearray(CMD_CAPACITY)
            assert payload.put_mpub(written, topic, data, qos, hex_mode) == n > 0
            assert written[:n] == template[:n]
            assert payload.encode_mpub_command(topic, data, qos, hex_mode) == template[:n]


def settings(**changes: object) -> Settings:
    identity = aliyun.DeviceIdentity("a1B2c3D4e5F", "device-01", "secret")
    return Settings(identity, **changes)  # type: ignore[arg-type]


def refused(**changes: object) -> bool:
    try:
        settings(**changes).validate()
    except ValueError:
        return True
    return False


def identity_refused(**fields: str) -> bool:
    base = {"product_key": "a1B2c3D4e5F", "device_name": "device-01", "device_secret": "s"}
    try:
        aliyun.DeviceIdentity(**{**base, **fields}).validate()  # type: ignore[arg-type]
    except ValueError:
        return True
    return False


def reply_with(**data: object) -> bytes:
    return json.dumps({"code": 200, "data": {"iotId": "id", "iotToken": "tok", **data}}).encode()


def test_each_placeholder_maximum_is_what_the_core_enforces() -> None:
    longest = PLACEHOLDER_MAX
    assert not refused(apn="a" * longest[Placeholder.APN])
    assert refused(apn="a" * (longest[Placeholder.APN] + 1))
    region = "r" * 64
    assert not identity_refused(region=region) and identity_refused(region=region + "r")
    instance = "i" * aliyun.MAX_INSTANCE_ID_LEN
    assert not identity_refused(instance_id=instance)
    assert identity_refused(instance_id=instance + "i")
    assert max(len(aliyun.auth_url(region)), len(aliyun.auth_url(instance_id=instance))) == (
        longest[Placeholder.AUTH_URL])
    assert len(aliyun.register_url(region)) == longest[Placeholder.REGISTER_URL]
    assert longest[Placeholder.CONTENT_TYPE] == len(table.CONTENT_TYPE)
    # the longest auth body fits the body buffer, whose length has this many digits
    assert ctable.longest_auth_body() <= BODY_CAPACITY
    assert len(str(BODY_CAPACITY)) == longest[Placeholder.BODY_LEN]
    # the configured clientId is bounded by the identity, the longest MQTT clientId is the
    # direct sign's: that clientId, |securemode=2,signmethod=hmacsha256,timestamp=<20>|
    client = "c" * aliyun.MAX_CLIENT_ID_LEN
    assert not identity_refused(client_id=client) and identity_refused(client_id=client + "c")
    signing = aliyun.DeviceIdentity("a1B2c3D4e5F", "device-01", "s", client_id=client)
    assert len(aliyun.mqtt_sign(signing, "hmacsha256", aliyun.MAX_TIMESTAMP_MS).client_id) == (
        longest[Placeholder.CLIENT_ID])
    for name, placeholder in (("iotId", Placeholder.IOT_ID), ("iotToken", Placeholder.IOT_TOKEN)):
        credential = "t" * longest[placeholder]
        assert aliyun.parse_auth_reply(reply_with(**{name: credential})).ok
        assert not aliyun.parse_auth_reply(reply_with(**{name: credential + "t"})).ok
    host = ".".join(["h" * 63] * 3) + "." + "h" * 61
    assert len(host) == longest[Placeholder.MQTT_HOST]
    assert aliyun.parse_auth_reply(reply_with(resources={"mqtt": {"host": host}})).mqtt_host == host
    assert aliyun.parse_auth_reply(
        reply_with(resources={"mqtt": {"host": host + "h"}})).mqtt_host is None
    # numbers: as many digits as the largest value validate() lets through (tested below)
    ranges = {r.name: r for r in SETTING_RANGES}
    for name, placeholder in (("mqtt_port", Placeholder.MQTT_PORT),
                              ("keepalive_s", Placeholder.KEEPALIVE_S),
                              ("body_window_ms", Placeholder.BODY_WINDOW_MS),
                              ("sub_qos", Placeholder.SUB_QOS)):
        assert len(str(ranges[name].high)) == longest[placeholder], name
    for placeholder in (Placeholder.SUB_TOPIC, Placeholder.TOPIC):
        topic = "/" + "t" * (longest[placeholder] - 1)
        assert not refused(sub_topic=topic) and payload.check_topic(topic) is None
        assert refused(sub_topic=topic + "t") and payload.check_topic(topic + "t") is not None
    assert len(str(max(payload.QOS_LEVELS))) == longest[Placeholder.QOS]
    limit = longest[Placeholder.MESSAGE]
    out = bytearray(CMD_CAPACITY)
    assert payload.put_mpub(out, "/t", b"m" * limit, 0, False) > 0
    assert payload.put_mpub(out, "/t", b"m" * (limit + 1), 0, False) == payload.MPUB_UNSENDABLE
    assert payload.put_mpub(out, "/t", b"\x00" * (limit // 2), 0, True) > 0
    assert payload.put_mpub(out, "/t", b"\x00" * (limit // 2 + 1), 0,
                            True) == payload.MPUB_UNSENDABLE
    with pytest.raises(ValueError):
        payload.encode_mpub_command("/t", b"m" * (limit + 1), 0, False)


def test_the_longest_command_is_an_mpub_at_its_limits() -> None:
    longest = PLACEHOLDER_MAX
    command = payload.encode_mpub_command(
        "/" + "t" * (longest[Placeholder.TOPIC] - 1), b"m" * longest[Placeholder.MESSAGE], 1,
        False)
    assert max(map(expanded_max, ctable.TEMPLATES)) == len(command) == payload.MPUB_MAX
    assert len(command) < CMD_CAPACITY  # and its CR


def test_setting_ranges_are_what_validate_enforces() -> None:
    numeric = {f.name for f in dataclasses.fields(Settings)
               if f.type in ("int", "int | None")}
    ranges = {r.name: r for r in SETTING_RANGES}
    assert set(ranges) == numeric  # a new setting must be exported
    cap = ctable.setting_default("publish_backoff_cap_ms")
    for r in SETTING_RANGES:
        # the one rule between two settings: base <= cap
        extra: dict[str, int] = {}
        if r.name == "publish_backoff_base_ms":
            extra = {"publish_backoff_cap_ms": U31_MAX}
        elif r.name == "publish_backoff_cap_ms":
            extra = {"publish_backoff_base_ms": 100}
        if r.low is None:
            assert not refused(**{r.name: 0}, **extra), r.name  # truly unchecked: C's 0 is fine
        else:
            assert not refused(**{r.name: r.low}, **extra), r.name
            assert refused(**{r.name: r.low - 1}, **extra), r.name
        if r.high is None:
            assert not refused(**{r.name: ctable.U32_MAX}, **extra), r.name
        else:
            assert not refused(**{r.name: r.high}, **extra), r.name
            assert refused(**{r.name: r.high + 1}, **extra), r.name
    assert refused(publish_backoff_base_ms=cap + 1)


def answer(*lines: bytes, result: AtResult = AtResult.OK) -> AtResponse:
    """A response whose info lines are `lines` (the channel's spans of its arena)."""
    resp = AtResponse(bytearray(256))
    resp.clear(b"AT")
    resp.result = result
    at_ = 0
    for line in lines:
        resp.arena[at_:at_ + len(line)] = line
        resp.line_start[resp.line_count] = at_
        resp.line_length[resp.line_count] = len(line)
        resp.line_count += 1
        at_ += len(line)
    return resp


def judged(check: Check, line: bytes) -> tuple[Outcome, object]:
    """What the judge makes of an answer holding `line` (or of the URC `line`), for the first
    step with this check (the machine's, then ONLINE's: the probe)."""
    from airfsm.core.controller import Controller
    from airfsm.host.serial import memory_pair

    ctl = Controller(memory_pair()[0], settings())
    step = next(s for s in (*(s for row in MACHINE for s in row.steps), *ONLINE_STEPS)
                if s.check == check)
    if ANSWERS[check].in_urc:
        return judge_urc(ctl, step, URCS.index(next(u for u in URCS if line.startswith(
            u.prefix))), line)[0], ctl
    return judge_answer(ctl, step, answer(line))[0], ctl


def test_check_answers_are_what_the_judge_reads() -> None:
    assert set(ANSWERS) == set(Check)
    examples = {Check.SIM_READY: b"+CPIN: READY", Check.SIGNAL: b"+CSQ: 17,99",
                Check.ATTACHED: b"+CGATT: 1", Check.BEARER_QUERY: b'+SAPBR: 1,1,"10.1.2.3"',
                Check.HTTP_STATUS: b"+HTTPACTION: 1,200,148",
                Check.MQTT_STATUS: b"+MQTTSTATU :1", Check.AUTH_REPLY: b"+HTTPREAD: 148",
                Check.REGISTER_REPLY: b"+HTTPREAD: 148",
                Check.VERSION: b"AirM2M_Air72xUy_V409_LTE_AT",
                Check.IMEI: b"+CGSN: 862991419835241", Check.ICCID: b"89860117831003134201",
                Check.OPERATOR: b'+COPS: 0,0,"CHINA MOBILE",7', Check.REGISTRATION: b"+CEREG: 0,5"}
    for check, a in ANSWERS.items():
        if a.prefix:
            assert examples[check].startswith(a.prefix), check
        if a.token:
            assert a.token in examples[check], check
        if a.pass_value < 0:
            continue
        # the passing value passes; another in its field, or another prefix, does not
        line = examples[check]
        assert field_of(line, a.field) == a.pass_value, check
        assert judged(check, line)[0] == Outcome.PASS, check
        other = replace_field(line, a.field, a.pass_value + 7)
        assert judged(check, other)[0] != Outcome.PASS, check
        if not a.in_urc:
            assert judged(check, b"+OTHER" + line[len(a.prefix):])[0] != Outcome.PASS, check
    # the fields read without a passing value
    signal = ANSWERS[Check.SIGNAL]
    assert field_of(examples[Check.SIGNAL], signal.field) == 17
    assert judged(Check.SIGNAL, examples[Check.SIGNAL])[1].rssi == 17  # type: ignore[attr-defined]
    assert judged(Check.BEARER_QUERY, examples[Check.BEARER_QUERY])[1].ip == "10.1.2.3"  # type: ignore[attr-defined]
    bearer = ANSWERS[Check.BEARER_QUERY]
    assert examples[Check.BEARER_QUERY].split(b",")[bearer.text_field] == b'"10.1.2.3"'
    sim = ANSWERS[Check.SIM_READY]
    assert judged(Check.SIM_READY, examples[Check.SIM_READY])[0] == Outcome.PASS
    assert judged(Check.SIM_READY, sim.prefix + b" NOT INSERTED")[0] == Outcome.NOT_YET
    version = ANSWERS[Check.VERSION]
    assert judged(Check.VERSION, examples[Check.VERSION])[0] == Outcome.PASS
    assert judged(Check.VERSION, examples[Check.VERSION].replace(version.token, b"_X"))[0] \
        != Outcome.PASS
    # the informational checks: the text field and the number each reads, and always a pass
    learned = {Check.IMEI: ("imei", "862991419835241"),
               Check.ICCID: ("iccid", "89860117831003134201"),
               Check.OPERATOR: ("operator", "CHINA MOBILE"),
               Check.REGISTRATION: ("registration", 5)}
    for check, (name, value) in learned.items():
        outcome, ctl = judged(check, examples[check])
        assert outcome == Outcome.PASS and getattr(ctl, name) == value, check
        assert judged(check, b"")[0] == Outcome.PASS, check
    assert judged(Check.OPERATOR, examples[Check.OPERATOR])[1].access_technology == 7  # type: ignore[attr-defined]
    assert field_of(examples[Check.OPERATOR], ANSWERS[Check.OPERATOR].field) == 7
    assert field_of(examples[Check.REGISTRATION], ANSWERS[Check.REGISTRATION].field) == 5
    assert ANSWERS[Check.AUTH_REPLY].prefix == at.HTTPREAD_HEADER  # the channel reads its body
    assert {c for c, a in ANSWERS.items() if a.in_urc} == {
        s.check for row in MACHINE for s in row.steps if s.urc_ok and s.check != Check.OK}


def field_of(line: bytes, index: int) -> int:
    """Field `index` of an answer line, read apart from the code under test."""
    return int(line.split(b":", 1)[1].split(b",")[index])


def replace_field(line: bytes, index: int, value: int) -> bytes:
    head, rest = line.split(b":", 1)
    parts = rest.split(b",")
    parts[index] = b" %d" % value if parts[index].startswith(b" ") else b"%d" % value
    return head + b":" + b",".join(parts)


def test_online_commands_are_what_the_controller_sends() -> None:
    # Firmware before V838 (the keepalive), a binary message (the hex mode and back), a cached
    # downlink (the cache read), the liveness probe, and a clean stop (the disconnect).
    rig = make_rig(SimConfig(firmware="AirM2M_Air72xUy_V409_LTE_AT",
                             faults=[parse_fault("cache-notice@1")]))
    assert rig.run_until(lambda: rig.controller.online)
    online_from = len(rig.commands)
    rig.controller.publish("update", b"\x00binary\xff", 1)
    rig.controller.publish("update", b"text", 1)
    rig.module.send_downlink(aliyun.topic_get(rig.controller.settings.identity.product_key,
                                              rig.controller.settings.identity.device_name),
                             b"down", rig.now)
    rig.run_for(5 * 60_000)
    rig.controller.request_stop()
    assert rig.run_until(lambda: rig.controller.stopped)
    sent = rig.commands[online_from:]
    for step in ONLINE_STEPS:
        first = step.pieces[0]
        assert isinstance(first, bytes)
        matching = [c for c in sent if c.encode().startswith(first)]
        assert matching, step.name
        if len(step.pieces) == 1:
            assert first.decode() in sent, step.name  # a command without placeholders, as is
    # the channel follows the module's payload mode by these very commands
    assert table.HEX_MODE.command.encode() == at.HEX_MODE_ON
    assert table.TEXT_MODE.command.encode() == at.HEX_MODE_OFF
    assert [c for c in sent if c.startswith("AT+MQTTMODE")] == [
        table.HEX_MODE.command, table.TEXT_MODE.command]
