"""Every enum of the tick path, in one place. C twin: the enums of
`port/c/generated/airfsm_table.h`.

The tick deals in small integers only: a state, a trigger, an outcome, the reason a step failed
and one bounded number that goes with it. Text is made from these codes at the edge (the host's
`airfsm.host.reasons`, the generated C name tables), never in the tick. Each enum below is a C
`typedef enum`; the values are part of the C port's ABI (the generated header and status files
carry them), so members are only ever added at the end.
"""

from __future__ import annotations

from enum import IntEnum


class State(IntEnum):
    """The states of the connection machine (`airfsm.core.table.MACHINE` has one row each)."""

    AUTOBAUD = 0
    VERSION_CHECK = 1
    ATTACH = 2
    BEARER = 3
    HTTP_AUTH = 4
    MQTT_CONNECT = 5
    ONLINE = 6
    FAILED = 7
    # Dynamic registration ("one type, one secret"): with a ProductSecret and no DeviceSecret,
    # between BEARER and HTTP_AUTH. Numbered last (the values are ABI), drawn in flow order.
    PROVISION = 8


class Trigger(IntEnum):
    """The events of the machine: what makes it change state."""

    DONE = 0  # every step of the state passed: go to the next state
    RETRY = 1  # a step failed and attempts are left: run the state again after backoff
    EXHAUSTED = 2  # attempts used up: escalate
    FATAL = 3  # nothing can help (old firmware, credentials rejected for good, module mute)
    MQTT_LOST = 4  # CLOSED, MQTT status 0/2, a silent module in ONLINE
    BEARER_LOST = 5  # +CGATT: 0, PDP deactivated, bearer closed
    REBOOTED = 6  # RDY: the module restarted and lost all its state
    TOKEN_REJECTED = 7  # MCONNECT refused (or the token is too old): fetch a fresh one
    WATCHDOG = 8  # not ONLINE for too long: reset the module
    PORT_LOST = 9  # the serial port vanished (USB unplugged) and was reopened
    HARDWARE_RESET = 10  # retries used up, the RESET pin was pulsed: start the state over
    # The branches of a state (`table.Branch`): taken instead of DONE or EXHAUSTED when their
    # condition holds, each an edge of its own in the table, the diagrams and the C header.
    REGISTER = 11  # BEARER done, no DeviceSecret yet: register it (PROVISION) first
    DIRECT_SIGN = 12  # BEARER / PROVISION done, auth = mqtt-sign: straight to MQTT_CONNECT
    SIGN_EXHAUSTED = 13  # MQTT_CONNECT exhausted with mqtt-sign: no HTTP_AUTH to go back to


class Outcome(IntEnum):
    """A step's verdict on its answer (the judge's first return value)."""

    PASS = 0  # next step
    NOT_YET = 1  # send the same step again after its poll interval
    FAIL = 2  # retry the state after backoff, then escalate
    REJECTED = 3  # like FAIL, but when retries run out the credentials are wrong: FAILED
    FATAL = 4  # FAILED at once: no retry can help


class Check(IntEnum):
    """How a step's answer is judged (the `switch` of `airfsm.core.judge`)."""

    OK = 0  # final OK passes, anything else fails
    ANY = 1  # clean-up: any final code, even a timeout, passes
    VERSION = 2  # firmware version >= MIN_FIRMWARE, read from either AT+CGMR form
    SIM_READY = 3  # +CPIN: READY; SIM busy / not inserted: not yet
    SIGNAL = 4  # +CSQ: informational, always passes once answered
    ATTACHED = 5  # +CGATT: 1; +CGATT: 0: not yet
    BEARER_OPEN = 6  # OK, or ERROR because the bearer is already open: the query decides
    BEARER_QUERY = 7  # +SAPBR: 1,1,"ip"; status 0 (connecting): not yet
    HTTP_STATUS = 8  # +HTTPACTION: 1,200,<len>
    AUTH_REPLY = 9  # +HTTPREAD body: code 200 with iotId and iotToken
    MQTT_STATUS = 10  # +MQTTSTATU :1
    # Informational: what the answer says is recorded; any answer, even none, passes.
    IMEI = 11  # AT+CGSN: `<imei>` (or `+CGSN: <imei>`)
    ICCID = 12  # AT+CCID: `<iccid>`, `+CCID: <iccid>` or `+ICCID: <iccid>`
    OPERATOR = 13  # AT+COPS?: +COPS: <mode>,<format>,"<oper>",<AcT>
    REGISTRATION = 14  # AT+CEREG?: +CEREG: <n>,<stat>
    REGISTER_REPLY = 15  # +HTTPREAD body of /auth/register/device: code 200 with deviceSecret


