"""Gateway configuration: file < AIRFSM_* environment < flags, strict keys and values, no secret
in any message or repr."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from airfsm.host.config import (
    ConfigError,
    GatewayConfig,
    env_var,
    flag,
    load_config,
    load_config_sources,
)

SECRET = "y7MTCG6Gk33Ux26bbWSpANl4OaI0bg5Q"
REQUIRED_TOML = f"""
port = "/dev/ttyUSB0"
product_key = "b0FMK1Ga5cp"
device_name = "862991419835241"
device_secret = "{SECRET}"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "airfsm.toml"
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path: Path | None, env: dict[str, str] | None = None,
             overrides: dict[str, Any] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, env or {}, overrides or {})
    message = str(info.value)
    assert "\n" not in message  # one line
    assert SECRET not in message
    return message


def test_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, REQUIRED_TOML), {}, {})
    assert cfg == GatewayConfig(port="/dev/ttyUSB0", product_key="b0FMK1Ga5cp",
                                device_name="862991419835241", device_secret=SECRET)
    assert (cfg.region, cfg.apn, cfg.baud, cfg.client_id, cfg.sign_method) == \
        ("cn-shanghai", "CMIOT", 115200, None, "hmacmd5")
    assert (cfg.data_dir, cfg.log_level, cfg.inbox, cfg.outbox_capacity) == \
        (None, "info", None, 10_000)
    assert (cfg.keepalive_s, cfg.watchdog_s, cfg.liveness_s, cfg.shutdown_grace_s,
            cfg.timeout_s) == (120, 600, 60, 5.0, None)
    assert cfg.effective_client_id == "862991419835241"


def test_every_setting_from_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, REQUIRED_TOML + """
region = "ap-southeast-1"
apn = "internet.example"
baud = 921600
client_id = "client-1"
sign_method = "hmacsha256"
data_dir = "~/airfsm-state"
log_level = "debug"
inbox = "stdout"
outbox_capacity = 50
inbox_capacity = 60
keepalive_s = 120
watchdog_s = 900
liveness_s = 30
shutdown_grace_s = 2.5
timeout_s = 90
""")
    cfg = load_config(path, {}, {})
    assert cfg.region == "ap-southeast-1" and cfg.apn == "internet.example"
    assert cfg.baud == 921600 and cfg.client_id == "client-1"
    assert cfg.effective_client_id == "client-1"
    assert cfg.sign_method == "hmacsha256" and cfg.log_level == "debug"
    assert cfg.data_dir == Path("~/airfsm-state").expanduser() and cfg.data_dir.is_absolute()
    assert cfg.inbox == "stdout"
    assert (cfg.outbox_capacity, cfg.inbox_capacity) == (50, 60)
    assert (cfg.keepalive_s, cfg.watchdog_s, cfg.liveness_s) == (120, 900, 30)
    assert cfg.shutdown_grace_s == 2.5 and cfg.timeout_s == 90.0


