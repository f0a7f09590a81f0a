"""The diagrams come from the machine table, parse as Mermaid expects, and are kept fresh."""

from __future__ import annotations

import dataclasses
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from airfsm.core.codes import Check, State, Trigger
from airfsm.core.table import LIVENESS_PROBE, MACHINE, URCS, StateSpec, Step, edges
from airfsm.tools import diagram

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "diagrams"
IN_CI = os.environ.get("CI") == "true"
DOT = shutil.which("dot")

needs_graphviz_package = pytest.mark.skipif(
    not diagram.graphviz_package(), reason="the graphviz Python package (docs extra) is missing")


# ---------------------------------------------------------------------- a small Mermaid parser

STATE_ID = r"[A-Za-z_][A-Za-z0-9_]*"
EDGE_RE = re.compile(rf"(\[\*\]|{STATE_ID}) --> (\[\*\]|{STATE_ID})(?: : (.+))?")
DESCR_RE = re.compile(rf"({STATE_ID}) : (.+)")
NOTE_START_RE = re.compile(rf"note (left|right) of ({STATE_ID})")


@dataclasses.dataclass
class StateDiagram:
    states: dict[str, list[str]]  # id -> description lines
    edges: list[tuple[str, str, str]]  # (source, dest, label)
    notes: list[list[str]]


def parse_state_diagram(text: str) -> StateDiagram:
    """What stateDiagram-v2's grammar accepts, restricted to the statements we generate."""
    lines = [line.strip() for line in text.splitlines()]
    body = [line for line in lines if line and not line.startswith("%%")]
    assert body[0] == "stateDiagram-v2", "the diagram type comes first"
    result = StateDiagram({}, [], [])
    note: list[str] | None = None
    for line in body[1:]:
        if note is not None:
            if line == "end note":
                result.notes.append(note)
                note = None
            else:
                note.append(line)
            continue
        if NOTE_START_RE.fullmatch(line):
            note = []
            continue
        if line.startswith(("classDef ", "class ")):
            continue
        if m := EDGE_RE.fullmatch(line):
            label = m.group(3) or ""
            result.edges.append((m.group(1), m.group(2), label))
            continue
        if m := DESCR_RE.fullmatch(line):
            result.states.setdefault(m.group(1), []).append(m.group(2))
            continue
        pytest.fail(f"a line stateDiagram-v2 does not allow here: {line!r}")
    assert note is None, "a note without `end note`"
    for _, _, label in result.edges:
        assert not set(label) & set(":;#%<>"), f"Mermaid would misread the label {label!r}"
    for descriptions in result.states.values():
        for descr in descriptions:
            assert not set(descr) & set(":;#%<>"), f"Mermaid would misread {descr!r}"
    return result


SEQ_LINE_RES = [
    re.compile(r"participant (\w+) as .+"),
    re.compile(r"title [^#;]+"),
    re.compile(r"(\w+)(->>|-->>)(\w+): [^#;]+"),
    re.compile(r"Note over (\w+)(?:,(\w+))?: [^#;]+"),
    re.compile(r"(alt|else|opt|loop) [^#;]+"),
    re.compile(r"end"),
]


def parse_sequence(text: str) -> tuple[list[str], list[tuple[str, str, str]]]:
    """Check a sequenceDiagram's structure; return its participants and its messages."""
    lines = [line.strip() for line in text.splitlines()]
    body = [line for line in lines if line and not line.startswith("%%")]
    assert body[0] == "sequenceDiagram"
    participants: list[str] = []
    messages: list[tuple[str, str, str]] = []
    stack: list[str] = []
    for line in body[1:]:
        for pattern in SEQ_LINE_RES:
            m = pattern.fullmatch(line)
            if m:
                break
        else:
            pytest.fail(f"a line sequenceDiagram does not allow here: {line!r}")
        if line.startswith("participant "):
            assert not messages, "participants are declared before they are used"
            participants.append(m.group(1))
        elif "->>" in line:
            assert m.group(1) in participants and m.group(3) in participants, line
            messages.append((m.group(1), m.group(3), line.split(": ", 1)[1]))
        elif line.startswith("Note over "):
            assert all(p in participants for p in m.groups() if p), line
        elif line.startswith(("alt ", "opt ", "loop ")):
            stack.append(line.split()[0])
        elif line.startswith("else "):
            assert stack and stack[-1] == "alt", "else outside an alt"
        elif line == "end":
            assert stack, "end without a block"
            stack.pop()
    assert not stack, f"unclosed blocks: {stack}"
    return participants, messages