class Cond(IntEnum):
    """When a step runs at all."""

    ALWAYS = 0
    RESET_REQUESTED = 1  # only when the edge into the state asked for a module reset
    RETRYING = 2  # only when the state runs again after a failure (attempt 2 and later)
    # The conditions of a state's branches (`table.Branch`).
    UNREGISTERED = 3  # a ProductSecret and no DeviceSecret: dynamic registration is due
    DIRECT_SIGN = 4  # Settings.auth_mode is MQTT_SIGN: no HTTPS pre-auth


class AuthMode(IntEnum):
    """How the device proves itself to the MQTT broker (Settings.auth_mode)."""

    HTTPS = 0  # HTTP_AUTH: POST /auth/devicename, MQTT with the iotId / iotToken it returns
    # Direct MQTT sign: clientId `id|securemode=2,signmethod=...,timestamp=...|`, username
    # `dn&pk`, password the HMAC of the device's parameters (no HTTP round trip)
    MQTT_SIGN = 1


class AtResult(IntEnum):
    """How the AT command in flight ended (`airfsm.core.at`)."""

    OK = 0
    ERROR = 1  # ERROR, or ERROR: <n>
    CME_ERROR = 2  # +CME ERROR: <n> or +CMS ERROR: <n>
    TIMEOUT = 3  # no final code before the deadline
    PROMPT = 4  # DOWNLOAD or `>`: the command waits for its raw data (not final)


class UrcKind(IntEnum):
    """What a line of the URC table (`airfsm.core.table.URCS`) is to the controller."""

    NOTICE = 0  # registration, state reports: logged, nothing else
    BOOT = 1  # printed while the module starts (RDY also raises REBOOTED)
    LINK = 2  # a link loss: raises the row's trigger
    STEP = 3  # awaited by a step after its OK (CONNECT OK, CONNACK OK, SUBACK, +HTTPACTION:)
    PUBACK = 4  # the broker acknowledged a QoS1 publish
    MSUB = 5  # an inbound message, or a cache-mode notice
    FINAL = 6  # a bare final code that reports a command's outcome after its OK (MCONNECT)


class Purpose(IntEnum):
    """What the command in flight is for, so its answer goes to the right handler."""

    NONE = 0
    STEP = 1  # a step of the current state's script
    PUBLISH = 2  # AT+MPUB of the outbox head
    PROBE = 3  # AT+MQTTSTATU liveness probe
    MODE = 4  # AT+MQTTMODE switch for hex payloads
    DISCARD = 5  # sent in a state we have since left: ignore its answer
    STOP = 6  # AT+MDISCONNECT on shutdown
    KEEPALIVE = 7  # AT+MSUB re-sent to keep an old firmware's MQTT session alive
    CACHE_READ = 8  # AT+MQTTMSGGET after a cache-mode notice
    SIGNAL = 9  # AT+CSQ: the signal read again in ONLINE, after each liveness probe


class Phase(IntEnum):
    """Where the current step is."""

    IDLE = 0  # ready to send the step at step_index
    WAIT_FINAL = 1  # command in flight
    WAIT_URC = 2  # OK received, waiting for the wanted URC until urc_deadline
    WAIT_UNTIL = 3  # backoff or poll interval: nothing to do until resume_at


class PubPhase(IntEnum):
    """Where the publish of the outbox head is."""

    NONE = 0  # nothing in flight
    WAIT_OK = 1  # AT+MPUB sent
    WAIT_PUBACK = 2  # QoS1: OK received, PUBACK due by puback_deadline


class KeepalivePhase(IntEnum):
    """Where the keepalive of an old firmware's MQTT session is."""

    NONE = 0  # nothing in flight
    WAIT_OK = 1  # AT+MSUB (SESSION_KEEPALIVE) sent
    WAIT_SUBACK = 2  # OK received, SUBACK due by keepalive_deadline


class FailReason(IntEnum):
    """Why the machine is in FAILED: what the gateway's exit code says."""

    NONE = 0
    FIRMWARE = 1  # older than V409: cannot talk to Alibaba Cloud
    CREDENTIALS = 2  # the auth server keeps rejecting the triple
    NO_RESPONSE = 3  # the module never answered AT
    INTERNAL = 4  # a bug: an exception inside tick()
    REGISTRATION = 5  # dynamic registration refused (already registered, or not enabled)


