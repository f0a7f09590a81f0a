"""Gateway configuration: a TOML file, then `AIRFSM_*` environment variables, then flags.

Precedence, lowest first: the defaults below < the config file < the environment < command-line
flags. Every setting has one name, the `GatewayConfig` field name, spelled:

* in the TOML file: the field name in snake_case at the top level (`device_secret = "…"`);
  hyphenated spellings are rejected, with a hint, like any unknown key;
* in the environment: `AIRFSM_` + the field name in upper case (`AIRFSM_DEVICE_SECRET`);
  an empty variable counts as unset; other `AIRFSM_*` variables are ignored;
* on the command line: `--` + the field name with hyphens (`--device-secret`); the CLI passes
  them to `load_config` as `overrides`, keyed by field name, None meaning "not given".

Optional settings are switched off with an empty string (TOML has no null): `client_id = ""`,
`data_dir = ""`, `inbox = ""` (or `"none"`), `timeout_s = ""` (or `"none"`, `"forever"`).

A list (`subscribe`) is a TOML array of strings; in the environment and on the command line it
is one string, the topics separated by commas. A switch (`thing_model`, `rrpc`, `ntp`) is a TOML
boolean; in the environment and on the command line `true`/`false` (or 1/0, yes/no, on/off).

The DeviceSecret may also come from a systemd credential: with `LoadCredential=device_secret:…`
the service manager puts it in `$CREDENTIALS_DIRECTORY/device_secret`, which counts as a source
above the file and below the environment. `load_config_sources` says where each setting came
from (`airfsm config check` prints it).

The DeviceSecret never appears in an error message or in `repr()`.
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from airfsm.core.aliyun import SIGN_METHODS
from airfsm.core.settings import MAX_SUBSCRIPTIONS, wildcard_problem
from airfsm.host.alink import NTP_SUBSCRIPTIONS, RRPC_SUBSCRIPTIONS, THING_MODEL_SUBSCRIPTIONS
from airfsm.host.paths import default_data_dir

LOG_LEVELS = ("debug", "info", "warning", "error")
INBOX_MODES = ("stdout",)
STANDARD_BAUDS = (1200, 2400, 4800, 9600, 14400, 19200, 38400, 57600, 115200, 230400, 460800,
                  921600)
# device_secret too, unless product_secret is given (dynamic registration earns it).
REQUIRED = ("port", "product_key", "device_name", "device_secret")
ENV_PREFIX = "AIRFSM_"
SECRET_FIELDS = frozenset({"device_secret", "product_secret"})
CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"  # systemd's LoadCredential= directory
# settings a credential file may hold, by field name
CREDENTIAL_FIELDS = ("device_secret", "product_secret")
# How the device proves itself to the broker: the HTTPS pre-auth (an iotToken from
# /auth/devicename), or the direct MQTT sign (no HTTP round trip).
AUTH_MODES = ("https", "mqtt-sign")
MAX_TOPIC_LEN = 128  # what AT+MSUB carries (airfsm.core.payload.MAX_TOPIC)
MIN_SECRET_LEN = 4  # what airfsm.host.log can redact; real DeviceSecrets are 32 characters
# The longest `timeout_s`: a deadline past 2**31 ms would wrap on the 32-bit clock
# (airfsm.core.at.MAX_TIMEOUT_MS // 1000, about 24.8 days; not imported from there: `airfsm
# publish` reads this module and needs no AT channel. tests/test_config.py checks they agree.)
MAX_TIMEOUT_S = 2_147_483
MAX_CAPACITY = 10_000_000

_PRODUCT_KEY_RE = re.compile(r"[A-Za-z0-9]{1,64}")
_DEVICE_NAME_RE = re.compile(r"[A-Za-z0-9_@.:-]{1,64}")  # Alibaba: letters, digits, - _ @ . :
_CLIENT_ID_RE = re.compile(r"[A-Za-z0-9_@.:-]{1,64}")
_REGION_RE = re.compile(r"[a-z0-9-]{1,63}")
_INSTANCE_ID_RE = re.compile(r"[A-Za-z0-9-]{1,64}")  # iot-06z00ax1o4qxxxx
_APN_RE = re.compile(r"[A-Za-z0-9._-]{0,100}")  # goes inside a quoted AT string: no escapes
_INT_RE = re.compile(r"[+-]?[0-9]+")
_BRIDGE_URL_RE = re.compile(r"mqtt://([A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:]{2,39}\])(?::([0-9]{1,5}))?/?")
_LISTEN_RE = re.compile(r"([A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:]{2,39}\]):([0-9]{1,5})")
# What a topic placeholder stands for: `{pk}` the ProductKey, `{dn}` the DeviceName.
TOPIC_PLACEHOLDERS = ("{pk}", "{dn}")


class ConfigError(Exception):
    """A setting is missing, unknown or bad. One line; names the key, never shows the secret."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