def test_every_setting_from_the_environment() -> None:
    env = {env_var(k): v for k, v in {
        "port": "socket://localhost:7000", "product_key": "pk1", "device_name": "dn_1",
        "device_secret": SECRET, "region": "us-west-1", "apn": "cmnet", "baud": "9600",
        "client_id": "c1", "sign_method": "hmacsha1", "data_dir": "/srv/airfsm",
        "log_level": "warning", "inbox": "stdout", "outbox_capacity": "7",
        "inbox_capacity": "8", "keepalive_s": "60", "watchdog_s": "120", "liveness_s": "10",
        "puback_timeout_s": "4", "silence_limit": "6", "reset_command": "gpioset x 17=0",
        "shutdown_grace_s": "1.5", "timeout_s": "12.5", "publish_attempts": "9",
        "subscribe": "get, /sys/{pk}/{dn}/rrpc/request/+", "bridge": "mqtt://127.0.0.1:1884",
        "bridge_prefix": "site/{dn}", "metrics_textfile": "/tmp/airfsm.prom",
        "metrics_listen": "127.0.0.1:9464", "product_secret": "pr0duct-secret",
        "instance_id": "iot-06z00ax1o4qtest", "auth": "mqtt-sign", "thing_model": "yes",
        "rrpc": "1", "rrpc_timeout_s": "5", "ntp": "on", "ntp_interval_s": "3600"}.items()}
    assert set(env) == {env_var(f.name) for f in fields(GatewayConfig)}  # every key covered
    cfg = load_config(None, env, {})
    assert cfg.port == "socket://localhost:7000" and cfg.device_secret == SECRET
    assert cfg.baud == 9600 and cfg.data_dir == Path("/srv/airfsm")
    assert (cfg.outbox_capacity, cfg.inbox_capacity, cfg.keepalive_s) == (7, 8, 60)
    assert cfg.shutdown_grace_s == 1.5 and cfg.timeout_s == 12.5 and cfg.inbox == "stdout"
    assert (cfg.puback_timeout_s, cfg.silence_limit, cfg.publish_attempts) == (4, 6, 9)
    assert cfg.reset_command == "gpioset x 17=0"
    # the Alink features add what they need, each topic once (rrpc's was given already)
    assert cfg.subscriptions() == (
        "/pk1/dn_1/get", "/sys/pk1/dn_1/rrpc/request/+", "/sys/pk1/dn_1/thing/event/+/post_reply",
        "/sys/pk1/dn_1/thing/service/#", "/ext/ntp/pk1/dn_1/response")
    assert (cfg.thing_model, cfg.rrpc, cfg.ntp) == (True, True, True)
    assert (cfg.rrpc_timeout_s, cfg.ntp_interval_s) == (5, 3600)
    assert cfg.bridge_address() == ("127.0.0.1", 1884) and cfg.bridge_prefix == "site/{dn}"
    assert cfg.metrics_textfile == Path("/tmp/airfsm.prom")
    assert cfg.metrics_listen == "127.0.0.1:9464"
    assert cfg.product_secret == "pr0duct-secret" and cfg.instance_id == "iot-06z00ax1o4qtest"
    assert cfg.auth == "mqtt-sign"


def test_switches_take_toml_booleans_and_words_and_name_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, REQUIRED_TOML + "thing_model = true\nntp = false\n")
    cfg = load_config(path, {"AIRFSM_RRPC": "off"}, {})
    assert (cfg.thing_model, cfg.ntp, cfg.rrpc) == (True, False, False)
    for bad in ("maybe", "2"):
        with pytest.raises(ConfigError, match="'rrpc': expected true or false"):
            load_config(path, {"AIRFSM_RRPC": bad}, {})
    with pytest.raises(ConfigError, match="'ntp': expected true or false"):
        load_config(write(tmp_path, REQUIRED_TOML + 'ntp = "sure"\n'), {}, {})
    with pytest.raises(ConfigError, match="'rrpc_timeout_s'"):
        load_config(write(tmp_path, REQUIRED_TOML), {"AIRFSM_RRPC_TIMEOUT_S": "9"}, {})
    # seven of your own and the thing model's two: more than the module's eight
    topics = ", ".join(f'"t{i}"' for i in range(7))
    with pytest.raises(ConfigError, match="at most 8 topics together"):
        load_config(write(tmp_path, REQUIRED_TOML + f"subscribe = [{topics}]\n"),
                    {"AIRFSM_THING_MODEL": "true"}, {})


def test_precedence_file_env_flags(tmp_path: Path) -> None:
    path = write(tmp_path, REQUIRED_TOML + 'baud = 9600\nregion = "cn-beijing"\n')
    assert load_config(path, {}, {}).baud == 9600
    env = {"AIRFSM_BAUD": "19200", "AIRFSM_REGION": "cn-hangzhou"}
    cfg = load_config(path, env, {})
    assert (cfg.baud, cfg.region) == (19200, "cn-hangzhou")
    cfg = load_config(path, env, {"baud": 38400, "region": None})  # None: flag not given
    assert (cfg.baud, cfg.region) == (38400, "cn-hangzhou")
    cfg = load_config(path, env, {"region": "eu-central-1"})
    assert (cfg.baud, cfg.region) == (19200, "eu-central-1")