def assert_complete(parsed: StateDiagram, table: tuple[StateSpec, ...]) -> None:
    names = {row.state.name for row in table}
    assert set(parsed.states) == names, "every state declared, no other"
    for name in names:
        assert parsed.states[name][0] == name
    table_edges = edges(table)
    for edge in table_edges:
        matches = [e for e in parsed.edges
                   if e[0] == edge.source.name and e[1] == edge.dest.name
                   and re.match(rf"{edge.trigger_name}\b", e[2])]
        assert len(matches) == 1, f"{edge} appears {len(matches)} times"
    plain = [e for e in parsed.edges if "[*]" not in e[:2]]
    assert len(plain) == len(table_edges), "no edge the table does not have"
    for source, dest, _ in parsed.edges:
        assert source in names | {"[*]"} and dest in names | {"[*]"}
    assert ("[*]", table[0].state.name, "") in parsed.edges


# ---------------------------------------------------------------------- the state diagram


def test_state_diagram_has_every_state_and_every_edge_exactly_once() -> None:
    parsed = parse_state_diagram(diagram.state_diagram())
    assert_complete(parsed, MACHINE)
    assert ("FAILED", "[*]", "") in parsed.edges
    assert len(parsed.notes) == 1 and "1–120 s" in parsed.notes[0][0]


def test_state_diagram_labels_carry_the_policies() -> None:
    labels = {(s, d, label.split()[0].rstrip(",")): label
              for s, d, label in parse_state_diagram(diagram.state_diagram()).edges if label}
    assert labels["BEARER", "BEARER", "retry"] == (
        "retry ×3, backoff 1–16 s, step timeouts 5–30 s")
    assert labels["AUTOBAUD", "AUTOBAUD", "retry"] == (
        "retry ×180, backoff 0.2 s, step timeouts 0.3–2 s")
    assert labels["ATTACH", "AUTOBAUD", "exhausted"] == "exhausted after 1 retry, AT+RESET"
    assert labels["HTTP_AUTH", "BEARER", "exhausted"] == "exhausted after 5 retries"
    assert labels["VERSION_CHECK", "FAILED", "fatal"] == "fatal (a version older than V409)"
    assert labels["ONLINE", "AUTOBAUD", "rebooted"] == "rebooted (RDY)"
    assert labels["MQTT_CONNECT", "AUTOBAUD", "watchdog"].endswith("AT+RESET")
    assert "∶" in labels["ONLINE", "ATTACH", "bearer_lost"]  # the colon of +CGATT: 0


def _modified_table() -> tuple[StateSpec, ...]:
    """VERSION_CHECK retries 7 times and then gives up for good; BEARER gains a step."""
    rows = list(MACHINE)
    vc = rows[State.VERSION_CHECK]
    assert vc.policy is not None
    rows[State.VERSION_CHECK] = dataclasses.replace(
        vc, policy=dataclasses.replace(vc.policy, retries=7, on_exhausted=State.FAILED))
    bearer = rows[State.BEARER]
    rows[State.BEARER] = dataclasses.replace(
        bearer, steps=(*bearer.steps, Step("ping", "AT+PING=1", Check.OK, timeout_ms=7_000)))
    return tuple(rows)


def test_a_changed_table_changes_the_diagrams() -> None:
    table = _modified_table()
    text = diagram.state_diagram(table)
    assert text != diagram.state_diagram()
    parsed = parse_state_diagram(text)
    assert_complete(parsed, table)
    assert ("VERSION_CHECK", "FAILED", "exhausted after 7 retries") in parsed.edges
    assert not any(s == "VERSION_CHECK" and d == "AUTOBAUD" and label.startswith("exhausted")
                   for s, d, label in parsed.edges)
    assert ("VERSION_CHECK", "VERSION_CHECK", "retry ×7, backoff 1–8 s, step timeout 2 s") \
        in parsed.edges
    assert ("BEARER", "BEARER", "retry ×3, backoff 1–16 s, step timeouts 5–30 s") \
        in parsed.edges
    assert "MCU->>Module: AT+PING=1" in diagram.sequence_diagram(table[State.BEARER], table)


@needs_graphviz_package
def test_a_changed_table_changes_the_dot() -> None:
    table = _modified_table()
    dot = diagram.state_dot(table)
    assert dot != diagram.state_dot()
    assert re.search(r'VERSION_CHECK -> FAILED \[label="exhausted after 7 retries', dot)
    assert "AT+PING=1" in dot


# ---------------------------------------------------------------------- the graphviz source