# How each setting is converted from TOML / environment / flag values.
_KINDS: dict[str, str] = {
    "port": "str",
    "product_key": "str",
    "device_name": "str",
    "device_secret": "str",
    "product_secret": "optstr",
    "instance_id": "optstr",
    "auth": "str",
    "region": "str",
    "apn": "str",
    "baud": "int",
    "client_id": "optstr",
    "sign_method": "str",
    "data_dir": "optpath",
    "log_level": "str",
    "inbox": "inbox",
    "outbox_capacity": "int",
    "inbox_capacity": "int",
    "keepalive_s": "int",
    "watchdog_s": "int",
    "liveness_s": "int",
    "puback_timeout_s": "int",
    "silence_limit": "int",
    "publish_attempts": "int",
    "shutdown_grace_s": "float",
    "timeout_s": "optfloat",
    "reset_command": "optstr",
    "subscribe": "topics",
    "bridge": "optstr",
    "bridge_prefix": "str",
    "metrics_textfile": "optpath",
    "metrics_listen": "optstr",
    "thing_model": "bool",
    "rrpc": "bool",
    "rrpc_timeout_s": "int",
    "ntp": "bool",
    "ntp_interval_s": "int",
}


@dataclass(repr=False)
class GatewayConfig:
    """Everything `airfsm run` needs. Validated on construction (ConfigError)."""

    port: str  # serial device or pyserial URL
    product_key: str
    device_name: str
    device_secret: str = ""  # never printed: see __repr__; "": registered (product_secret)
    # "One type, one secret": the product's secret. With it and no device_secret the gateway
    # registers the device once and keeps the DeviceSecret in <data_dir>/device_secret.
    product_secret: str | None = None  # never printed
    # An instance's id (opened since mid-2021): its own auth server and MQTT broker,
    # <id>.auth.iothub.aliyuncs.com and <id>.mqtt.iothub.aliyuncs.com. None: legacy endpoints.
    instance_id: str | None = None
    auth: str = "https"  # "https" (pre-auth, an iotToken) or "mqtt-sign" (direct sign)
    region: str = "cn-shanghai"
    apn: str = "CMIOT"
    baud: int = 115200
    client_id: str | None = None  # None: the device name (as the seed does)
    sign_method: str = "hmacmd5"
    data_dir: Path | None = None  # None: default_data_dir()
    log_level: str = "info"
    inbox: str | None = None  # None or "stdout": print each inbound message as a JSON line
    outbox_capacity: int = 10_000
    inbox_capacity: int = 10_000  # inbound messages kept (a log: the oldest are pruned)
    keepalive_s: int = 120  # MQTT keepalive, 30..240 (the vendor advises 120, at most 240)
    watchdog_s: int = 600  # not ONLINE for this long: reset the module
    liveness_s: int = 60  # ONLINE: probe the link this often
    puback_timeout_s: int = 10  # QoS1: resend when PUBACK has not come this long after OK
    silence_limit: int = 3  # ONLINE: this many unanswered commands in a row -> reconnect MQTT
    publish_attempts: int = 5  # sends of a message without PUBACK before it is a dead letter
    shutdown_grace_s: float = 5.0  # on SIGTERM: time to finish the publish in flight
    timeout_s: float | None = None  # `airfsm connect`: give up after this; None waits forever
    # Pulses the module's RESET pin when it stops answering AT (e.g. `gpioset -m time -u 200000
    # gpiochip0 17=0`); run without a shell, at most RESET_COMMAND_TIMEOUT_S. None: no pin.
    reset_command: str | None = None
    # Topics subscribed to once the MQTT session is up (wildcards `+` and `#` allowed). A topic
    # without a leading `/` is relative to /{pk}/{dn}/; `{pk}` and `{dn}` stand for the
    # ProductKey and DeviceName (Alink: "/sys/{pk}/{dn}/thing/service/property/set").
    subscribe: tuple[str, ...] = ("get",)
    # A local MQTT broker the gateway bridges to (`mqtt://127.0.0.1:1883`); None: no bridge.
    bridge: str | None = None
    bridge_prefix: str = "airfsm/{dn}"  # local topics: <prefix>/up/..., <prefix>/down/...
    # Prometheus: a node_exporter textfile (written atomically) and/or `host:port` for /metrics.
    metrics_textfile: Path | None = None
    metrics_listen: str | None = None
    # Alibaba Cloud's Alink features (`airfsm.host.alink`); each adds the subscriptions it needs.
    thing_model: bool = False  # property post replies, property set and service calls
    rrpc: bool = False  # /sys/{pk}/{dn}/rrpc/request/+, answered through the priority lane
    rrpc_timeout_s: int = 8  # how long the server waits for an RRPC answer (its Timeout, <= 8)
    ntp: bool = False  # learn the server's time on every ONLINE and every ntp_interval_s
    ntp_interval_s: int = 86_400

    def __post_init__(self) -> None:
        if isinstance(self.data_dir, str):
            self.data_dir = Path(self.data_dir).expanduser() if self.data_dir else None
        if isinstance(self.metrics_textfile, str):
            self.metrics_textfile = (Path(self.metrics_textfile).expanduser()
                                     if self.metrics_textfile else None)
        if isinstance(self.subscribe, list):
            self.subscribe = tuple(self.subscribe)
        self.validate()

    def validate(self) -> None:
        """ConfigError naming the first bad setting."""
        for f in fields(self):
            _check_type(f.name, getattr(self, f.name))
        _require(bool(self.port), "port", "must not be empty")
        _require(not _has_control(self.port), "port", "must not contain control characters")
        _require(bool(_PRODUCT_KEY_RE.fullmatch(self.product_key)), "product_key",
                 "expected 1-64 letters and digits")
        _require(bool(_DEVICE_NAME_RE.fullmatch(self.device_name)), "device_name",
                 "expected 1-64 letters, digits and - _ @ . :")
        for key in ("device_secret", "product_secret"):
            value = getattr(self, key) or ""
            if key == "product_secret" and not value:
                continue
            if key == "device_secret" and not value and self.product_secret:
                continue  # registration will earn it
            _require(len(value) >= MIN_SECRET_LEN, key,
                     f"must be at least {MIN_SECRET_LEN} characters (value not shown)")
            _require(all(0x21 <= ord(c) <= 0x7E for c in value), key,
                     "must be printable ASCII without spaces (value not shown)")
        if self.instance_id is not None:
            _require(bool(_INSTANCE_ID_RE.fullmatch(self.instance_id)), "instance_id",
                     "expected 1-64 letters, digits and '-', e.g. 'iot-06z00ax1o4qxxxx'")
        _require(self.auth in AUTH_MODES, "auth", "expected one of " + ", ".join(AUTH_MODES))
        _require(bool(_REGION_RE.fullmatch(self.region)), "region",
                 "expected lowercase letters, digits and '-', e.g. 'cn-shanghai'")
        _require(bool(_APN_RE.fullmatch(self.apn)), "apn",
                 "expected letters, digits and . _ - (at most 100)")
        _require(self.baud in STANDARD_BAUDS, "baud",
                 "expected one of " + ", ".join(map(str, STANDARD_BAUDS)))
        if self.client_id is not None:
            _require(bool(_CLIENT_ID_RE.fullmatch(self.client_id)), "client_id",
                     "expected 1-64 letters, digits and - _ @ . :")
        _require(self.sign_method in SIGN_METHODS, "sign_method",
                 "expected one of " + ", ".join(SIGN_METHODS))
        _require(self.log_level in LOG_LEVELS, "log_level",
                 "expected one of " + ", ".join(LOG_LEVELS))
        _require(self.inbox is None or self.inbox in INBOX_MODES, "inbox",
                 "expected 'stdout' or '' (off)")
        _require(1 <= self.outbox_capacity <= MAX_CAPACITY, "outbox_capacity",
                 f"expected 1..{MAX_CAPACITY}")
        _require(1 <= self.inbox_capacity <= MAX_CAPACITY, "inbox_capacity",
                 f"expected 1..{MAX_CAPACITY}")
        _require(30 <= self.keepalive_s <= 240, "keepalive_s",
                 "expected 30..240 seconds: the vendor advises 120 s and at most 240 s, as "
                 "carrier NATs drop links idle longer")
        _require(60 <= self.watchdog_s <= 7 * 86400, "watchdog_s",
                 "expected 60..604800 seconds")
        _require(5 <= self.liveness_s <= 86400, "liveness_s", "expected 5..86400 seconds")
        _require(1 <= self.puback_timeout_s <= 600, "puback_timeout_s",
                 "expected 1..600 seconds")
        _require(1 <= self.silence_limit <= 100, "silence_limit", "expected 1..100")
        _require(1 <= self.publish_attempts <= 100, "publish_attempts", "expected 1..100")
        _require(0 <= self.shutdown_grace_s <= 300, "shutdown_grace_s",
                 "expected 0..300 seconds")
        if self.timeout_s is not None:
            _require(0 < self.timeout_s <= MAX_TIMEOUT_S, "timeout_s",
                     "expected a positive number of seconds, or '' for no timeout")
        _require(1 <= len(self.subscribe) <= MAX_SUBSCRIPTIONS, "subscribe",
                 f"expected 1..{MAX_SUBSCRIPTIONS} topics")
        _require(len(self.subscriptions()) <= MAX_SUBSCRIPTIONS, "subscribe",
                 f"expected at most {MAX_SUBSCRIPTIONS} topics together with those thing_model, "
                 "rrpc and ntp add")
        _require(1 <= self.rrpc_timeout_s <= 8, "rrpc_timeout_s",
                 "expected 1..8 seconds (the server waits at most 8 s)")
        _require(600 <= self.ntp_interval_s <= 30 * 86400, "ntp_interval_s",
                 "expected 600..2592000 seconds")
        for topic in self.subscriptions():
            problem = topic_filter_problem(topic)
            _require(problem is None, "subscribe", f"{topic!r}: {problem}")
        if self.bridge is not None:
            match = _BRIDGE_URL_RE.fullmatch(self.bridge)
            _require(match is not None and 1 <= int(match.group(2) or 1883) <= 65535,
                     "bridge", "expected mqtt://HOST[:PORT], e.g. mqtt://127.0.0.1:1883")
        prefix = self.expand(self.bridge_prefix)
        _require(topic_filter_problem(prefix) is None and not any(c in prefix for c in "+#")
                 and not prefix.startswith("/") and not prefix.endswith("/"), "bridge_prefix",
                 "expected a topic without wildcards or a leading/trailing '/', e.g. "
                 "'airfsm/{dn}'")
        if self.metrics_listen is not None:
            match = _LISTEN_RE.fullmatch(self.metrics_listen)
            _require(match is not None and int(match.group(2)) <= 65535, "metrics_listen",
                     "expected HOST:PORT, e.g. 127.0.0.1:9464")

    def expand(self, topic: str) -> str:
        """`{pk}` and `{dn}` in `topic` replaced by the ProductKey and DeviceName."""
        return topic.replace("{pk}", self.product_key).replace("{dn}", self.device_name)

    def subscriptions(self) -> tuple[str, ...]:
        """The topics to subscribe to, absolute, placeholders expanded: `subscribe`, then what
        the Alink features switched on need (each topic once)."""
        wanted = list(self.subscribe)
        if self.thing_model:
            wanted += THING_MODEL_SUBSCRIPTIONS
        if self.rrpc:
            wanted += RRPC_SUBSCRIPTIONS
        if self.ntp:
            wanted += NTP_SUBSCRIPTIONS
        out: list[str] = []
        for topic in wanted:
            topic = self.expand(topic)
            topic = topic if topic.startswith("/") else (
                f"/{self.product_key}/{self.device_name}/{topic}")
            if topic not in out:
                out.append(topic)
        return tuple(out)

    def bridge_address(self) -> tuple[str, int] | None:
        """(host, port) of the local broker, None without a bridge."""
        match = _BRIDGE_URL_RE.fullmatch(self.bridge or "")
        if match is None:
            return None
        return match.group(1).strip("[]"), int(match.group(2) or 1883)

    @property
    def effective_client_id(self) -> str:
        """The MQTT/auth clientId: `client_id`, or the device name when unset."""
        return self.client_id if self.client_id is not None else self.device_name

    def data_dir_or_default(self) -> Path:
        """`data_dir`, or the per-user default (`airfsm.host.paths.default_data_dir`)."""
        return self.data_dir if self.data_dir is not None else default_data_dir()

    def public_dict(self) -> dict[str, Any]:
        """All settings as JSON-able values, the secret replaced by `***` (for status/logs)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS:
                value = "***"
            elif isinstance(value, Path):
                value = str(value)
            out[f.name] = value
        return out

    def __repr__(self) -> str:
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            parts.append(f"{f.name}='***'" if f.name in SECRET_FIELDS else f"{f.name}={value!r}")
        return f"GatewayConfig({', '.join(parts)})"


def topic_filter_problem(topic: str) -> str | None:
    """Why `topic` cannot be subscribed to (None when it can): 1-128 printable ASCII without
    quotes or backslashes (it travels inside a quoted AT string), MQTT wildcards only as whole
    levels (`+` anywhere, `#` last) and no unexpanded placeholder."""
    if not 1 <= len(topic) <= MAX_TOPIC_LEN:
        return f"expected 1..{MAX_TOPIC_LEN} characters"
    if any(not 0x20 < ord(c) < 0x7F or c in '"\\' for c in topic):
        return "expected printable ASCII without spaces, quotes or backslashes"
    if "{" in topic or "}" in topic:
        return "unknown placeholder (only {pk} and {dn})"
    return wildcard_problem(topic)



_FIELD_NAMES = tuple(f.name for f in fields(GatewayConfig))
assert set(_FIELD_NAMES) == set(_KINDS), "every GatewayConfig field needs a _KINDS entry"


def env_var(key: str) -> str:
    """The environment variable for a setting: `device_secret` -> `AIRFSM_DEVICE_SECRET`."""
    return ENV_PREFIX + key.upper()


def flag(key: str) -> str:
    """The command-line flag for a setting: `device_secret` -> `--device-secret`."""
    return "--" + key.replace("_", "-")


def _has_control(text: str) -> bool:
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in text)


def _require(ok: bool, key: str, expectation: str) -> None:
    if not ok:
        raise ConfigError(f"bad value for '{key}': {expectation}", key)


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def _shown(key: str, value: Any) -> str:
    """How a rejected value appears in a message: never for the secret, short otherwise."""
    if key in SECRET_FIELDS:
        return f"{_type_name(value)} (value not shown)"
    if isinstance(value, dict | list):
        return _type_name(value)
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _bad(key: str, expected: str, value: Any) -> ConfigError:
    return ConfigError(f"bad value for '{key}': expected {expected}, got {_shown(key, value)}",
                       key)


_TRUE_WORDS = ("true", "1", "yes", "on")
_FALSE_WORDS = ("false", "0", "no", "off")
_TYPE_OF_KIND = {"str": (str,), "optstr": (str, type(None)), "inbox": (str, type(None)),
                 "topics": (tuple,), "bool": (bool,),
                 "optpath": (Path, type(None)), "int": (int,), "float": (int, float),
                 "optfloat": (int, float, type(None))}


def _check_type(key: str, value: Any) -> None:
    """For direct construction: each field holds the type its kind converts to."""
    kind = _KINDS[key]
    if (isinstance(value, bool) and kind != "bool") or not isinstance(
            value, _TYPE_OF_KIND[kind]):
        expected = {"str": "a string", "optstr": "a string or None", "inbox": "a string or None",
                    "topics": "a tuple of topics", "bool": "true or false",
                    "optpath": "a path or None", "int": "an integer", "float": "a number",
                    "optfloat": "a number or None"}[kind]
        raise _bad(key, expected, value)
    if isinstance(value, float) and not math.isfinite(value):
        raise _bad(key, "a finite number", value)
    if isinstance(value, tuple) and not all(isinstance(v, str) for v in value):
        raise _bad(key, "a tuple of topic strings", value)


def convert(key: str, value: Any) -> Any:
    """A TOML, environment (always str) or flag value converted to the field's type."""
    kind = _KINDS[key]
    if kind == "str":
        if not isinstance(value, str):
            raise _bad(key, "a string (quote it in TOML)", value)
        return value
    if kind == "optstr":
        if not isinstance(value, str):
            raise _bad(key, "a string", value)
        return value or None
    if kind == "inbox":
        if not isinstance(value, str):
            raise _bad(key, "'stdout' or '' (off)", value)
        return None if value.strip().lower() in ("", "none", "off") else value.strip().lower()
    if kind == "bool":
        if isinstance(value, bool):
            return value
        word = value.strip().lower() if isinstance(value, str) else None
        if word in _TRUE_WORDS or word in _FALSE_WORDS:
            return word in _TRUE_WORDS
        raise _bad(key, "true or false", value)
    if kind == "topics":
        if isinstance(value, str):  # environment and flags: comma-separated
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise _bad(key, "an array of topic strings", value)
        return tuple(value)
    if kind == "optpath":
        if isinstance(value, Path):
            return value.expanduser()
        if not isinstance(value, str):
            raise _bad(key, "a directory path", value)
        return Path(value).expanduser() if value else None
    if kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and _INT_RE.fullmatch(value.strip()):
            return int(value.strip())
        raise _bad(key, "an integer", value)
    # float and optfloat
    if kind == "optfloat" and (value is None or (
            isinstance(value, str) and value.strip().lower() in ("", "none", "forever"))):
        return None
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if number is None or not math.isfinite(number):
        raise _bad(key, "a number of seconds", value)
    return number


