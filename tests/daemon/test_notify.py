"""sd_notify messages arrive, byte for byte, on real datagram sockets."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from raidd.daemon.notify import (
    Notifier,
    WatchdogPinger,
    monotonic_usec,
    socket_address,
    watchdog_interval,
)


class Listener:
    """A test service manager: a bound datagram socket that collects notifications."""

    def __init__(self, address: str | bytes) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(10)

    def receive(self) -> bytes:
        return self.sock.recv(4096)

    def pending(self) -> list[bytes]:
        """Return every datagram already queued, without waiting."""
        messages = []
        self.sock.setblocking(False)
        try:
            while True:
                messages.append(self.sock.recv(4096))
        except BlockingIOError:
            pass
        finally:
            self.sock.settimeout(10)
        return messages


@pytest.fixture
def path_listener(tmp_path: Path) -> Iterator[tuple[str, Listener]]:
    path = str(tmp_path / "notify.sock")
    listener = Listener(path)
    yield path, listener
    listener.sock.close()


@pytest.fixture
def abstract_listener() -> Iterator[tuple[str, Listener]]:
    name = f"raidd-test-notify-{os.getpid()}-{time.monotonic_ns()}"
    listener = Listener(b"\0" + name.encode())
    yield "@" + name, listener
    listener.sock.close()


def test_address_path_and_abstract() -> None:
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@abc") == b"\0abc"


@pytest.mark.parametrize("value", ["relative/path", "@", "vsock:2:1234"])
def test_address_invalid(value: str) -> None:
    with pytest.raises(ValueError, match="neither an absolute path"):
        socket_address(value)


def test_messages_on_path_socket(path_listener: tuple[str, Listener]) -> None:
    address, listener = path_listener
    notifier = Notifier(address)
    assert notifier.enabled
    assert notifier.ready()
    assert listener.receive() == b"READY=1"
    notifier.ready(status="serving array crm")
    assert listener.receive() == b"READY=1\nSTATUS=serving array crm"
    notifier.status("scanning\n3 roots")
    assert listener.receive() == b"STATUS=scanning 3 roots"
    notifier.extend_timeout(90)
    assert listener.receive() == b"EXTEND_TIMEOUT_USEC=90000000"
    notifier.extend_timeout(0.25)
    assert listener.receive() == b"EXTEND_TIMEOUT_USEC=250000"
    notifier.watchdog()
    assert listener.receive() == b"WATCHDOG=1"
    notifier.stopping()
    assert listener.receive() == b"STOPPING=1"
    notifier.stopping(status="finishing commit")
    assert listener.receive() == b"STOPPING=1\nSTATUS=finishing commit"


def test_messages_on_abstract_socket(abstract_listener: tuple[str, Listener]) -> None:
    address, listener = abstract_listener
    notifier = Notifier(address)
    notifier.ready(status="ready")
    assert listener.receive() == b"READY=1\nSTATUS=ready"
    notifier.watchdog()
    assert listener.receive() == b"WATCHDOG=1"


def test_reloading_carries_monotonic_time(path_listener: tuple[str, Listener]) -> None:
    address, listener = path_listener
    notifier = Notifier(address)
    before = monotonic_usec()
    notifier.reloading()
    after = monotonic_usec()
    lines = listener.receive().split(b"\n")
    assert lines[0] == b"RELOADING=1"
    name, _, value = lines[1].partition(b"=")
    assert name == b"MONOTONIC_USEC"
    assert before <= int(value) <= after
    assert len(lines) == 2


def test_unset_is_noop() -> None:
    environ: dict[str, str] = {}
    notifier = Notifier.from_environ(environ)
    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.watchdog() is False


def test_from_environ_unsets_variables(path_listener: tuple[str, Listener]) -> None:
    address, listener = path_listener
    environ = {
        "NOTIFY_SOCKET": address,
        "WATCHDOG_USEC": "1000000",
        "WATCHDOG_PID": str(os.getpid()),
        "HOME": "/root",
    }
    notifier = Notifier.from_environ(environ)
    assert environ == {"HOME": "/root"}
    notifier.ready()
    assert listener.receive() == b"READY=1"


def test_send_failure_returns_false(tmp_path: Path) -> None:
    """A manager socket that went away makes sends fail quietly, not raise."""
    notifier = Notifier(str(tmp_path / "gone.sock"))
    assert notifier.ready() is False


def test_nul_byte_rejected(path_listener: tuple[str, Listener]) -> None:
    notifier = Notifier(path_listener[0])
    with pytest.raises(ValueError, match="NUL"):
        notifier.status("a\0b")


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "self"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "thirty"}, None),
    ],
)
def test_watchdog_interval(environ: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval(environ) == expected


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_pinger_ticks_at_half_interval(path_listener: tuple[str, Listener]) -> None:
    address, listener = path_listener
    clock = FakeClock()
    pinger = WatchdogPinger(Notifier(address), 10.0, clock=clock)
    assert pinger.tick() is True
    assert listener.receive() == b"WATCHDOG=1"
    clock.now += 2.0
    pinger.beat()
    assert pinger.tick() is False
    clock.now += 3.0
    pinger.beat()
    assert pinger.tick() is True
    assert listener.receive() == b"WATCHDOG=1"
    assert listener.pending() == []


def test_pinger_stops_when_main_loop_stalls(path_listener: tuple[str, Listener]) -> None:
    address, listener = path_listener
    clock = FakeClock()
    pinger = WatchdogPinger(Notifier(address), 10.0, clock=clock)
    pinger.tick()
    listener.receive()
    clock.now += 10.0
    assert pinger.tick() is False
    assert pinger.missed
    clock.now += 5.0
    assert pinger.tick() is False
    assert listener.pending() == []
    pinger.beat()
    assert pinger.tick() is True
    assert not pinger.missed
    assert listener.receive() == b"WATCHDOG=1"


def test_pinger_thread_sends_pings(path_listener: tuple[str, Listener]) -> None:
    address, listener = path_listener
    pinger = WatchdogPinger(Notifier(address), 0.2)
    pinger.start()
    try:
        received = []
        for _ in range(3):
            pinger.beat()
            received.append(listener.receive())
    finally:
        pinger.stop()
    assert received == [b"WATCHDOG=1"] * 3


def test_pinger_rejects_double_start(path_listener: tuple[str, Listener]) -> None:
    pinger = WatchdogPinger(Notifier(path_listener[0]), 60.0)
    pinger.start()
    try:
        with pytest.raises(RuntimeError, match="already running"):
            pinger.start()
    finally:
        pinger.stop()


def test_pinger_rejects_bad_interval() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        WatchdogPinger(Notifier(None), 0)
