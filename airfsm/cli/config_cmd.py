"""`airfsm config check`: validate a configuration and show the settings `run` would use.

The same loading as `airfsm run` and `airfsm connect` (the TOML file, a systemd credential, the
`AIRFSM_*` environment, the flags), and the same checks, the controller's included: what
`config check` accepts, `run` starts with. Each setting is printed with its value (the secret
masked) and where it came from: `default`, `file PATH`, `credential PATH`, `env AIRFSM_X` or
`flag --x`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any

from airfsm.cli.commands import add_command
from airfsm.cli.common import load_settings
from airfsm.cli.gateway_cmds import RUN_KEYS, add_run_options
from airfsm.host.errors import Exit


def cmd_config_check(args: argparse.Namespace, env: Mapping[str, str]) -> Exit:
    config, sources = load_settings(args, env, RUN_KEYS)
    # The controller's own checks too: what passes here, `run` starts with. (Imported here:
    # it brings the controller.)
    from airfsm.host.gateway import settings_from_config

    settings_from_config(config)
    shown = config.public_dict()  # the secret is "***"
    shown["data_dir"] = str(config.data_dir_or_default())  # where it will be, default or not
    if args.json:
        print(json.dumps({"ok": True, "settings": {
            key: {"value": _jsonable(value), "source": sources[key]}
            for key, value in shown.items()}}, indent=2))
        return Exit.OK
    width = max(len(key) for key in shown)
    values = {key: _text(value) for key, value in shown.items()}
    value_width = min(40, max(len(v) for v in values.values()))
    print("configuration OK")
    for key in shown:
        print(f"  {key:<{width}}  {values[key]:<{value_width}}  {sources[key]}")
    return Exit.OK


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, tuple):
        return ", ".join(value)
    if isinstance(value, bool):
        return "true" if value else "false"  # as the TOML file says it
    return str(value)


def register(sub: Any) -> None:
    p = add_command(sub, "config", description=(
        "Configuration tools. `airfsm config check [--config FILE] [flags]` validates the "
        "settings `airfsm run` would use (file, systemd credential, AIRFSM_* environment, "
        "flags) and prints each with where it came from; the secret is masked. Exit 0 when "
        "valid, 2 with the reason when not."))
    actions = p.add_subparsers(dest="action", required=True, metavar="check")
    check = actions.add_parser("check", help="validate and print the effective settings")
    add_run_options(check)
    check.add_argument("--json", action="store_true",
                       help="as JSON: {ok, settings: {key: {value, source}}}")
    check.set_defaults(handler=cmd_config_check)


__all__ = ["register"]
