"""The event hook: a program the daemon runs for events an operator must hear about.

As `mdadm --monitor --program` does, raidd runs the `[events] program` of
its configuration once per event:

    PROGRAM EVENT_NAME        (the JSON description on standard input)

with `$RAIDD_EVENT` set to the event name too. The description is one JSON
object with at least `event`, `time` (UTC, ISO 8601) and `host`, plus the
event's own keys (array, member path and UUID, counts). The program runs
in a session of its own, without the daemon's sd_notify variables, and is
killed with its whole process group after `timeout` seconds.

Events are queued and run one at a time by a worker thread, so `emit()`
never waits for the program. A program that fails, times out or cannot be
started is logged and does not affect the daemon.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Any

import structlog

from raidd.logsetup import redact_value

log = structlog.get_logger(__name__)

EVENTS = frozenset(
    {
        "member_failed",
        "array_degraded",
        "rebuild_started",
        "rebuild_finished",
        "scrub_errors",
        "backups_behind",
        "array_nearly_full",
        "test",
    }
)
# Bytes of the program's stderr kept for the log.
_STDERR_TAIL = 2000


class EventHook:
    """A runner of the configured event program, one event at a time, off the caller's thread.

    Args:
        program: the program's path, or the program and its arguments, or
            None when no hook is configured (then `emit()` does nothing).
        timeout: seconds a run may take before its process group is killed.
        max_pending: events queued at most; more are dropped and logged.
    """

    def __init__(
        self,
        program: str | Sequence[str] | None,
        *,
        timeout: float = 30.0,
        max_pending: int = 100,
    ) -> None:
        # A sequence is a program and its arguments, as `[events] program`
        # gives it; the event name is appended to it.
        self.program = (program,) if isinstance(program, str) else program
        self.timeout = timeout
        self._queue: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue(max_pending)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.dropped = 0

    def emit(self, event: str, **description: Any) -> bool:
        """Queue one run of the program for `event` and return at once.

        Args:
            event: one of `EVENTS`.
            description: the event's keys, JSON-serializable; values under
                secret-looking keys are redacted.

        Returns:
            True when the run was queued, False when no program is
            configured or the queue is full (which is logged).

        Raises:
            ValueError: `event` is not one of `EVENTS`.
        """
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}; events are {', '.join(sorted(EVENTS))}")
        if self.program is None:
            return False
        record = {
            "event": event,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "host": socket.gethostname(),
            **redact_value(description),
        }
        self._ensure_worker()
        try:
            self._queue.put_nowait((event, record))
        except queue.Full:
            self.dropped += 1
            log.error(
                "event_hook_queue_full",
                hook_event=event,
                max_pending=self._queue.maxsize,
                dropped=self.dropped,
            )
            return False
        return True

    def close(self, timeout: float | None = None) -> None:
        """Run the events already queued, then stop the worker.

        Args:
            timeout: seconds to wait for the worker; None waits for every
                queued run (each is bounded by the hook's own timeout).
        """
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is None:
            return
        self._queue.put(None)
        thread.join(timeout)

    def _ensure_worker(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="event-hook", daemon=True)
                self._thread.start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            event, record = item
            try:
                self.run(event, record)
            except Exception:
                log.exception("event_hook_crashed", hook_event=event)

    def run(self, event: str, record: dict[str, Any]) -> int | None:
        """Run the program for one event and wait for it; the worker calls this.

        Returns:
            The program's exit status, or None when it could not be started
            or timed out.
        """
        assert self.program is not None
        environment = {
            name: value
            for name, value in os.environ.items()
            if name not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
        }
        environment["RAIDD_EVENT"] = event
        # stderr goes to a file, so a program that writes a lot costs no memory.
        with tempfile.TemporaryFile() as stderr_file:
            status = self._run_program(event, record, environment, stderr_file)
            stderr_file.seek(max(stderr_file.tell() - _STDERR_TAIL, 0))
            stderr = stderr_file.read()
        if status is None:
            return None
        returncode, seconds = status
        if returncode != 0:
            log.error(
                "event_hook_failed",
                hook_event=event,
                program=self.program,
                exit_status=returncode,
                stderr=stderr.decode("utf-8", "replace").strip(),
                seconds=seconds,
            )
        else:
            log.info("event_hook_done", hook_event=event, program=self.program, seconds=seconds)
        return returncode

    def _run_program(
        self, event: str, record: dict[str, Any], environment: dict[str, str], stderr: Any
    ) -> tuple[int, float] | None:
        assert self.program is not None
        started = time.monotonic()
        try:
            process = subprocess.Popen(
                [*self.program, event],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=environment,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as error:
            log.error(
                "event_hook_not_started", hook_event=event, program=self.program, error=str(error)
            )
            return None
        payload = json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n"
        try:
            process.communicate(payload, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            log.error(
                "event_hook_timed_out",
                hook_event=event,
                program=self.program,
                pid=process.pid,
                timeout=self.timeout,
            )
            return None
        return process.returncode, round(time.monotonic() - started, 3)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """Kill the program's process group (it leads its own session) and reap it."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        log.info("event_hook_already_gone", pid=process.pid)
    process.communicate()