@needs_graphviz_package
def test_dot_is_drawn_by_graph_machine_from_the_table_edges() -> None:
    machine = diagram.graph_machine()
    assert isinstance(machine, diagram.DocGraphMachine)
    from transitions.extensions.diagrams import GraphMachine

    assert isinstance(machine, GraphMachine)
    triggers = {(t.source, event) for event, ev in machine.events.items()
                for ts in ev.transitions.values() for t in ts}
    assert triggers == {(e.source.name, e.trigger_name) for e in edges()}
    dot = diagram.state_dot()
    assert dot.startswith("digraph ")
    for row in MACHINE:
        assert re.search(rf"^\t{row.state.name} \[label=<", dot, re.M), row.state.name
    for edge in edges():  # every edge of the table has an arrow; its label names the trigger
        arrows = re.findall(
            rf'^\t{edge.source.name} -> {edge.dest.name} \[label=(?:"([^"]*)"|(\w+))', dot, re.M)
        arrows = [quoted or bare for quoted, bare in arrows]
        assert arrows, edge
        if edge.trigger not in (Trigger.RETRY, Trigger.FATAL):
            assert any(edge.trigger_name in label for label in arrows), edge
    assert "darksalmon" not in dot and "peripheries=2" not in dot  # no "current state"


# ---------------------------------------------------------------------- the sequence diagrams


@pytest.mark.parametrize("row", MACHINE, ids=lambda row: row.state.name)
def test_sequence_diagram_shows_every_step(row: StateSpec) -> None:
    text = diagram.sequence_diagram(row)
    participants, messages = parse_sequence(text)
    assert participants[:2] == ["MCU", "Module"]
    sent = [text for sender, receiver, text in messages if (sender, receiver) == ("MCU", "Module")]
    commands = [step.command for step in row.steps]
    assert [c for c in sent if c in commands] == commands, "each step's command, in order"
    for step in row.steps:
        assert f"{step.name}: answer within {diagram.secs(step.timeout_ms)}" in text
        if step.poll_limit:
            assert f"at most {step.poll_limit} times" in text
        for urc in step.urc_ok:
            assert urc in text
    for edge in edges():
        if edge.source == row.state and edge.trigger not in (Trigger.RETRY, Trigger.FATAL):
            assert f"→ {edge.dest.name}" in text, edge


def test_http_auth_sequence_has_the_body_and_the_cloud() -> None:
    text = diagram.sequence_diagram(MACHINE[State.HTTP_AUTH])
    participants, messages = parse_sequence(text)
    assert "Cloud" in participants
    assert ("Module", "MCU", "DOWNLOAD") in messages
    assert any(m[2].startswith("productKey=...&sign=...&clientId=...&deviceName=...")
               for m in messages)
    assert ("Module", "MCU", "+HTTPACTION: 1,200,{len} (URC)") in messages
    assert "rejected → retry HTTP_AUTH, when retries run out fatal → FAILED" in text


def test_online_sequence_publishes_receives_and_probes() -> None:
    text = diagram.sequence_diagram(MACHINE[State.ONLINE])
    _, messages = parse_sequence(text)
    sent = [m[2] for m in messages if m[:2] == ("MCU", "Module")]
    assert any(c.startswith('AT+MPUB="') and ",0,0," in c for c in sent)
    assert any(c.startswith('AT+MPUB="') and ",1,0," in c for c in sent)
    assert LIVENESS_PROBE.command in sent
    assert ("Cloud", "Module", "PUBACK") in messages
    assert any(m[2].startswith("+MSUB:") for m in messages)


# ---------------------------------------------------------------------- what the table cannot say


def test_the_side_tables_cover_the_machine() -> None:
    assert set(diagram.CHECK_ANSWERS) == set(Check)
    assert set(diagram.TRIGGER_CAUSES) == set(Trigger)
    commands = {step.command for row in MACHINE for step in row.steps}
    assert set(diagram.NETWORK) <= commands, "a NETWORK key is no longer a command"
    assert set(diagram.NETWORK_NOTES) <= commands
    for row in MACHINE:
        for step in row.steps:
            for name in diagram.template_fields(step.command):
                assert name in diagram.PLACEHOLDERS, f"{{{name}}} is not explained"
    link_urcs = [(u.prefix, u.trigger) for u in URCS if u.trigger is not None]
    for prefix, trigger in link_urcs:  # the first URC of each link trigger is named
        first = next(p for p, t in link_urcs if t == trigger).decode()
        assert first in diagram.TRIGGER_CAUSES[trigger].full, (prefix, trigger)


# ---------------------------------------------------------------------- files, determinism, check


@needs_graphviz_package
def test_generation_is_deterministic_across_processes(tmp_path: Path) -> None:
    outputs = []
    for seed in ("1", "2"):
        out = tmp_path / seed
        code = ("import sys; from pathlib import Path; from airfsm.tools import diagram; "
                "diagram.write_files(Path(sys.argv[1]), diagram.generate())")
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run([sys.executable, "-c", code, str(out)], check=True, env=env, cwd=REPO)
        outputs.append({p.name: p.read_bytes() for p in sorted(out.iterdir())})
    assert outputs[0] == outputs[1]
    assert outputs[0] == {name: text.encode() for name, text in diagram.generate().items()}


@needs_graphviz_package
def test_committed_diagrams_are_fresh() -> None:
    assert diagram.check(COMMITTED) == [], "run `make diagrams` and commit diagrams/"


