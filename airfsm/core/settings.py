"""What the controller is told, and the sizes of its buffers. C twin: `port/c/core/settings.h`.

`Settings` holds everything a deployment chooses (the device, the APN, timeouts, budgets), with
its defaults and the ranges `validate` enforces; the generated C header exports both. The
constants below size every buffer of the tick: each is allocated once, when the controller (or
its AT channel) is made, and nothing in the tick grows one. A C port declares them as arrays of
these sizes in its controller struct.
"""

from __future__ import annotations

from dataclasses import dataclass

from airfsm.core import aliyun, payload
from airfsm.core.codes import AuthMode

# The AT channel (airfsm.core.at).
LINE_CAPACITY = 2048  # one received line; a longer one is dropped and counted
DATA_CAPACITY = 4096  # one length-counted payload (+MSUB message, +HTTPREAD body)
MAX_INFO_LINES = 8  # info lines kept per response; more are dropped and counted
# A response's info lines and its +HTTPREAD body, as (offset, length) spans of one arena: a
# full body and 512 bytes of lines (answers are short: +CGMR, +CSQ, +SAPBR, `+HTTPREAD: n`).
# A line that does not fit what is left is dropped and counted, like one beyond MAX_INFO_LINES.
INFO_ARENA = DATA_CAPACITY + 512
READ_CHUNK = 512  # bytes taken from the port per read

# The controller (airfsm.core.controller).
CMD_CAPACITY = 1280  # one command and its CR: the longest AT+MPUB is 1169 bytes
# The HTTP body: the auth form (airfsm.core.aliyun.AUTH_BODY_MAX, 523 bytes with
# resources=mqtt) or the register form (REGISTER_BODY_MAX, 303).
BODY_CAPACITY = 640
# What the module tells of itself and its network (IMEI 15 digits, ICCID 19-20, an operator's
# long name at most 16): each kept in a text field of this many bytes; a longer answer is cut.
INFO_TEXT_MAX = 32
OUTBOX_RING = 1000  # messages a MemoryOutbox holds by default (and as many dead letters)

# MQTT keepalive: the vendor advises 2 minutes and at most 4 (carrier NATs and base stations
# drop links idle longer; openLuat FAQ "socket问题" #4); 30 s is the lower bound kept from before.
MIN_KEEPALIVE_S = 30
DEFAULT_KEEPALIVE_S = 120
MAX_KEEPALIVE_S = 240
# The ranges `Settings.validate` enforces (SETTING_RANGES below lists them setting by setting).
U31_MAX = 2**31 - 1  # the longest wrap-safe 32-bit interval (timebase)
BODY_WINDOW_MS = (1_000, 120_000)  # AT+HTTPDATA=<size>,<time>: time 1000-120000 ms
TIMEOUT_RANGE_MS = (1_000, U31_MAX)  # liveness, publish, PUBACK, token refresh
ATTEMPTS_RANGE = (1, 100)  # publish_attempts, auth_attempts
BACKOFF_RANGE_MS = (100, U31_MAX)  # the publish backoff's base and cap (and base <= cap)
PERIOD_RANGE_MS = (0, U31_MAX)  # watchdog_ms, outbox_poll_ms (0: off)
PORT_RANGE = (1, 65535)
QOS_RANGE = (0, 1)
APN_MAX = 64
MAX_SUBSCRIPTIONS = 8  # topics subscribed to (C: a fixed array of them)