def _unknown(key: str, where: str) -> ConfigError:
    message = f"unknown key '{key}' in {where}"
    normalized = key.replace("-", "_").lower()
    if normalized in _KINDS:
        message += f" (did you mean '{normalized}'? keys are snake_case)"
    else:
        close = difflib.get_close_matches(normalized, _FIELD_NAMES, n=1)
        if close:
            message += f" (did you mean '{close[0]}'?)"
    return ConfigError(message, key)


def read_toml(path: Path) -> dict[str, Any]:
    """A config file's table; ConfigError with one line (file, line, column) if unreadable."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        # tomllib says "<what> (at line L, column C)"; it quotes at most one character.
        reason = " ".join(str(exc).split())
        raise ConfigError(f"{path}: TOML syntax error: {reason}") from None


def read_credential(env: Mapping[str, str], key: str) -> tuple[str, Path] | None:
    """The value of setting `key` from systemd's credential directory (`LoadCredential=`), and
    the file it came from; None when there is no such credential. The file's final newline (an
    `echo` left it) is not part of the value. ConfigError (value not shown) if unreadable."""
    directory = env.get(CREDENTIALS_ENV, "")
    if not directory or key not in CREDENTIAL_FIELDS:
        return None
    path = Path(directory) / key
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read credential {path}: {exc.strerror}", key) from None
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise ConfigError(f"bad value for '{key}': credential {path} is not ASCII "
                          "(value not shown)", key) from None
    return text.removesuffix("\n").removesuffix("\r"), path


# Where a setting came from, lowest precedence first (what `airfsm config check` shows).
SOURCE_KINDS = ("default", "file", "credential", "env", "flag")


def load_config(path: Path | None, env: Mapping[str, str],
                overrides: Mapping[str, Any]) -> GatewayConfig:
    """Build the configuration: file < credential < `AIRFSM_*` environment < `overrides`.

    `path` None: no file. `env`: usually `os.environ`. `overrides`: field name (hyphens are
    accepted too) -> value; None values are "not given" and skipped.
    """
    return load_config_sources(path, env, overrides)[0]


def load_config_sources(path: Path | None, env: Mapping[str, str],
                        overrides: Mapping[str, Any]) -> tuple[GatewayConfig, dict[str, str]]:
    """`load_config`, and for every setting where its value came from: `default`,
    `file PATH`, `credential PATH`, `env AIRFSM_X` or `flag --x` (the first word is one of
    SOURCE_KINDS)."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}  # where, in the words of an error message
    origins: dict[str, str] = {}  # where, as `airfsm config check` prints it

    def take(key: str, raw: Any, where: str, origin: str) -> None:
        """A later source wins; a bad value names its key and where it came from."""
        try:
            values[key] = convert(key, raw)
        except ConfigError as exc:
            raise ConfigError(f"{exc} ({where})", key) from None
        sources[key] = where
        origins[key] = origin

    if path is not None:
        path = Path(path)
        for key, value in read_toml(path).items():
            if key not in _KINDS:
                raise _unknown(key, str(path))
            take(key, value, f"in {path}", f"file {path}")

    for key in CREDENTIAL_FIELDS:
        credential = read_credential(env, key)
        if credential is not None:
            take(key, credential[0], f"in credential {credential[1]}",
                 f"credential {credential[1]}")

    for key in _FIELD_NAMES:
        name = env_var(key)
        raw = env.get(name)
        if raw is not None and raw != "":
            take(key, raw, f"from {name}", f"env {name}")

    for given, value in overrides.items():
        key = given.replace("-", "_")
        if key not in _KINDS:
            raise _unknown(given, "the command-line options")
        if value is not None:
            take(key, value, f"from {flag(key)}", f"flag {flag(key)}")

    missing = [key for key in REQUIRED if key not in values
               and not (key == "device_secret" and values.get("product_secret"))]
    if missing:
        hints = "; ".join(_missing_hint(key) for key in missing)
        raise ConfigError(f"missing required setting{'s' if len(missing) > 1 else ''} {hints}",
                          missing[0])

    try:
        config = GatewayConfig(**values)
    except ConfigError as exc:
        source = sources.get(exc.key or "")
        if source is None:
            raise
        raise ConfigError(f"{exc} ({source})", exc.key) from None
    return config, {key: origins.get(key, "default") for key in _FIELD_NAMES}


def _missing_hint(key: str) -> str:
    where = f"pass {flag(key)}, set {env_var(key)}, or put {key} in the config file"
    if key == "device_secret":
        where = (f"the DeviceSecret: set {env_var(key)}, give a systemd credential '{key}' "
                 f"(LoadCredential=), put {key} in the config file, or pass {flag(key)}; "
                 "or give product_secret to register the device")
    return f"'{key}' ({where})"