@needs_graphviz_package
def test_check_names_a_modified_missing_or_stale_file(tmp_path: Path) -> None:
    diagram.write_files(tmp_path, diagram.generate())
    out, err = io.StringIO(), io.StringIO()
    assert diagram.run(None, tmp_path, stdout=out, stderr=err) == 0
    assert "up to date" in out.getvalue()

    mmd = tmp_path / diagram.STATE_MMD
    mmd.write_text(mmd.read_text().replace("retry ×3, backoff 1–16 s", "retry ×4, backoff 1–16 s"))
    (tmp_path / "sequence-ONLINE.mmd").unlink()
    (tmp_path / "sequence-GONE.mmd").write_text("sequenceDiagram\n")
    (tmp_path / diagram.STATE_SVG).write_text("<svg/>")  # the SVG is never compared
    out, err = io.StringIO(), io.StringIO()
    assert diagram.run(None, tmp_path, stdout=out, stderr=err) == 1
    report = err.getvalue()
    assert f"{mmd}: differs from what the table gives" in report
    assert "-    BEARER --> BEARER : retry ×4" in report
    assert f"{tmp_path / 'sequence-ONLINE.mmd'}: missing" in report
    assert f"{tmp_path / 'sequence-GONE.mmd'}: no longer generated" in report
    assert diagram.STATE_SVG not in report
    assert "make diagrams" in report


def test_check_of_a_folder_that_is_not_there(tmp_path: Path) -> None:
    err = io.StringIO()
    assert diagram.run(None, tmp_path / "nope", stdout=io.StringIO(), stderr=err) == 1
    assert "not a folder" in err.getvalue()


def test_without_dot_the_mermaid_files_are_still_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    out, err = io.StringIO(), io.StringIO()
    assert diagram.run(tmp_path, None, stdout=out, stderr=err) == 0
    assert diagram.NO_DOT in err.getvalue()
    assert (tmp_path / diagram.STATE_MMD).exists()
    assert (tmp_path / "sequence-AUTOBAUD.mmd").exists()
    assert (tmp_path / diagram.README).exists()
    assert not (tmp_path / diagram.STATE_SVG).exists()


def test_without_the_graphviz_package_mermaid_is_written_and_check_refuses(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(diagram, "graphviz_package", lambda: False)
    out, err = io.StringIO(), io.StringIO()
    assert diagram.run(tmp_path, None, stdout=out, stderr=err) == 0
    assert "graphviz Python package is missing" in err.getvalue()
    assert (tmp_path / diagram.STATE_MMD).exists()
    assert not (tmp_path / diagram.STATE_DOT).exists()
    err = io.StringIO()
    assert diagram.run(None, tmp_path, stdout=io.StringIO(), stderr=err) == 1
    assert f"cannot check {diagram.STATE_DOT}" in err.getvalue()


def test_writing_removes_sequence_diagrams_of_states_that_went_away(tmp_path: Path) -> None:
    (tmp_path / "sequence-OLD.mmd").write_text("sequenceDiagram\n")
    (tmp_path / "notes.txt").write_text("kept")
    diagram.write_files(tmp_path, diagram.generate(dot=False))
    assert not (tmp_path / "sequence-OLD.mmd").exists()
    assert (tmp_path / "notes.txt").exists()


@needs_graphviz_package
def test_svg_is_rendered_where_dot_is_installed(tmp_path: Path) -> None:
    if DOT is None:
        if IN_CI:
            pytest.fail("CI must have Debian's graphviz (`dot`): .ci/run installs it")
        pytest.skip("Debian's graphviz (`dot`) is not installed")
    out, err = io.StringIO(), io.StringIO()
    assert diagram.run(tmp_path, None, stdout=out, stderr=err) == 0, err.getvalue()
    svg = (tmp_path / diagram.STATE_SVG).read_text()
    assert "<svg" in svg
    for row in MACHINE:
        assert f">{row.state.name}</text>" in svg
    assert "retry ×180" in svg and "exhausted after 1 retry + AT+RESET" in svg


def test_readme_embeds_every_diagram() -> None:
    readme = diagram.readme()
    assert "do not edit" in readme
    assert f"![airfsm state machine]({diagram.STATE_SVG})" in readme
    blocks = re.findall(r"```mermaid\n(.*?)```", readme, re.S)
    assert blocks[0] == diagram.state_diagram()
    assert blocks[1:] == [diagram.sequence_diagram(row) for row in MACHINE]


def test_cli_registers_the_command() -> None:
    pytest.importorskip("airfsm.cli.demo", reason="the CLI's other modules are not there yet")
    from airfsm import cli

    args = cli.build_parser().parse_args(["diagram", "--check", "diagrams/"])
    assert args.handler is diagram.cmd_diagram
    assert args.check == "diagrams/"
