"""10,000 malformed requests get 10,000 errors while a well-formed client keeps being served."""

from __future__ import annotations

import json
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from raidd.control import ControlClient
from raidd.control.protocol import LINE_TOO_LONG
from tests.control.conftest import ServerFactory

SEED = 20261204
MALFORMED = 10_000
CONNECTIONS = 4
MAX_LINE = 4096

WRONG_TYPES: list[Any] = [
    {"jsonrpc": "2.0", "id": 1, "method": 7},
    {"jsonrpc": "2.0", "id": 1, "method": None},
    {"jsonrpc": "2.0", "id": [1], "method": "ping"},
    {"jsonrpc": "2.0", "id": 1.5, "method": "ping"},
    {"jsonrpc": 2, "id": 1, "method": "ping"},
    {"jsonrpc": "2.0", "id": 1, "method": "ping", "params": "payload"},
    {"jsonrpc": "2.0", "id": 1, "method": "ping", "params": [1, 2]},
    {"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"payload": 5}},
    {"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"nope": 1}},
    {"jsonrpc": "2.0", "id": 1, "method": "typed", "params": {"name": [], "count": "1"}},
    {"jsonrpc": "2.0", "id": 1, "method": "fail"},
    {"jsonrpc": "2.0", "id": 1, "method": "job.progress", "params": {"job": 999_999}},
    {"jsonrpc": "2.0", "id": 1, "method": "no.such.method"},
    {"jsonrpc": "2.0", "id": 1, "method": "crash"},
    [{"jsonrpc": "2.0", "id": 1, "method": "ping"}],
    "ping",
    12,
    None,
]


def malformed_lines(rng: random.Random, count: int) -> list[bytes]:
    """Return `count` lines, each of which must get exactly one error response."""
    lines = []
    for _ in range(count):
        choice = rng.random()
        if choice < 0.45:
            junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
            junk = junk.replace(b"\n", b"")
            if not junk.strip(b" \t\r") or junk.strip().isdigit():
                junk = b"\xff" + junk  # stays invalid UTF-8, so always a parse error
            lines.append(junk)
        elif choice < 0.5:
            lines.append(b"z" * rng.randrange(MAX_LINE + 1, 4 * MAX_LINE))
        elif choice < 0.75:
            lines.append(json.dumps(rng.choice(WRONG_TYPES)).encode())
        else:
            valid = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}).encode()
            cut = rng.randrange(1, len(valid) - 1)
            lines.append(valid[:cut])
    return lines


def send_and_count(path: Path, lines: list[bytes], errors: list[int], problems: list[str]) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(str(path))

    def writer() -> None:
        sock.sendall(b"".join(line + b"\n" for line in lines))

    thread = threading.Thread(target=writer)
    thread.start()
    buffer = b""
    received = 0
    while received < len(lines):
        chunk = sock.recv(65536)
        if not chunk:
            problems.append(f"connection closed after {received} of {len(lines)} replies")
            break
        buffer += chunk
        *replies, buffer = buffer.split(b"\n")
        for reply in replies:
            message = json.loads(reply)
            if "error" not in message:
                problems.append(f"a malformed line got a result: {message}")
            else:
                errors.append(message["error"]["code"])
            received += 1
    thread.join()
    sock.close()


def test_malformed_flood(make_server: ServerFactory) -> None:
    server = make_server(max_line=MAX_LINE)
    rng = random.Random(SEED)
    lines = malformed_lines(rng, MALFORMED)
    expected_long = sum(1 for line in lines if len(line) + 1 > MAX_LINE)
    errors: list[int] = []
    problems: list[str] = []
    stop = threading.Event()
    served: list[int] = []

    def well_formed() -> None:
        with ControlClient(server.path) as client:
            index = 0
            while not stop.is_set():
                result = client.call("ping", {"payload": str(index)})
                if result["pong"] != str(index):
                    problems.append(f"ping {index} returned {result}")
                served.append(index)
                index += 1

    good = threading.Thread(target=well_formed)
    good.start()
    share = len(lines) // CONNECTIONS
    senders = [
        threading.Thread(
            target=send_and_count,
            args=(server.path, lines[start : start + share], errors, problems),
        )
        for start in range(0, len(lines), share)
    ]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    stop.set()
    good.join()
    assert problems == [], f"seed {SEED}"
    assert len(errors) == MALFORMED, f"seed {SEED}"
    assert errors.count(LINE_TOO_LONG) == expected_long, f"seed {SEED}"
    assert len(served) > 0
    with ControlClient(server.path) as client:
        assert client.call("ping", {"payload": "after"})["pong"] == "after"


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def churn(path: Path, count: int, rng: random.Random) -> None:
    """Open `count` connections that each do one of: nothing, a ping, junk, half a line."""
    for _ in range(count):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(30)
        sock.connect(str(path))
        action = rng.randrange(4)
        if action == 1:
            sock.sendall(b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n')
            assert b'"pong"' in sock.recv(4096)
        elif action == 2:
            sock.sendall(bytes(rng.randrange(256) for _ in range(64)) + b"\n")
        elif action == 3:
            sock.sendall(b'{"jsonrpc":"2.0","id":1,"meth')
        sock.close()


def wait_for_idle(server: Any) -> bool:
    for _ in range(1000):
        if server.connection_count == 0:
            return True
        threading.Event().wait(0.01)
    return False


def settles(measure: Callable[[], int], expected: int, timeout: float = 10.0) -> bool:
    """Tell whether `measure()` comes back to `expected` or below within `timeout` seconds.

    Below counts as settled: a descriptor or thread that an earlier test left
    behind may close meanwhile, and that is no leak of this one.
    """
    deadline = time.monotonic() + timeout
    while measure() > expected:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_connection_churn_leaks_nothing(make_server: ServerFactory) -> None:
    """Hundreds of short connections leave no file descriptor or thread behind."""
    server = make_server()
    churn(server.path, 50, random.Random(SEED))
    assert wait_for_idle(server)
    fds, threads = open_fds(), threading.active_count()
    churn(server.path, 500, random.Random(SEED + 1))
    assert wait_for_idle(server), f"seed {SEED + 1}"
    # A connection's thread closes its socket and exits just after the count
    # drops, so give the last ones a moment on a loaded machine.
    assert settles(open_fds, fds), f"open descriptors {open_fds()}, expected {fds}"
    assert settles(threading.active_count, threads)


@pytest.mark.soak
def test_malformed_flood_soak(make_server: ServerFactory) -> None:
    """Twenty times the flood, over fresh connections, with churn beside it."""
    server = make_server(max_line=MAX_LINE)
    rng = random.Random(SEED + 2)
    fds = 0
    for round_number in range(20):
        errors: list[int] = []
        problems: list[str] = []
        lines = malformed_lines(rng, MALFORMED)
        send_and_count(server.path, lines, errors, problems)
        churn(server.path, 200, rng)
        assert problems == [], f"seed {SEED + 2}, round {round_number}"
        assert len(errors) == MALFORMED, f"seed {SEED + 2}, round {round_number}"
        assert wait_for_idle(server)
        # The first round leaves one epoll descriptor open for good (created on
        # first use, and it does not grow), so the count starts after it.
        if round_number == 0:
            fds = open_fds()
    assert open_fds() == fds
