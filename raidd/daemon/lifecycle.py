"""The daemon's main loop: signals, sd_notify messages and the watchdog.

`Lifecycle.run()` owns the main thread once start-up is done:

- it sends `READY=1` with a `STATUS=` line, then calls `on_tick` every
  `tick_interval` seconds, or sooner when `on_tick` returns a shorter
  delay or another thread calls `wake()`, and beats the watchdog on every
  pass;
- SIGHUP sends `RELOADING=1` with `MONOTONIC_USEC=`, calls `on_reload`,
  and sends `READY=1` again, whether the reload worked or not. An
  `on_reload` that rejects the new configuration keeps the old one and
  raises a RaiddError, which is logged and reported in `STATUS=`;
- SIGTERM or SIGINT sends `STOPPING=1`, calls `on_stop`, and returns 0.

Signal handlers only set flags and wake the loop through a pipe, so the
callbacks always run in the main thread, between ticks. Long work inside a
callback calls `beat()` between its steps to keep the watchdog fed.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
from collections.abc import Callable, Iterator, MutableMapping
from types import FrameType

import structlog

from raidd.daemon.notify import Notifier, WatchdogPinger, watchdog_interval
from raidd.errors import RaiddError

log = structlog.get_logger(__name__)

ReloadCallback = Callable[[], None]


class Lifecycle:
    """The main loop of a Type=notify service.

    Args:
        environ: the environment holding `NOTIFY_SOCKET` and the watchdog
            variables; `os.environ` by default. They are removed from it so
            that child processes do not inherit them.
        tick_interval: seconds between two `on_tick` calls when no signal
            comes; the loop wakes sooner for the watchdog when it must.
    """

    def __init__(
        self, environ: MutableMapping[str, str] | None = None, *, tick_interval: float = 1.0
    ) -> None:
        env = os.environ if environ is None else environ
        interval = watchdog_interval(env)
        self.notifier = Notifier.from_environ(env)
        self.pinger = WatchdogPinger(self.notifier, interval) if interval else None
        self.tick_interval = tick_interval
        self.status = "starting"
        self._reload_requested = False
        self._stop_requested = False
        self._wake_read, self._wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def install_signal_handlers(self) -> None:
        """Handle SIGTERM, SIGINT and SIGHUP; call this from the main thread."""
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGHUP, self._on_reload_signal)

    def _on_stop_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._stop_requested = True
        self._wake()

    def _on_reload_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._reload_requested = True
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):  # a full pipe already wakes the loop
            os.write(self._wake_write, b"x")

    def wake(self) -> None:
        """Make the loop call `on_tick` now. Any thread may call this."""
        self._wake()

    def request_stop(self) -> None:
        """Ask the loop to stop, as SIGTERM does; callable from any thread."""
        self._stop_requested = True
        self._wake()

    def beat(self) -> None:
        """Tell the watchdog the main loop is alive; long work calls this between steps."""
        if self.pinger is not None:
            self.pinger.beat()

    def set_status(self, text: str) -> None:
        """Send a one-line `STATUS=` description of what the daemon does."""
        self.status = text
        self.notifier.status(text)

    @contextlib.contextmanager
    def extending_start(self, seconds: float = 30.0) -> Iterator[None]:
        """Keep systemd's start-up timeout `seconds` ahead while the block runs.

        A thread sends `EXTEND_TIMEOUT_USEC=` every `seconds / 2`, and
        `WATCHDOG=1` when the watchdog is on, for a long start-up scan that
        has no steps to beat from. The pinger thread starts only in `run()`.
        """
        done = threading.Event()
        period = seconds / 2
        if self.pinger is not None:
            period = min(period, self.pinger.interval / 2)

        def extend() -> None:
            while True:
                self.notifier.extend_timeout(seconds)
                if self.pinger is not None:
                    self.notifier.watchdog()
                if done.wait(period):
                    return

        thread = threading.Thread(target=extend, name="start-timeout-extender", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def run(
        self,
        *,
        ready_status: str,
        on_tick: Callable[[], float | None],
        on_reload: ReloadCallback,
        on_stop: Callable[[], None],
    ) -> int:
        """Report ready, then run the loop until SIGTERM or SIGINT.

        `on_tick` may return the seconds after which it wants to run again,
        when that is sooner than `tick_interval`.

        Returns:
            0, the exit status of a clean stop.
        """
        if self.pinger is not None:
            self.pinger.start()
        self.status = ready_status
        self.notifier.ready(status=ready_status)
        log.info("daemon_ready", status=ready_status)
        try:
            while not self._stop_requested:
                self.beat()
                if self._reload_requested:
                    self._reload_requested = False
                    self._reload(on_reload)
                    continue
                self._sleep(on_tick())
        finally:
            self.notifier.stopping(status="stopping")
            log.info("daemon_stopping")
            try:
                on_stop()
            finally:
                if self.pinger is not None:
                    self.pinger.stop()
                os.close(self._wake_read)
                os.close(self._wake_write)
        log.info("daemon_stopped")
        return 0

    def _reload(self, on_reload: ReloadCallback) -> None:
        self.notifier.reloading()
        log.info("daemon_reloading")
        status = self.status
        try:
            on_reload()
        except RaiddError as error:
            log.error("reload_failed", error=str(error))
            status = f"{self.status} (reload failed: {error}; old configuration kept)"
        else:
            log.info("daemon_reloaded")
        self.notifier.ready(status=status)

    def _sleep(self, requested: float | None = None) -> None:
        timeout = self.tick_interval if requested is None else min(self.tick_interval, requested)
        if self.pinger is not None:
            timeout = min(timeout, self.pinger.interval / 4)
        readable, _, _ = select.select([self._wake_read], [], [], timeout)
        if readable:
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_read, 4096)