class Reason(IntEnum):
    """Why something failed, with one bounded integer `detail` beside it (C: int32_t).

    The comment of each member says what its detail is. `airfsm.host.reasons.describe` turns a
    (reason, detail) pair into the words an operator reads.
    """

    NONE = 0
    # The answer to a step's command. detail: the number in the answer, -1 when it has none.
    NO_ANSWER = 1  # no final code before the step's timeout (detail 0)
    ERROR = 2  # ERROR, or `ERROR: <detail>` (how the HTTP commands refuse)
    CME_ERROR = 3  # +CME ERROR: <detail> (or +CMS ERROR)
    URC_TIMEOUT = 4  # OK, then the wanted URC did not come (detail: the wait, ms)
    FAILING_URC = 5  # a URC that fails the step came (detail: its index in URCS)
    # What a check found in the answer.
    NO_VERSION = 6  # no firmware version in the AT+CGMR answer
    FIRMWARE_TOO_OLD = 7  # detail: the version number (409 for V409)
    SIM_NOT_READY = 8  # detail: the +CME ERROR number, -1 when +CPIN said something else
    NOT_ATTACHED = 9  # +CGATT: 0
    BEARER_CONNECTING = 10  # +SAPBR: 1,0
    BEARER_STATUS = 11  # detail: the +SAPBR status (-1: unreadable)
    HTTP_STATUS = 12  # detail: the HTTP status of +HTTPACTION
    AUTH_REPLY_TRUNCATED = 13  # bytes of the +HTTPREAD body were lost on the UART
    AUTH_REPLY_UNUSABLE = 14  # detail: the reply's code (-1: not the JSON expected)
    AUTH_REJECTED = 15  # detail: the auth server's code
    MQTT_STATUS = 16  # detail: the +MQTTSTATU status (-1: none)
    UNKNOWN_CHECK = 17  # detail: the Check value (a table the controller does not know)
    # Why the machine gave up (with FailReason).
    CREDENTIALS_REJECTED = 18  # detail: the auth server's last code
    MODULE_MUTE = 19  # detail: RESET-pin pulses tried
    INTERNAL_ERROR = 20  # an exception inside tick() (the log has its text)
    # Why a publish attempt failed. detail: the number in the answer, -1 when it has none.
    MPUB_UNANSWERED = 21
    MPUB_ERROR = 22
    MPUB_CME_ERROR = 23
    HEX_MODE_UNANSWERED = 24  # AT+MQTTMODE=1
    HEX_MODE_ERROR = 25
    HEX_MODE_CME_ERROR = 26
    TEXT_MODE_UNANSWERED = 27  # AT+MQTTMODE=0
    TEXT_MODE_ERROR = 28
    TEXT_MODE_CME_ERROR = 29
    NO_PUBACK = 30  # detail: the wait, ms
    SESSION_ENDED = 31  # the MQTT session ended before the PUBACK
    # Why a message can never be sent (it becomes a dead letter at once).
    BAD_TOPIC = 32  # detail: the topic's length
    BAD_QOS = 33  # detail: the QoS asked for
    PAYLOAD_UNSENDABLE = 34  # detail: the payload's length
    # Dynamic registration (PROVISION). detail: the server's code (-1: not the JSON expected)
    REGISTER_REPLY_UNUSABLE = 35  # code 200 without a usable deviceSecret, or no JSON
    REGISTER_REJECTED = 36  # the register server said no (e.g. the device is already active)
    REGISTRATION_REFUSED = 37  # why FAILED: the register server's last code
    SIGN_REFUSED = 38  # why FAILED: the broker kept refusing the direct sign (detail: refusals)


class LogLevel(IntEnum):
    """Levels of the log hook; the numbers are Python `logging`'s, so a host maps them 1:1."""

    DEBUG = 10
    INFO = 20
    WARNING = 30
    ERROR = 40