@dataclass(slots=True)
class Settings:
    """Everything the controller needs to know; validated once, before the first tick.

    C: airfsm_settings_t (the generated header exports the defaults and ranges)."""

    identity: aliyun.DeviceIdentity
    apn: str = "CMIOT"  # "" is legal: the network's default APN
    sign_method: str = aliyun.DEFAULT_SIGN_METHOD  # HTTPS auth, registration, direct sign
    # How the device proves itself to the broker: HTTP_AUTH's iotToken (HTTPS, the seed's way)
    # or the direct MQTT sign (MQTT_SIGN: BEARER goes straight to MQTT_CONNECT).
    auth_mode: AuthMode = AuthMode.HTTPS
    keepalive_s: int = DEFAULT_KEEPALIVE_S
    baud: int = 115200  # the UART's rate: how long a length-counted payload may pause
    # Topic filters subscribed to in MQTT_CONNECT, each one in turn: 1-8 absolute topics,
    # MQTT wildcards as whole levels (`+`, `#` last). Empty: /{pk}/{dn}/get.
    subscribe: tuple[str, ...] = ()
    sub_topic: str | None = None  # one topic, the form before `subscribe`: subscribe=(sub_topic,)
    sub_qos: int = 0
    mqtt_host: str | None = None  # default: the reply's resources, else <pk>.iot-as-mqtt.<region>
    mqtt_port: int | None = None
    body_window_ms: int = 20_000  # the HTTPDATA window the module waits for the body (1-120 s)
    liveness_ms: int = 60_000  # probe AT+MQTTSTATU this often in ONLINE
    silence_limit: int = 3  # consecutive unanswered commands in ONLINE -> MQTT_LOST
    publish_timeout_ms: int = 10_000  # AT+MPUB final code
    puback_timeout_ms: int = 10_000  # QoS1 PUBACK after OK
    # Attempts a message gets (each refused, unanswered, without PUBACK or ended by a session
    # drop) before it moves to the dead letters; between them the publisher backs off.
    publish_attempts: int = 5
    publish_backoff_base_ms: int = 2_000  # after failure n: base*2**(n-1), capped, equal jitter
    publish_backoff_cap_ms: int = 60_000
    auth_attempts: int | None = None  # rejected auths before FAILED (None: the table's retries+1)
    token_refresh_ms: int = 6 * 24 * 3600 * 1000  # tokens live 7 days: refresh a day early
    watchdog_ms: int = 0  # not ONLINE this long -> AT+RESET and AUTOBAUD (0: off)
    outbox_poll_ms: int = 0  # ONLINE and idle: look at the outbox this often (0: only on tick)
    jitter_seed: int | None = None  # default: derived from the device name, so fleets spread

    def validate(self) -> None:
        """ValueError with a one-line message naming the setting (never a secret's value).

        C: airfsm_settings_validate() (returns the index of the first bad setting)."""
        self.identity.validate()
        if self.sign_method not in aliyun.SIGN_METHODS:
            raise ValueError(f"sign method must be one of {', '.join(aliyun.SIGN_METHODS)}")
        if self.auth_mode not in tuple(AuthMode):
            raise ValueError("auth mode must be HTTPS or MQTT_SIGN")
        if not _quotable(self.apn) or len(self.apn) > APN_MAX:
            raise ValueError("apn must be 0-64 printable ASCII characters without quotes")
        if not MIN_KEEPALIVE_S <= self.keepalive_s <= MAX_KEEPALIVE_S:
            raise ValueError(f"keepalive must be {MIN_KEEPALIVE_S}-{MAX_KEEPALIVE_S} seconds: "
                             f"the vendor advises {DEFAULT_KEEPALIVE_S} s and at most "
                             f"{MAX_KEEPALIVE_S} s, as carrier NATs drop links idle longer")
        if self.baud < 1:
            raise ValueError("baud must be a positive line rate")
        if not QOS_RANGE[0] <= self.sub_qos <= QOS_RANGE[1]:
            raise ValueError("subscribe qos must be 0 or 1")
        if isinstance(self.subscribe, str) or not all(
                isinstance(topic, str) for topic in self.subscribe):
            raise ValueError("subscribe must be a list of topics")
        if self.subscribe and self.sub_topic is not None:
            raise ValueError("subscribe: give the topics in subscribe or one in sub_topic, "
                             "not both")
        topics = self.subscriptions()
        if not 1 <= len(topics) <= MAX_SUBSCRIPTIONS:
            raise ValueError(f"subscribe: 1-{MAX_SUBSCRIPTIONS} topics")
        for topic in topics:
            if reason := topic_filter_problem(topic):
                raise ValueError(f"subscribe topic {topic!r}: {reason}")
        if self.mqtt_host is not None and (not self.mqtt_host or not _quotable(self.mqtt_host)):
            raise ValueError("mqtt host must be printable ASCII without quotes")
        if self.mqtt_port is not None and not PORT_RANGE[0] <= self.mqtt_port <= PORT_RANGE[1]:
            raise ValueError("mqtt port must be 1-65535")
        for name, value in (("liveness_ms", self.liveness_ms),
                            ("publish_timeout_ms", self.publish_timeout_ms),
                            ("puback_timeout_ms", self.puback_timeout_ms),
                            ("token_refresh_ms", self.token_refresh_ms)):
            if not TIMEOUT_RANGE_MS[0] <= value <= TIMEOUT_RANGE_MS[1]:
                raise ValueError(f"{name} must be between 1000 and 2**31-1 ms")
        if not BODY_WINDOW_MS[0] <= self.body_window_ms <= BODY_WINDOW_MS[1]:
            raise ValueError(f"body_window_ms must be {BODY_WINDOW_MS[0]}-{BODY_WINDOW_MS[1]} ms "
                             "(what AT+HTTPDATA accepts)")
        if self.auth_attempts is not None and not (
                ATTEMPTS_RANGE[0] <= self.auth_attempts <= ATTEMPTS_RANGE[1]):
            raise ValueError("auth attempts must be 1-100")
        if not ATTEMPTS_RANGE[0] <= self.publish_attempts <= ATTEMPTS_RANGE[1]:
            raise ValueError("publish_attempts must be 1-100")
        low, high = BACKOFF_RANGE_MS
        if not low <= self.publish_backoff_base_ms <= self.publish_backoff_cap_ms <= high:
            raise ValueError("publish backoff must be 100 ms <= base <= cap < 2**31 ms")
        low, high = PERIOD_RANGE_MS
        if not low <= self.watchdog_ms <= high or not low <= self.outbox_poll_ms <= high:
            raise ValueError("watchdog_ms and outbox_poll_ms must be 0 to 2**31-1 ms")

    def subscriptions(self) -> tuple[str, ...]:
        """The topics subscribed to, in order: `subscribe`, else `sub_topic`, else the device's
        /{pk}/{dn}/get. C: airfsm_t.subscriptions, set by airfsm_init_ex() (the settings hold
        an array and a count)."""
        if self.subscribe:
            return tuple(self.subscribe)
        if self.sub_topic is not None:
            return (self.sub_topic,)
        ident = self.identity
        return (aliyun.topic_get(ident.product_key, ident.device_name),)