def test_secret_from_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, REQUIRED_TOML)
    cfg = load_config(path, {"AIRFSM_DEVICE_SECRET": "fromEnvSecret123"}, {})
    assert cfg.device_secret == "fromEnvSecret123"


def test_empty_environment_variable_counts_as_unset(tmp_path: Path) -> None:
    path = write(tmp_path, REQUIRED_TOML + "baud = 9600\n")
    assert load_config(path, {"AIRFSM_BAUD": "", "AIRFSM_UNRELATED": "x"}, {}).baud == 9600


def test_optional_settings_can_be_switched_off(tmp_path: Path) -> None:
    path = write(tmp_path, REQUIRED_TOML + 'client_id = ""\ndata_dir = ""\ninbox = "none"\n'
                 'timeout_s = "forever"\n')
    cfg = load_config(path, {}, {})
    assert (cfg.client_id, cfg.data_dir, cfg.inbox, cfg.timeout_s) == (None, None, None, None)
    cfg = load_config(path, {"AIRFSM_INBOX": "stdout", "AIRFSM_TIMEOUT_S": "30"}, {})
    assert cfg.inbox == "stdout" and cfg.timeout_s == 30.0


def test_unknown_key_in_file(tmp_path: Path) -> None:
    path = write(tmp_path, REQUIRED_TOML + "foo = 1\n")
    assert error_of(path) == f"unknown key 'foo' in {path}"


def test_hyphenated_and_misspelt_keys_get_a_hint(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, REQUIRED_TOML + "keepalive-s = 60\n"))
    assert "unknown key 'keepalive-s'" in message and "did you mean 'keepalive_s'" in message
    message = error_of(write(tmp_path, REQUIRED_TOML + "keepalive = 60\n"))
    assert "unknown key 'keepalive'" in message and "keepalive_s" in message


def test_nested_table_is_an_unknown_key(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, REQUIRED_TOML + "[mqtt]\nhost = 'x'\n"))
    assert "unknown key 'mqtt'" in message


def test_unknown_override_is_refused(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, REQUIRED_TOML), overrides={"bogus": 1})
    assert "unknown key 'bogus'" in message


def test_hyphenated_override_is_accepted(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, REQUIRED_TOML), {}, {"keepalive-s": 90})
    assert cfg.keepalive_s == 90


def test_bad_value_in_file_names_key_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, REQUIRED_TOML + 'baud = "fast"\n')
    message = error_of(path)
    assert message.startswith("bad value for 'baud': expected an integer, got 'fast'")
    assert str(path) in message


def test_bad_value_in_environment_names_the_variable() -> None:
    env = {"AIRFSM_PORT": "/dev/x", "AIRFSM_PRODUCT_KEY": "pk", "AIRFSM_DEVICE_NAME": "dn",
           "AIRFSM_DEVICE_SECRET": SECRET, "AIRFSM_BAUD": "fast"}
    message = error_of(None, env)
    assert "bad value for 'baud': expected an integer, got 'fast'" in message
    assert "AIRFSM_BAUD" in message


def test_bad_flag_value_names_the_flag(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, REQUIRED_TOML), overrides={"keepalive_s": 5})
    assert "bad value for 'keepalive_s'" in message and "30..240" in message
    assert "--keepalive-s" in message