class LogEvent(IntEnum):
    """What the controller reports through its log hook (`airfsm.core.hal.LogHook`).

    The host renders each as the structlog event of the same name in lower case
    (`airfsm.host.log`). The comment says what the hook's `a`, `b`, `c` and `data` carry; what
    is not there is read from the controller passed along (its state, attempt, ...).
    """

    # data: a secret never to be printed; a = 1: kept for good (the DeviceSecret, the
    # ProductSecret, a DeviceSecret dynamic registration issued), 0: a sign, an iotToken or a
    # direct-sign MQTT password (the host keeps the newest few)
    SECRET = 0
    STATE = 1  # a: source state, b: trigger, c: ms spent in the source state (saturating)
    STEP = 2  # a: Outcome, b: Reason, c: detail (of the current step)
    AT_TX = 3  # data: the command sent
    AT_TIMEOUT = 4  # data: the command that got no answer
    URC = 5  # data: a URC line nobody acted on
    LINK_URC = 6  # a: its index in URCS, data: the line
    MSUB_UNPARSED = 7  # data: a +MSUB line of no known shape
    DOWNLINK_CACHED = 8  # a: the module's cache slot
    PAYLOAD_TRUNCATED = 9  # a: declared length, b: bytes received, data: the header line
    INBOUND = 10  # a: payload length, data: the topic
    PROBE = 11  # a: the +MQTTSTATU status
    MODULE_SILENT = 12  # a: commands unanswered in a row
    KEEPALIVE_REFUSED = 13  # a: AtResult, b: the number in the answer
    KEEPALIVE_UNANSWERED = 14  # a: the wait for SUBACK, ms
    CACHE_READ_FAILED = 15  # a: AtResult, b: the number in the answer
    PUBLISH_FAILED = 16  # a: message id, b: attempt, c: attempts allowed
    PUBLISH_DEAD = 17  # a: message id, b: attempts, data: the topic
    MQTT_MODE_REFUSED = 18  # a: AtResult, b: the number in the answer, c: failures in a row
    OUTBOX_UNAVAILABLE = 19  # a: OutboxCall, b: failures in a row, c: backoff ms (the store: why)
    OUTBOX_AVAILABLE = 20  # a: failures before it worked again
    PORT_LOST = 21  # (the port says why)
    HARDWARE_RESET = 22  # a: pulse number, b: pulses allowed
    HARDWARE_RESET_FAILED = 23  # data: the error
    ON_STATE_FAILED = 24  # data: the error of the application's callback
    ON_MESSAGE_FAILED = 25  # data: the error of the application's callback
    INTERNAL_ERROR = 26  # data: the exception (a bug: the C twin has none)
    # data: a line received for the command in flight (an info line, at its final code) or a
    # URC, as it came; a final code itself has no data: a is its AtResult, b its number (-1)
    AT_RX = 27
    PUBLISH_SENT = 28  # a: message id, b: attempt, c: attempts allowed, data: the topic
    PUBLISH_ACKED = 29  # a: message id, b: its QoS (1: by PUBACK, 0: by the OK of AT+MPUB)
    # PROVISION passed: the DeviceSecret the register server issued (given to the `on_registered`
    # hook, which stores it; never printed: it was emitted as a SECRET first). a: 1 if the hook
    # took it, 0 if it failed (data: its error)
    REGISTERED = 30


class OutboxStatus(IntEnum):
    """What an outbox call returns (C: airfsm_outbox_status_t): the tick's outbox never raises.

    UNAVAILABLE: the store cannot do it now (locked by another process, disk full, read-only);
    nothing changed, the controller backs off and asks again. EMPTY: `peek` found nothing."""

    OK = 0
    EMPTY = 1
    UNAVAILABLE = 2


class OutboxCall(IntEnum):
    """Which outbox call was refused (the `a` of LogEvent.OUTBOX_UNAVAILABLE)."""

    PEEK = 0
    MARK_ATTEMPT = 1
    ACK = 2
    DEAD_LETTER = 3


class Placeholder(IntEnum):
    """A `{name}` of a command template: the value the controller puts there.

    `airfsm.core.table.PLACEHOLDER_MAX` bounds each one; a value longer than that is never
    sent (the command is refused whole).
    """

    APN = 0
    AUTH_URL = 1
    CONTENT_TYPE = 2
    BODY_LEN = 3
    BODY_WINDOW_MS = 4
    CLIENT_ID = 5
    IOT_ID = 6
    IOT_TOKEN = 7
    MQTT_HOST = 8
    MQTT_PORT = 9
    KEEPALIVE_S = 10
    SUB_TOPIC = 11
    SUB_QOS = 12
    # AT+MPUB (table.MPUB_TEMPLATE): the outbox head's topic, its QoS, and its payload as it
    # travels - escaped (text mode) or as hex digits (hex mode): `payload.put_mpub` writes them.
    TOPIC = 13
    QOS = 14
    MESSAGE = 15
    REGISTER_URL = 16  # PROVISION: https://iot-auth.<region>.aliyuncs.com/auth/register/device
