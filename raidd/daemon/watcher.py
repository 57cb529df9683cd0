"""The watcher: file-change events of the watched roots, coalesced into backup batches.

Each `[[watch]]` root gets a recursive watchdog (inotify) watch. Events are
coalesced per path: a path is due once no event came for it within the
quiet period, or once its first pending event is older than the maximum
delay (a file that never stops changing is still backed up). The due
paths of one root form a batch, which the main loop hands to the backup;
the backup scans those paths only. A root with no due path produces no
batch, so nothing is committed while nothing changed. The first pending
path wakes the main loop, which then sleeps until the next path is due.

Events can be missed: watchdog drops the kernel's queue-overflow event in
some versions (and reports `EventsLostEvent` in others), the inotify watch
limit (`fs.inotify.max_user_watches`) stops new directories being watched,
and changes made while the daemon was down raise no event at all. So each
root is also rescanned in full every `rescan_interval` seconds, and at
once after events were lost; a rescan batch has `rescan=True`.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from watchdog.events import (
    EVENT_TYPE_CLOSED_NO_WRITE,
    EVENT_TYPE_OPENED,
    EventsLostEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch

from raidd.config import WatchConfig, WatcherConfig

log = structlog.get_logger(__name__)

WATCH_LIMIT_SYSCTL = "fs.inotify.max_user_watches"
INSTANCE_LIMIT_SYSCTL = "fs.inotify.max_user_instances"
IGNORED_EVENT_TYPES = frozenset({EVENT_TYPE_OPENED, EVENT_TYPE_CLOSED_NO_WRITE})


@dataclass
class Batch:
    """The paths of one root that are due for backup, or a full rescan of it."""

    root: str
    paths: set[Path] = field(default_factory=set)
    rescan: bool = False


@dataclass
class _Pending:
    first: float
    last: float


class Coalescer:
    """Per-path pending changes with the quiet period and maximum delay rules.

    Thread safe: the observer thread adds, the main loop takes due batches.
    """

    def __init__(
        self, quiet_period: float, max_delay: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.quiet_period = quiet_period
        self.max_delay = max_delay
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[str, dict[Path, _Pending]] = {}
        self._rescan: set[str] = set()

    def add(self, root: str, path: Path) -> bool:
        """Record an event for `path`, and return True when nothing was pending before."""
        now = self._clock()
        with self._lock:
            first = not self._pending and not self._rescan
            paths = self._pending.setdefault(root, {})
            entry = paths.get(path)
            if entry is None:
                paths[path] = _Pending(now, now)
            else:
                entry.last = now
            return first

    def request_rescan(self, root: str) -> None:
        with self._lock:
            self._rescan.add(root)

    def seconds_until_due(self) -> float | None:
        """Return how long until the next pending path is due (0 for a rescan), or None.

        Events that come later only postpone their paths, so the result can
        only be too early, never too late.
        """
        now = self._clock()
        with self._lock:
            if self._rescan:
                return 0.0
            due = [
                min(entry.last + self.quiet_period, entry.first + self.max_delay)
                for paths in self._pending.values()
                for entry in paths.values()
            ]
        return max(0.0, min(due) - now) if due else None

    def pending_count(self, root: str) -> int:
        with self._lock:
            return len(self._pending.get(root, {}))

    def take_due(self) -> list[Batch]:
        """Remove and return the due paths of each root, and the rescans requested."""
        now = self._clock()
        batches: list[Batch] = []
        with self._lock:
            roots = set(self._pending) | self._rescan
            for root in sorted(roots):
                batch = Batch(root, rescan=root in self._rescan)
                paths = self._pending.get(root, {})
                for path, entry in list(paths.items()):
                    quiet = now - entry.last >= self.quiet_period
                    overdue = now - entry.first >= self.max_delay
                    if batch.rescan or quiet or overdue:
                        batch.paths.add(path)
                        del paths[path]
                if not paths:
                    self._pending.pop(root, None)
                if batch.paths or batch.rescan:
                    batches.append(batch)
            self._rescan.clear()
        return batches

    def forget(self, root: str) -> None:
        with self._lock:
            self._pending.pop(root, None)
            self._rescan.discard(root)


class _RootHandler(FileSystemEventHandler):
    def __init__(self, watcher: Watcher, name: str) -> None:
        self._watcher = watcher
        self._name = name

    def on_any_event(self, event: FileSystemEvent) -> None:
        self._watcher._on_event(self._name, event)


@dataclass
class RootHealth:
    """What status shows about one root's watch."""

    name: str
    path: str
    watching: bool = False
    error: str | None = None
    events: int = 0
    events_lost: int = 0
    last_rescan: float | None = None
    last_batch: float | None = None