@dataclass(frozen=True)
class SettingRange:
    """The values `Settings.validate` lets through for one numeric setting (None: no bound).

    C: airfsm_setting_range_t (the generated table exports SETTING_RANGES with the defaults)."""

    name: str  # the Settings field
    low: int | None
    high: int | None
    unset: str = ""  # what 0 stands for in C, where the Python default is None


# Every numeric setting of `Settings`, in its order.
SETTING_RANGES: tuple[SettingRange, ...] = (
    SettingRange("keepalive_s", MIN_KEEPALIVE_S, MAX_KEEPALIVE_S),
    SettingRange("baud", 1, None),
    SettingRange("sub_qos", *QOS_RANGE),
    SettingRange("mqtt_port", *PORT_RANGE, unset="the auth reply's, else 1883"),
    SettingRange("body_window_ms", *BODY_WINDOW_MS),
    SettingRange("liveness_ms", *TIMEOUT_RANGE_MS),
    SettingRange("silence_limit", None, None),
    SettingRange("publish_timeout_ms", *TIMEOUT_RANGE_MS),
    SettingRange("puback_timeout_ms", *TIMEOUT_RANGE_MS),
    SettingRange("publish_attempts", *ATTEMPTS_RANGE),
    SettingRange("publish_backoff_base_ms", *BACKOFF_RANGE_MS),  # and <= the cap
    SettingRange("publish_backoff_cap_ms", *BACKOFF_RANGE_MS),
    SettingRange("auth_attempts", *ATTEMPTS_RANGE, unset="the policy's retries + 1"),
    SettingRange("token_refresh_ms", *TIMEOUT_RANGE_MS),
    SettingRange("watchdog_ms", *PERIOD_RANGE_MS),
    SettingRange("outbox_poll_ms", *PERIOD_RANGE_MS),
    SettingRange("jitter_seed", None, None, unset="derived from the device name"),
)


def _quotable(text: str) -> bool:
    """Fits inside a quoted AT argument: printable ASCII, no quote, no backslash.

    C: settings_quotable()."""
    return all(0x20 <= ord(c) < 0x7F and c not in '"\\' for c in text)


def topic_filter_problem(topic: str) -> str | None:
    """Why `topic` cannot be subscribed to (None: it can): it travels in a quoted AT string,
    is absolute (Alibaba Cloud's topics all start with `/`), and an MQTT wildcard is a whole
    level (`+` anywhere, `#` the last one). C: settings_topic_ok()."""
    if not topic or len(topic) > payload.MAX_TOPIC or not _quotable(topic):
        return f"must be 1-{payload.MAX_TOPIC} printable ASCII characters without quotes"
    if not topic.startswith("/"):
        return "must be absolute (start with /)"
    return wildcard_problem(topic)


def wildcard_problem(topic: str) -> str | None:
    """Why the MQTT wildcards of a topic filter are misplaced (None: they are not).

    C: settings_wildcards_ok()."""
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if "+" in level and level != "+":
            return "'+' must be a whole level (a/+/b)"
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return "'#' must be the whole last level (a/b/#)"
    return None
