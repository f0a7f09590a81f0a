"""The command table: every `airfsm` subcommand, the module that implements it, its help line.

`airfsm --help` needs only this (and argparse); the module of a command is imported when that
command is the one being run.
"""

from __future__ import annotations

import argparse
from typing import Any, NamedTuple, NoReturn

from airfsm.host.errors import Exit, HostError


class Command(NamedTuple):
    """One subcommand: its name, the module that registers and runs it (imported only when it
    is the command being run), and the line `airfsm --help` shows for it."""

    name: str
    module: str
    help: str


# In `airfsm --help` order. A module registers every command that names it (`register(sub)`).
COMMANDS = (
    Command("connect", "airfsm.cli.connect", "bring the module ONLINE once and exit 0"),
    Command("sign", "airfsm.cli.sign", "print the auth sign, the HTTPDATA body and its length"),
    Command("sim", "airfsm.cli.demo", "run the Air72x simulator on a pty or TCP port"),
    Command("demo", "airfsm.cli.demo", "simulator + connect + publish + downlink, no hardware"),
    Command("ctable", "airfsm.tools.ctable",
            "write the machine table as C for an MCU port (airfsm_table.h, airfsm_table.c)"),
    Command("run", "airfsm.cli.gateway_cmds",
            "the gateway: hold the link, send the outbox, store the inbox"),
    Command("publish", "airfsm.cli.gateway_cmds",
            "queue a message for the gateway (durable; works while it is down)"),
    Command("inbox", "airfsm.cli.gateway_cmds", "print stored inbound messages as JSON lines"),
    Command("reply", "airfsm.cli.gateway_cmds",
            "answer a cloud request in the inbox (property set, service call, RRPC)"),
    Command("outbox", "airfsm.cli.gateway_cmds",
            "list queued messages or dead letters; re-queue or discard one"),
    Command("status", "airfsm.cli.gateway_cmds", "print the running gateway's status"),
    Command("config", "airfsm.cli.config_cmd",
            "check a configuration: the effective settings and where each came from"),
    Command("diagram", "airfsm.tools.diagram",
            "write the state and sequence diagrams from the table"),
)
HELP = {command.name: command.help for command in COMMANDS}


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is a HostError (one line, exit 2), not argparse's exit."""

    def error(self, message: str) -> NoReturn:
        raise HostError(f"{self.prog}: {message}", Exit.USAGE)


def add_command(sub: Any, name: str, **kwargs: Any) -> argparse.ArgumentParser:
    """`sub.add_parser(name)` with the help line of the command table."""
    parser: argparse.ArgumentParser = sub.add_parser(name, help=HELP[name], **kwargs)
    return parser