@pytest.mark.parametrize(("line", "key"), [
    ("baud = 12345", "baud"),
    ("baud = true", "baud"),
    ("baud = 115200.0", "baud"),
    ("keepalive_s = 29", "keepalive_s"),
    ("keepalive_s = 1201", "keepalive_s"),
    ('sign_method = "md5"', "sign_method"),
    ('log_level = "verbose"', "log_level"),
    ('region = "CN_Shanghai"', "region"),
    ('apn = "cm\\"net"', "apn"),
    ('inbox = "file"', "inbox"),
    ("outbox_capacity = 0", "outbox_capacity"),
    ("watchdog_s = 10", "watchdog_s"),
    ("liveness_s = 0", "liveness_s"),
    ("shutdown_grace_s = -1", "shutdown_grace_s"),
    ("timeout_s = 0", "timeout_s"),
    ("timeout_s = 2200000", "timeout_s"),  # past 2**31 ms: the deadline would wrap
    ('timeout_s = "soon"', "timeout_s"),
    ('client_id = "a b"', "client_id"),
    ('client_id = "' + "c" * 65 + '"', "client_id"),
    ("data_dir = 5", "data_dir"),
])
def test_bad_values_are_rejected_with_the_key_name(tmp_path: Path, line: str, key: str) -> None:
    assert f"bad value for '{key}'" in error_of(write(tmp_path, REQUIRED_TOML + line + "\n"))


@pytest.mark.parametrize(("line", "key"), [
    ("device_name = 862991419835241", "device_name"),  # unquoted: a TOML integer
    ('device_name = "dn/with/slash"', "device_name"),
    ('product_key = "pk\\"x"', "product_key"),
    ('port = ""', "port"),
])
def test_identity_values_are_checked(tmp_path: Path, line: str, key: str) -> None:
    text = "\n".join(x for x in REQUIRED_TOML.splitlines() if not x.startswith(key + " "))
    assert f"bad value for '{key}'" in error_of(write(tmp_path, text + "\n" + line + "\n"))


def test_range_edges_are_accepted(tmp_path: Path) -> None:
    for keepalive in (30, 240):
        cfg = load_config(write(tmp_path, REQUIRED_TOML), {}, {"keepalive_s": keepalive})
        assert cfg.keepalive_s == keepalive


def test_keepalive_above_the_vendors_limit_is_refused_citing_the_advice(tmp_path: Path) -> None:
    for keepalive in (241, 300, 1200):
        message = error_of(write(tmp_path, REQUIRED_TOML), overrides={"keepalive_s": keepalive})
        assert "\n" not in message
        assert "keepalive_s" in message and "vendor advises 120 s and at most 240 s" in message
        assert "NAT" in message


def test_missing_secret_names_key_flag_and_variable(tmp_path: Path) -> None:
    text = "\n".join(x for x in REQUIRED_TOML.splitlines() if "device_secret" not in x)
    message = error_of(write(tmp_path, text))
    assert "missing required setting 'device_secret'" in message
    assert "--device-secret" in message and "AIRFSM_DEVICE_SECRET" in message


def test_all_missing_settings_are_named() -> None:
    message = error_of(None, {"AIRFSM_DEVICE_SECRET": SECRET})
    for key in ("port", "product_key", "device_name"):
        assert f"'{key}'" in message and flag(key) in message and env_var(key) in message
    assert "'device_secret'" not in message


def test_toml_syntax_error_is_one_line_with_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, REQUIRED_TOML.replace(f'"{SECRET}"', f'"{SECRET}'))  # unterminated
    message = error_of(path)  # error_of also checks: one line, no secret
    assert str(path) in message and "line 5" in message and "TOML" in message


def test_missing_file(tmp_path: Path) -> None:
    message = error_of(tmp_path / "nope.toml")
    assert "nope.toml" in message and "not found" in message


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "airfsm.toml"
    path.write_bytes(b'port = "\xff"\n')
    assert "UTF-8" in error_of(path)


def test_secret_is_hidden_from_repr_and_public_dict(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, REQUIRED_TOML), {}, {})
    assert SECRET not in repr(cfg) and SECRET not in str(cfg) and SECRET not in f"{cfg}"
    assert "device_secret='***'" in repr(cfg) and "device_name='862991419835241'" in repr(cfg)
    public = cfg.public_dict()
    assert public["device_secret"] == "***" and public["port"] == "/dev/ttyUSB0"
    assert SECRET not in str(public)
    assert set(public) == {f.name for f in fields(GatewayConfig)}


