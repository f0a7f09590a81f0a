"""The `airfsm` command line.

Every failure a user can cause (bad arguments, a missing secret, a port that cannot be opened, a
module that will not come up) ends in one line on stderr and a distinct exit code, never a
traceback: the code below raises `HostError(message, exit)`, and `main` prints it.

Start-up is kept short by importing only what the command being run needs: the parser lists
every subcommand from the light table `commands.COMMANDS` (name, module, help), and only the
module of the command on the command line is imported to add its options and run it. So
`airfsm --help` and `airfsm publish ...` never load the controller, structlog or the simulator.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Mapping, Sequence

from airfsm import __version__
from airfsm.cli.commands import COMMANDS, Parser
from airfsm.host.errors import Exit, HostError
from airfsm.host.redact import redact

Handler = Callable[[argparse.Namespace, Mapping[str, str]], int]


def _command_in(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line: its first word that is not an option (the
    top-level parser has no option that takes a value)."""
    return next((word for word in argv if not word.startswith("-")), None)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser, with the full options of the command `argv` names (every command's when
    `argv` is None) and a bare entry, for `--help`, for each of the others."""
    parser = Parser(prog="airfsm", description=(
        "Drive an AirM2M Air72x module to Alibaba Cloud IoT over AT commands."))
    parser.add_argument("--version", action="version", version=f"airfsm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    module_of = {command.name: command.module for command in COMMANDS}
    if argv is None:
        wanted = set(module_of.values())
    else:
        chosen = _command_in(argv) or ""
        wanted = {module_of[chosen]} if chosen in module_of else set()
    for command in COMMANDS:
        if command.name in sub.choices:
            continue  # registered with the other commands of its module
        if command.module in wanted:
            importlib.import_module(command.module).register(sub)
        else:
            sub.add_parser(command.name, help=command.help, add_help=False)
    return parser


def one_line(text: str) -> str:
    """`text` with every control character written as an escape: a message may quote what the
    user typed (`unrecognized arguments: ...`), and a CR or LF in it would break the one line
    (or let a terminal overwrite it)."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def main(argv: Sequence[str] | None = None) -> int:
    env = dict(os.environ)
    words = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser(words).parse_args(words)
        handler: Handler = args.handler
        return int(handler(args, env))
    except HostError as exc:
        message = one_line(redact(str(exc)))
        print(message if message.startswith("airfsm") else f"airfsm: {message}", file=sys.stderr)
        return int(exc.exit)
    except KeyboardInterrupt:
        print("airfsm: interrupted", file=sys.stderr)
        return Exit.INTERRUPTED
    except BrokenPipeError:
        return Exit.FAILURE
