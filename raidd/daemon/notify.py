"""The sd_notify protocol, spoken without libsystemd.

A service started with `Type=notify` finds the service manager's datagram
socket in `$NOTIFY_SOCKET`: a file system path, or an abstract socket name
written with a leading `@` (the `@` stands for the leading NUL byte). Each
notification is one datagram of newline-separated `NAME=value` assignments,
for example `READY=1\\nSTATUS=serving`. With `$NOTIFY_SOCKET` unset every
call here does nothing, so the daemon runs the same outside systemd.

The watchdog: with `WatchdogSec=` set, systemd passes `$WATCHDOG_USEC` (and
`$WATCHDOG_PID`, the process meant to ping) and kills the service when no
`WATCHDOG=1` arrives within that interval. `WatchdogPinger` sends it at half
the interval for as long as the main loop keeps calling `beat()`.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Mapping, MutableMapping

import structlog

log = structlog.get_logger(__name__)

NOTIFY_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def socket_address(value: str) -> str | bytes:
    """Translate a `$NOTIFY_SOCKET` value into an AF_UNIX address.

    Args:
        value: the variable's value: an absolute path, or `@name` for an
            abstract socket.

    Returns:
        The path as a string, or the abstract name as bytes with its leading
        NUL byte.

    Raises:
        ValueError: the value is neither an absolute path nor `@name`
            (systemd 254 also defines `vsock:` addresses, which the unit's
            `RestrictAddressFamilies=` would block anyway).
    """
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    raise ValueError(
        f"NOTIFY_SOCKET={value!r} is neither an absolute path nor an abstract @name; "
        "unset it or start raidd from a unit with Type=notify"
    )


def monotonic_usec() -> int:
    """Return CLOCK_MONOTONIC in microseconds, the clock `MONOTONIC_USEC=` uses."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class Notifier:
    """A sender of sd_notify messages to the service manager.

    A socket error never raises: a failed send is logged, because a service must
    not stop serving when its supervisor is briefly unreachable.
    """

    def __init__(self, address: str | None) -> None:
        self._address = socket_address(address) if address else None
        self._lock = threading.Lock()

    @classmethod
    def from_environ(
        cls, environ: MutableMapping[str, str] | None = None, *, unset: bool = True
    ) -> Notifier:
        """Build a notifier from `$NOTIFY_SOCKET`.

        Args:
            environ: the environment to read; `os.environ` by default.
            unset: remove `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`
                from it, so that child processes (the event hook) do not
                inherit them and pose as the service.
        """
        env = os.environ if environ is None else environ
        notifier = cls(env.get("NOTIFY_SOCKET") or None)
        if unset:
            for name in NOTIFY_ENV:
                env.pop(name, None)
        return notifier

    @property
    def enabled(self) -> bool:
        """Whether a service manager listens (`$NOTIFY_SOCKET` was set)."""
        return self._address is not None

    def send(self, **fields: str | int) -> bool:
        """Send one notification made of `NAME=value` fields, in the order given.

        Returns:
            True when the datagram was sent, False when notifications are
            off or the send failed (which is logged).
        """
        if self._address is None:
            return False
        message = "\n".join(f"{name}={value}" for name, value in fields.items())
        if "\0" in message:
            raise ValueError("an sd_notify message cannot contain a NUL byte")
        try:
            with (
                self._lock,
                socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock,
            ):
                sock.sendto(message.encode(), self._address)
        except OSError as error:
            log.warning("sd_notify_failed", address=repr(self._address), error=str(error))
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Send `READY=1`, with a `STATUS=` line when given."""
        if status is None:
            return self.send(READY=1)
        return self.send(READY=1, STATUS=_one_line(status))

    def status(self, text: str) -> bool:
        """Send `STATUS=` with a one-line description of what the daemon does."""
        return self.send(STATUS=_one_line(text))

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for `seconds` more before systemd gives up on start-up or stop.

        The manager extends its timeout to `seconds` from now, so a long
        start-up scan sends this again before each extension runs out.
        """
        return self.send(EXTEND_TIMEOUT_USEC=int(seconds * 1_000_000))

    def watchdog(self) -> bool:
        """Send `WATCHDOG=1`: the main loop is alive."""
        return self.send(WATCHDOG=1)

    def reloading(self) -> bool:
        """Send `RELOADING=1` with `MONOTONIC_USEC=`; send `ready()` when done."""
        return self.send(RELOADING=1, MONOTONIC_USEC=monotonic_usec())

    def stopping(self, status: str | None = None) -> bool:
        """Send `STOPPING=1`, with a `STATUS=` line when given."""
        if status is None:
            return self.send(STOPPING=1)
        return self.send(STOPPING=1, STATUS=_one_line(status))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Return the watchdog interval in seconds, or None when it is off.

    The watchdog is off when `$WATCHDOG_USEC` is unset, zero or invalid (an
    invalid value is logged), and when `$WATCHDOG_PID` names another process.
    Read this before `Notifier.from_environ()` removes the variables.
    """
    env = os.environ if environ is None else environ
    usec_text = env.get("WATCHDOG_USEC")
    if not usec_text:
        return None
    pid_text = env.get("WATCHDOG_PID")
    if pid_text:
        if not pid_text.isdigit():
            log.warning("watchdog_pid_invalid", WATCHDOG_PID=pid_text)
            return None
        if int(pid_text) != os.getpid():
            return None
    if not usec_text.isdigit() or int(usec_text) == 0:
        log.warning("watchdog_usec_invalid", WATCHDOG_USEC=usec_text)
        return None
    return int(usec_text) / 1_000_000


class WatchdogPinger:
    """A sender of `WATCHDOG=1` at half the watchdog interval while the main loop lives.

    The main loop calls `beat()` on every pass, idle passes included, and
    long work (a first backup, a scan) calls it between steps. A ping is
    sent only while the last beat is younger than the full interval, so a
    main loop that hangs stops the pings and systemd restarts the service.
    Use either the thread (`start()`/`stop()`) or call `tick()` from a loop.
    """

    def __init__(
        self,
        notifier: Notifier,
        interval: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"watchdog interval must be positive, not {interval}")
        self._notifier = notifier
        self.interval = interval
        self._clock = clock
        self._last_beat = clock()
        self._last_ping: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.missed = False

    def beat(self) -> None:
        """Record that the main loop is alive."""
        self._last_beat = self._clock()

    def tick(self) -> bool:
        """Send `WATCHDOG=1` unless a ping went out less than 0.4 intervals ago.

        Returns:
            True when a ping was sent.
        """
        now = self._clock()
        if now - self._last_beat >= self.interval:
            if not self.missed:
                log.error(
                    "watchdog_main_loop_stalled",
                    seconds_since_beat=round(now - self._last_beat, 3),
                    interval=self.interval,
                )
            self.missed = True
            return False
        self.missed = False
        # NOTE: 0.4 rather than 0.5 of the interval, so that a thread woken a
        # little early at half the interval still pings instead of waiting a
        # whole further half.
        if self._last_ping is not None and now - self._last_ping < self.interval * 0.4:
            return False
        self._last_ping = now
        self._notifier.watchdog()
        return True

    def start(self) -> None:
        """Start the pinger thread; it ticks at half the interval."""
        if self._thread is not None:
            raise RuntimeError("the watchdog pinger is already running")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="watchdog-pinger", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the pinger thread and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval / 2):
            self.tick()