@pytest.mark.parametrize("bad_secret", ["has space inside", "abc", "tab\there", 12345678])
def test_bad_secret_value_is_never_shown(tmp_path: Path, bad_secret: object) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, REQUIRED_TOML), {},
                    {"device_secret": bad_secret})
    message = str(info.value)
    assert "bad value for 'device_secret'" in message and "not shown" in message
    assert str(bad_secret) not in message


def test_direct_construction_validates() -> None:
    with pytest.raises(ConfigError, match="'baud'"):
        GatewayConfig("/dev/ttyUSB0", "pk", "dn", SECRET, baud="115200")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="'keepalive_s'"):
        GatewayConfig("/dev/ttyUSB0", "pk", "dn", SECRET, keepalive_s=5)
    cfg = GatewayConfig("/dev/ttyUSB0", "pk", "dn", SECRET,
                        data_dir="/tmp/x")  # type: ignore[arg-type]
    assert cfg.data_dir == Path("/tmp/x")
    assert cfg.data_dir_or_default() == Path("/tmp/x")


# ---------------------------------------------------------------------- issue 11 settings


def test_subscriptions_from_a_toml_array_with_wildcards_and_placeholders(tmp_path: Path) -> None:
    path = write(tmp_path, REQUIRED_TOML + 'subscribe = ["get", '
                 '"/sys/{pk}/{dn}/thing/service/property/set", "/sys/{pk}/{dn}/rrpc/request/+",'
                 ' "user/#"]\n')
    cfg = load_config(path, {}, {})
    assert cfg.subscriptions() == (
        "/b0FMK1Ga5cp/862991419835241/get",
        "/sys/b0FMK1Ga5cp/862991419835241/thing/service/property/set",
        "/sys/b0FMK1Ga5cp/862991419835241/rrpc/request/+",
        "/b0FMK1Ga5cp/862991419835241/user/#")
    default = load_config(write(tmp_path, REQUIRED_TOML), {}, {})
    assert default.subscriptions() == ("/b0FMK1Ga5cp/862991419835241/get",)


@pytest.mark.parametrize(("topics", "words"), [
    ('[]', "expected 1..8 topics"),
    ('["a/b+/c"]', "'+' must be a whole level"),
    ('["a/#/c"]', "'#' must be the whole last level"),
    ('["a\\"b"]', "without spaces, quotes or backslashes"),
    ('["/sys/{productKey}/x"]', "unknown placeholder"),
    ('["' + "x" * 200 + '"]', "expected 1..128 characters"),
    ('[1]', "an array of topic strings"),
    ('["a", "b", "c", "d", "e", "f", "g", "h", "i"]', "expected 1..8 topics"),
])
def test_bad_subscriptions_are_refused_naming_the_key(tmp_path: Path, topics: str,
                                                      words: str) -> None:
    message = error_of(write(tmp_path, REQUIRED_TOML + f"subscribe = {topics}\n"))
    assert "'subscribe'" in message and words in message


@pytest.mark.parametrize(("line", "key"), [
    ('bridge = "tcp://127.0.0.1:1883"', "bridge"),
    ('bridge = "mqtt://127.0.0.1:99999"', "bridge"),
    ('bridge_prefix = "/airfsm"', "bridge_prefix"),
    ('bridge_prefix = "airfsm/+"', "bridge_prefix"),
    ('metrics_listen = "9464"', "metrics_listen"),
])
def test_bad_bridge_and_metrics_settings_name_the_key(tmp_path: Path, line: str,
                                                      key: str) -> None:
    assert f"'{key}'" in error_of(write(tmp_path, REQUIRED_TOML + line + "\n"))