class Watcher:
    """Watch every configured root and turn its events into batches.

    Args:
        watches: the `[[watch]]` roots.
        timing: quiet period, maximum delay and rescan interval.
        clock: monotonic seconds; tests pass their own.
        observer_factory: builds the watchdog observer (the inotify one on Linux).
        on_pending: called from the observer thread when a path becomes
            pending while none was, to wake the main loop.
    """

    def __init__(
        self,
        watches: Iterable[WatchConfig],
        timing: WatcherConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        observer_factory: Callable[[], BaseObserver] = Observer,
        on_pending: Callable[[], None] | None = None,
    ) -> None:
        self.watches = {watch.name: watch for watch in watches}
        self._on_pending = on_pending
        self.timing = timing
        self._clock = clock
        self.coalescer = Coalescer(timing.quiet_period, timing.max_delay, clock)
        self._observer = observer_factory()
        self._scheduled: dict[str, ObservedWatch] = {}
        self.health: dict[str, RootHealth] = {}
        self._next_rescan: dict[str, float] = {}

    def start(self) -> None:
        """Start the observer, then watch each root; a root that fails is logged and rescanned."""
        self._observer.start()
        for watch in self.watches.values():
            self._watch(watch)

    def _watch(self, watch: WatchConfig) -> None:
        health = self.health.setdefault(watch.name, RootHealth(watch.name, str(watch.path)))
        try:
            scheduled = self._observer.schedule(
                _RootHandler(self, watch.name), str(watch.path), recursive=True
            )
        except OSError as error:
            health.watching = False
            health.error = _describe_watch_error(error, watch.path)
            log.error(
                "watch_failed",
                root=watch.name,
                path=str(watch.path),
                error=health.error,
                errno=error.errno,
            )
        else:
            self._scheduled[watch.name] = scheduled
            health.watching = True
            health.error = None
            log.info("watch_started", root=watch.name, path=str(watch.path))
        # The first rescan is the start-up reconciliation, which the daemon runs itself.
        self._next_rescan[watch.name] = self._clock() + self.timing.rescan_interval

    def _on_event(self, name: str, event: FileSystemEvent) -> None:
        health = self.health.get(name)
        watch = self.watches.get(name)
        if health is None or watch is None:
            return
        if isinstance(event, EventsLostEvent):
            health.events_lost += 1
            log.warning("watch_events_lost", root=name, path=str(watch.path))
            self.coalescer.request_rescan(name)
            return
        if event.event_type in IGNORED_EVENT_TYPES:
            return
        health.events += 1
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            if raw:
                path = Path(
                    raw if isinstance(raw, str) else raw.decode("utf-8", "surrogateescape")
                )
                if self.coalescer.add(name, path) and self._on_pending is not None:
                    self._on_pending()

    def due_batches(self) -> list[Batch]:
        """Return the batches due now: coalesced paths, and the periodic rescans."""
        now = self._clock()
        for name, when in self._next_rescan.items():
            if now >= when:
                self.coalescer.request_rescan(name)
        batches = self.coalescer.take_due()
        for batch in batches:
            health = self.health[batch.root]
            health.last_batch = now
            if batch.rescan:
                health.last_rescan = now
                self._next_rescan[batch.root] = now + self.timing.rescan_interval
                if not health.watching:
                    # Retry the watch: the limit may have been raised since.
                    self._unwatch(batch.root)
                    self._watch(self.watches[batch.root])
        return batches

    def relative_paths(self, batch: Batch) -> set[bytes]:
        """Return the batch's paths that are under its root, relative to it (b"" for the root)."""
        watch = self.watches.get(batch.root)
        if watch is None:
            return set()
        root = os.fsencode(os.path.normpath(watch.path))
        relative = set()
        for path in batch.paths:
            raw = os.fsencode(os.path.normpath(path))
            if raw == root:
                relative.add(b"")
            elif raw.startswith(root + b"/") or root == b"/":
                relative.add(raw[len(root) :].lstrip(b"/"))
            else:
                log.debug("event_outside_root", root=batch.root, path=str(path))
        return relative

    def seconds_until_due(self) -> float | None:
        """Return how long until the next batch is due, or None while nothing is pending."""
        return self.coalescer.seconds_until_due()

    def mark_rescanned(self, name: str) -> None:
        """Record a full rescan done outside a batch (the start-up reconciliation)."""
        now = self._clock()
        if name in self.health:
            self.health[name].last_rescan = now
        self._next_rescan[name] = now + self.timing.rescan_interval

    def reload(self, watches: Iterable[WatchConfig], timing: WatcherConfig) -> list[str]:
        """Follow a new configuration: stop removed roots, watch new ones; return the new names."""
        new = {watch.name: watch for watch in watches}
        self.timing = timing
        self.coalescer.quiet_period = timing.quiet_period
        self.coalescer.max_delay = timing.max_delay
        for name in list(self.watches):
            if name not in new or new[name].path != self.watches[name].path:
                self._unwatch(name)
                self.health.pop(name, None)
                self._next_rescan.pop(name, None)
                self.coalescer.forget(name)
        added = [name for name in new if name not in self.health]
        self.watches = new
        for name in added:
            self._watch(new[name])
            self.coalescer.request_rescan(name)
        return added

    def _unwatch(self, name: str) -> None:
        scheduled = self._scheduled.pop(name, None)
        if scheduled is not None:
            try:
                self._observer.unschedule(scheduled)
            except KeyError:
                log.debug("watch_already_gone", root=name)

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join()
        log.info("watcher_stopped", roots=len(self.watches))

    def status(self) -> list[dict[str, Any]]:
        now = self._clock()
        rows = []
        for name, health in sorted(self.health.items()):
            rows.append(
                {
                    "root": name,
                    "path": health.path,
                    "watching": health.watching,
                    "error": health.error,
                    "events": health.events,
                    "events_lost": health.events_lost,
                    "pending_paths": self.coalescer.pending_count(name),
                    "seconds_since_rescan": _age(now, health.last_rescan),
                }
            )
        return rows


def _age(now: float, then: float | None) -> float | None:
    return None if then is None else round(now - then, 1)


def _describe_watch_error(error: OSError, path: Path) -> str:
    if error.errno == errno.ENOSPC:
        return (
            f"inotify watch limit reached while watching {path}; raise the sysctl "
            f"{WATCH_LIMIT_SYSCTL} (for example sysctl -w {WATCH_LIMIT_SYSCTL}=524288); "
            "until then the periodic rescans cover this root"
        )
    if error.errno == errno.EMFILE:
        return (
            f"inotify instance limit reached while watching {path}; raise the sysctl "
            f"{INSTANCE_LIMIT_SYSCTL}; until then the periodic rescans cover this root"
        )
    return f"cannot watch {path}: {error.strerror or error}; the periodic rescans cover it"
