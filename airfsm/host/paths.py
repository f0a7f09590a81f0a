"""Where the gateway keeps its files (host only).

`default_data_dir` is the data directory when none is configured; the files inside it are named
by their owners (`store.db_path`, `store.StatusFile`, the gateway's wake socket and lock).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

# flock()ed by the gateway while it runs (one gateway per data directory); `airfsm status`
# probes it to know whether the gateway whose status file it reads is alive.
LOCK_FILE = "gateway.lock"


def default_data_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where the gateway keeps its state when `--data-dir` is not given.

    `$AIRFSM_DATA_DIR`; else `$XDG_STATE_HOME/airfsm` (if absolute, as the XDG spec asks); else
    `~/.local/state/airfsm`; but for root without a usable home (HOME unset or `/`, typical of a
    system service) `/var/lib/airfsm`. Empty variables count as unset.
    """
    env = os.environ if env is None else env
    explicit = env.get("AIRFSM_DATA_DIR", "")
    if explicit:
        return Path(explicit).expanduser()
    xdg = env.get("XDG_STATE_HOME", "")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "airfsm"
    home = env.get("HOME", "")
    geteuid = getattr(os, "geteuid", None)
    if home in ("", "/") and geteuid is not None and geteuid() == 0:
        return Path("/var/lib/airfsm")
    if home:
        return Path(home) / ".local" / "state" / "airfsm"
    return Path.home() / ".local" / "state" / "airfsm"