def test_the_secret_from_a_systemd_credential(tmp_path: Path) -> None:
    text = "\n".join(x for x in REQUIRED_TOML.splitlines() if "device_secret" not in x)
    path = write(tmp_path, text)
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "device_secret").write_text(SECRET + "\n")  # `echo` leaves a newline
    cfg, sources = load_config_sources(path, {"CREDENTIALS_DIRECTORY": str(creds)}, {})
    assert cfg.device_secret == SECRET
    assert sources["device_secret"] == f"credential {creds / 'device_secret'}"
    assert sources["port"] == f"file {path}" and sources["region"] == "default"
    # the environment still wins over a credential, as over the file
    env = {"CREDENTIALS_DIRECTORY": str(creds), "AIRFSM_DEVICE_SECRET": "fromEnvSecret123"}
    cfg, sources = load_config_sources(path, env, {"baud": "9600"})
    assert cfg.device_secret == "fromEnvSecret123"
    assert sources["device_secret"] == "env AIRFSM_DEVICE_SECRET"
    assert sources["baud"] == "flag --baud"
    # without it the message names the way in
    message = error_of(path, {"CREDENTIALS_DIRECTORY": str(tmp_path / "none")})
    assert "LoadCredential=" in message


def test_a_bad_credential_is_refused_without_showing_it(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "device_secret").write_bytes(b"has a space " + SECRET.encode())
    text = "\n".join(x for x in REQUIRED_TOML.splitlines() if "device_secret" not in x)
    message = error_of(write(tmp_path, text), {"CREDENTIALS_DIRECTORY": str(creds)})
    assert "'device_secret'" in message and "credential" in message


def test_the_longest_timeout_is_what_the_32_bit_clock_holds(tmp_path: Path) -> None:
    from airfsm.core.at import MAX_TIMEOUT_MS
    from airfsm.host.config import MAX_TIMEOUT_S

    assert MAX_TIMEOUT_S == MAX_TIMEOUT_MS // 1000  # one figure, kept in two places
    path = write(tmp_path, REQUIRED_TOML)
    assert load_config(path, {"AIRFSM_TIMEOUT_S": str(MAX_TIMEOUT_S)},
                       {}).timeout_s == MAX_TIMEOUT_S
    assert "timeout_s" in error_of(path, {"AIRFSM_TIMEOUT_S": str(MAX_TIMEOUT_S + 1)})


def test_a_product_secret_stands_in_for_the_device_secret() -> None:
    base = {"port": "/dev/ttyUSB0", "product_key": "pk1", "device_name": "dn_1"}
    cfg = load_config(None, {}, {**base, "product_secret": "pr0duct-secret"})
    assert cfg.device_secret == "" and cfg.product_secret == "pr0duct-secret"
    assert "pr0duct-secret" not in repr(cfg) and cfg.public_dict()["product_secret"] == "***"
    with pytest.raises(ConfigError, match="or give product_secret"):
        load_config(None, {}, base)


@pytest.mark.parametrize(("key", "value", "words"), [
    ("auth", "token", "expected one of https, mqtt-sign"),
    ("instance_id", "iot_06z", "expected 1-64 letters, digits and '-'"),
    ("product_secret", "ab", "at least 4 characters (value not shown)"),
])
def test_bad_values_of_the_cloud_keys_are_one_line(key: str, value: str, words: str) -> None:
    base = {"port": "/dev/ttyUSB0", "product_key": "pk1", "device_name": "dn_1",
            "device_secret": SECRET}
    with pytest.raises(ConfigError) as caught:
        load_config(None, {}, {**base, key: value})
    assert words in str(caught.value) and "\n" not in str(caught.value)
    if key == "product_secret":
        assert value not in str(caught.value)


def test_the_product_secret_may_be_a_systemd_credential(tmp_path: Path) -> None:
    (tmp_path / "product_secret").write_text("pr0duct-secret\n")
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path)}
    config, sources = load_config_sources(
        None, env, {"port": "/dev/ttyUSB0", "product_key": "pk1", "device_name": "dn_1"})
    assert config.product_secret == "pr0duct-secret" and config.device_secret == ""
    assert sources["product_secret"] == f"credential {tmp_path / 'product_secret'}"
