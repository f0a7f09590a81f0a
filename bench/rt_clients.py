"""The two ends of the round-trip benchmark, as a script (see bench/round_trip.py).

    python bench/rt_clients.py responder FD
    python bench/rt_clients.py CLIENT PTY_PATH COUNT

CLIENT: select|airfsm|channel|linereader|gsmmodem.

Run as a plain script, not as part of the `bench` package, because the peers' clients run under
the bench-only venv's interpreter, which has pyserial and python-gsmmodem-new but not airfsm:
each client imports what it needs inside its own function. A client prints one JSON object,
`{"us": <mean wall µs per round trip>, "cpu_us": <mean CPU µs of the client per round trip>}`,
after a warm-up of WARMUP round trips.
"""

from __future__ import annotations

import json
import os
import select
import sys
import time
import tty
from collections.abc import Callable

WARMUP = 50
ANSWER = b"\r\nOK\r\n"


def responder(fd: int) -> None:
    """The minimal module: answer `OK` to every CR, no echo, as fast as it can."""
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:
            return  # the benchmark closed the pty
        if not data:
            return
        count = data.count(b"\r")
        if count:
            os.write(fd, ANSWER * count)


def client_select(path: str) -> Callable[[], None]:
    """By hand: a raw fd, one write, select() and read until `OK\\r\\n` is in."""
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    tty.setraw(fd)

    def round_trip() -> None:
        os.write(fd, b"AT\r")
        buf = b""
        while b"OK\r\n" not in buf:
            if not select.select([fd], [], [], 1.0)[0]:
                raise RuntimeError("select loop: no answer within 1 s")
            buf += os.read(fd, 512)

    return round_trip


def client_airfsm(path: str) -> Callable[[], None]:
    """airfsm's AT channel over airfsm's pyserial port, read as the controller reads: select()
    on the port, then read 512-byte chunks until the port is empty, feeding each."""
    from airfsm.core.at import AtChannel, AtResponse
    from airfsm.host.clock import monotonic_ms
    from airfsm.host.serial import open_port

    port = open_port(path, 115200)
    fd = port.fileno()
    done = [False]

    def on_response(_resp: AtResponse) -> None:
        done[0] = True

    channel = AtChannel(port.write, on_response, lambda _urc, _line, _data: None)

    command = bytearray(b"AT\r")  # with room for the CR the channel puts there
    buf = bytearray(512)

    def round_trip() -> None:
        done[0] = False
        channel.send(command, 2, monotonic_ms(), 1_000)
        while not done[0]:
            select.select([fd], [], [], 1.0)
            now = monotonic_ms()
            while True:
                n = port.read(buf, len(buf))
                if n <= 0:
                    break
                channel.feed(buf, now, n)

    return round_trip


def client_channel(path: str) -> Callable[[], None]:
    """airfsm's AT channel alone: the select loop's raw fd and reads (no pyserial), each read
    fed to the channel. What the channel itself adds to the hand-written loop."""
    from airfsm.core.at import AtChannel, AtResponse

    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    tty.setraw(fd)
    done = [False]

    def on_response(_resp: AtResponse) -> None:
        done[0] = True

    channel = AtChannel(lambda data: os.write(fd, data), on_response,
                        lambda _urc, _line, _data: None)
    command = bytearray(b"AT\r")  # with room for the CR the channel puts there
    buf = bytearray(512)

    def round_trip() -> None:
        done[0] = False
        channel.send(command, 2, 0, 1_000)
        while not done[0]:
            if not select.select([fd], [], [], 1.0)[0]:
                raise RuntimeError("channel on the fd: no answer within 1 s")
            channel.feed(buf, 0, os.readv(fd, [buf]))

    return round_trip


def client_linereader(path: str) -> Callable[[], None]:
    """pyserial's own: `serial.threaded.ReaderThread` with a `LineReader` protocol."""
    import threading

    import serial
    from serial.threaded import LineReader, ReaderThread

    got_ok = threading.Event()

    class Lines(LineReader):  # type: ignore[misc]
        def handle_line(self, line: str) -> None:
            if line == "OK":
                got_ok.set()

    ser = serial.Serial(path, 115200, timeout=1)
    reader = ReaderThread(ser, Lines)
    reader.start()
    _, protocol = reader.connect()

    def round_trip() -> None:
        got_ok.clear()
        protocol.write_line("AT")
        if not got_ok.wait(5):
            raise RuntimeError("LineReader: no OK within 5 s")

    return round_trip


def client_gsmmodem(path: str) -> Callable[[], None]:
    """python-gsmmodem-new: its serial layer opened (no modem initialisation sequence), then
    `GsmModem.write("AT")`, which sends `AT\\r` and waits for the final result code."""
    from gsmmodem.modem import GsmModem
    from gsmmodem.serial_comms import SerialComms

    modem = GsmModem(path, 115200)
    SerialComms.connect(modem)  # GsmModem.connect would also run ATZ, ATE0, AT+CMEE ...

    def round_trip() -> None:
        modem.write("AT", timeout=5)

    return round_trip


CLIENTS: dict[str, Callable[[str], Callable[[], None]]] = {
    "select": client_select,
    "airfsm": client_airfsm,
    "channel": client_channel,
    "linereader": client_linereader,
    "gsmmodem": client_gsmmodem,
}


def run_client(kind: str, path: str, count: int) -> tuple[float, float]:
    """Mean wall time and mean CPU time of this process (all threads) per round trip, µs."""
    round_trip = CLIENTS[kind](path)
    for _ in range(WARMUP):
        round_trip()
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        round_trip()
    return ((time.perf_counter() - start) / count * 1e6,
            (time.process_time() - cpu) / count * 1e6)


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "responder":
        responder(int(argv[1]))
        return 0
    if len(argv) == 3 and argv[0] in CLIENTS:
        us, cpu_us = run_client(argv[0], argv[1], int(argv[2]))
        print(json.dumps({"us": us, "cpu_us": cpu_us}), flush=True)
        os._exit(0)  # the peers' reader threads may not stop on their own
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
