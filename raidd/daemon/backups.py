"""The daemon's backup store: commits on a thread of their own, queries, restore streams.

`BackupService` owns the Store and runs every store operation on one
thread: commits of the watcher's batches, and the control methods
(snapshots, ls, restore, sync, forget, gc, check) that the connection
threads hand to it.

Pending batches are gathered: the work that waits while a commit runs
becomes one commit after it. A batch of the watcher names the changed
paths of its root, and only those are scanned (raidd.store.changes);
rescans, `sync` and the start-up reconciliation scan roots as a whole.
A backup that finds nothing changed commits nothing. Work waiting longer
than `behind_after` seconds, or a failed backup, makes the backups
"behind", which status reports and the event hook hears once. A backup
fails for a root when the root cannot be read or its pre_backup fails
(the other roots are committed), and for every root when the commit
itself fails. Each root keeps its error until a backup of it succeeds.

After an ArrayFullError the watcher's batches wait `full_retry_after`
seconds before the next try, so that a full array is not retried in a
loop. A `sync` does not wait, and a gc that freed stripes ends the wait.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog

from raidd.config import Config
from raidd.errors import ArrayFullError, BackupError, RaiddError
from raidd.events import EventHook
from raidd.store.maintenance import check, forget, gc
from raidd.store.pipeline import BackupResult, run_backup
from raidd.store.store import Store

log = structlog.get_logger(__name__)

T = TypeVar("T")
NS_PER_SECOND = 1_000_000_000


def iso_time(time_ns: int) -> str:
    """Format ns since the epoch as UTC ISO 8601 with seconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time_ns / NS_PER_SECOND))


@dataclass
class Ticket:
    """A request for a commit of some roots; `done` is set once a backup covered them.

    A root in `paths` needs only those changed paths (relative to the
    root) scanned, and any other root in `roots` is scanned in full.
    """

    roots: set[str]
    paths: dict[str, set[bytes]] = field(default_factory=dict)
    # A caller waits for it (sync): it does not wait out a full array's back-off.
    urgent: bool = False
    done: threading.Event = field(default_factory=threading.Event)
    result: BackupResult | None = None
    error: RaiddError | None = None


class BackupService:
    """The store of the daemon's array, run on one thread, and the queue of commits to make.

    Every store operation runs on the service's store thread, one at a
    time, because the store is not thread safe and its SQLite indexes are
    bound to the thread that opened them.

    Args:
        open_store: builds the Store; it runs on the store thread.
        events: the event hook, for `backups_behind`.
        behind_after: seconds after which waiting work counts as behind.
        full_retry_after: seconds the watcher's batches wait after the array
            was found full.
    """

    def __init__(
        self,
        open_store: Callable[[], Store],
        events: EventHook,
        *,
        behind_after: float,
        full_retry_after: float = 60.0,
    ) -> None:
        self.events = events
        self.behind_after = behind_after
        self.full_retry_after = full_retry_after
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._lock = threading.Lock()
        self._tickets: list[Ticket] = []
        self._scheduled = False
        self._waiting_since: float | None = None
        self._stopping = False
        # The error of each root whose last backup failed, naming the root and the cause.
        self.root_errors: dict[str, str] = {}
        self.last_backup: dict[str, Any] | None = None
        self.commits = 0
        self._behind_reported = False
        # Monotonic time before which the watcher's batches wait (array full).
        self._retry_at: float | None = None
        self._timer: threading.Timer | None = None
        # Restores in progress. Forget and gc wait until there is none, so that they
        # drop no chunk that a restore reads in its later turns on the store thread.
        self._readers = 0
        self._no_readers = threading.Condition(self._lock)
        # Roots whose last backup failed: the next one scans them in full, because
        # the changed paths of the failed batch are not kept. Store thread only.
        self._rescan_roots: set[str] = set()
        try:
            self.store: Store = self._executor.submit(open_store).result()
        except BaseException:
            self._executor.shutdown(wait=True)
            raise
        self.array_uuid = str(self.store.array.uuid)
        self._last_commit = self.locked(_last_commit_of)

    def use_config(self, config: Config) -> None:
        """Give the store a reloaded configuration; the store operations queued after use it.

        A root that is no longer configured loses its error, so that it
        keeps the backups behind no longer.
        """
        self._executor.submit(setattr, self.store, "config", config)
        names = {watch.name for watch in config.watches}
        with self._lock:
            for root in set(self.root_errors) - names:
                del self.root_errors[root]

    def locked(self, work: Callable[[Store], T]) -> T:
        """Run `work(store)` on the store thread and return its result."""
        return self._executor.submit(work, self.store).result()

    # -- committing ------------------------------------------------------------------

    def backup_now(self, roots: list[str] | None = None) -> BackupResult:
        """Back up `roots` (every root when None) and wait for it."""
        return self.locked(lambda store: self._backup_recorded(roots))

    def _backup(
        self,
        store: Store,
        roots: list[str] | None,
        changed_paths: Mapping[str, set[bytes]] | None = None,
    ) -> BackupResult:
        started = time.monotonic()
        result = run_backup(store, roots, changed_paths=changed_paths)
        self._record(result, time.monotonic() - started)
        self._last_commit = _last_commit_of(store)
        return result

    def submit(
        self,
        roots: set[str],
        paths: Mapping[str, set[bytes]] | None = None,
        *,
        urgent: bool = False,
    ) -> Ticket:
        """Queue a backup of `roots`; the ticket is done once a commit covered them.

        Args:
            roots: the root names to back up.
            paths: for some of them, the changed paths relative to the root.
                The other roots are scanned in full.
            urgent: run it now even while a full array's back-off lasts.
        """
        changed = {root: set(found) for root, found in (paths or {}).items() if root in roots}
        ticket = Ticket(set(roots), changed, urgent)
        with self._lock:
            if self._stopping:
                ticket.error = RaiddError("raidd is stopping; the backup did not run")
                ticket.done.set()
                return ticket
            self._tickets.append(ticket)
            if self._waiting_since is None:
                self._waiting_since = time.monotonic()
            self._schedule_locked(urgent)
        return ticket

    def _schedule_locked(self, urgent: bool) -> None:
        """Have the store thread commit the queue, now or after the back-off; hold `_lock`."""
        if urgent and self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._scheduled = False
        if self._scheduled:
            return
        delay = 0.0
        if self._retry_at is not None and not urgent:
            delay = self._retry_at - time.monotonic()
        self._scheduled = True
        if delay <= 0:
            self._executor.submit(self._commit_pending)
            return
        self._timer = threading.Timer(delay, self._resubmit)
        self._timer.daemon = True
        self._timer.start()

    def _resubmit(self) -> None:
        with self._lock:
            if self._stopping or self._timer is None:
                return
            self._timer = None
            self._executor.submit(self._commit_pending)

    def _waits_for_space(self) -> bool:
        """Tell whether the queue waits out a full array's back-off; hold `_lock`."""
        if self._retry_at is None or any(ticket.urgent for ticket in self._tickets):
            return False
        return time.monotonic() < self._retry_at

    def space_freed(self) -> None:
        """End the full array's back-off: forget or gc freed stripes."""
        with self._lock:
            self._retry_at = None

    def _commit_pending(self) -> None:
        with self._lock:
            self._scheduled = False
            if self._waits_for_space():
                # Queued while the backup that found the array full ran: wait like the rest.
                self._schedule_locked(False)
                return
            tickets, self._tickets = self._tickets, []
        if not tickets:
            return
        roots, changed_paths = merge_tickets(tickets)
        config = self.store.config
        # A root that is no longer configured would fail every later backup.
        self._rescan_roots &= {watch.name for watch in config.watches} if config else set()
        roots = sorted({*roots, *self._rescan_roots})
        for root in self._rescan_roots:
            changed_paths.pop(root, None)
        try:
            result = self._backup_recorded(roots, changed_paths)
        except RaiddError as error:
            for ticket in tickets:
                ticket.error = error
        else:
            for ticket in tickets:
                ticket.result = result
        finally:
            with self._lock:
                self._waiting_since = time.monotonic() if self._tickets else None
            for ticket in tickets:
                ticket.done.set()
            self.behind()

    def _backup_recorded(
        self, roots: list[str] | None, changed_paths: Mapping[str, set[bytes]] | None = None
    ) -> BackupResult:
        """Back up on the store thread and keep each root's outcome for status and sync.

        Raises:
            RaiddError: the backup failed as a whole (an internal error as one too).
        """
        config = self.store.config
        if roots is not None:
            names = roots
        elif config is not None:
            names = [watch.name for watch in config.watches]
        else:
            names = []
        try:
            result = self._backup(self.store, roots, changed_paths)
        except RaiddError as error:
            self._failed(names, error, str(error))
            log.error("backup_failed", array=self.array_uuid, roots=names, error=str(error))
            raise
        except Exception as error:
            message = f"internal error: {type(error).__name__}"
            self._failed(names, error, message)
            log.exception("backup_crashed", array=self.array_uuid, roots=names)
            raise RaiddError(message) from error
        self._rescan_roots = set(result.failed_roots)
        with self._lock:
            for root in names:
                self.root_errors.pop(root, None)
            self.root_errors.update(result.failed_roots)
            self._retry_at = None
        for root, message in result.failed_roots.items():
            log.error("backup_failed", array=self.array_uuid, roots=[root], error=message)
        return result

    def _failed(self, roots: list[str], error: Exception, message: str) -> None:
        """Record a backup of `roots` that committed nothing."""
        self._rescan_roots.update(roots)
        with self._lock:
            for root in roots:
                self.root_errors[root] = message
            if isinstance(error, ArrayFullError):
                self._retry_at = time.monotonic() + self.full_retry_after
                log.warning(
                    "backups_wait_for_space",
                    array=self.array_uuid,
                    seconds=self.full_retry_after,
                )

    def _root_errors_copy(self) -> dict[str, str]:
        with self._lock:
            return dict(self.root_errors)

    @property
    def last_error(self) -> str | None:
        """The errors of the roots whose last backup failed, one line; None when none did."""
        errors = self._root_errors_copy()
        if not errors:
            return None
        distinct = list(dict.fromkeys(errors.values()))
        return "; ".join(distinct)

    def _record(self, result: BackupResult, seconds: float) -> None:
        record = {**result.to_json(), "seconds": round(seconds, 3)}
        record["problems"] = len(result.problems)
        self.last_backup = record
        if result.sequence is not None:
            self.commits += 1
            log.info(
                "backup_committed",
                array=self.array_uuid,
                commit=result.sequence,
                roots=list(result.roots),
                files=result.files_read,
                bytes=result.bytes_read,
                bytes_stored=result.bytes_stored,
                seconds=round(seconds, 3),
            )

    def sync(self, roots: list[str], timeout: float | None = None) -> dict[str, Any]:
        """Rescan `roots`, commit, and return the commit once durable (or the last one).

        The result's `failed` lists the roots that could not be backed up,
        while the others were committed.

        Raises:
            BackupError: none of `roots` could be backed up.
            RaiddError: the commit failed (ArrayFullError, for one).
        """
        ticket = self.submit(set(roots), urgent=True)
        if not ticket.done.wait(timeout):
            raise RaiddError(f"sync did not finish within {timeout} s; it goes on in the daemon")
        if ticket.error is not None:
            raise ticket.error
        assert ticket.result is not None
        failed = {
            root: message
            for root, message in ticket.result.failed_roots.items()
            if root in ticket.roots
        }
        if failed and len(failed) == len(ticket.roots):
            raise BackupError(
                "; ".join(failed[root] for root in sorted(failed))
                + "; nothing was committed for "
                + ("it" if len(failed) == 1 else "them")
            )
        last = self.last_commit()
        return {
            "commit": last["id"] if last else None,
            "time": last["time"] if last else None,
            "changed": ticket.result.sequence is not None,
            "failed": [{"root": root, "error": failed[root]} for root in sorted(failed)],
        }

    def behind(self) -> bool:
        """Tell whether backups are behind: a failed backup, or work waiting too long."""
        with self._lock:
            since = self._waiting_since
            late = since is not None and time.monotonic() - since > self.behind_after
            errors = list(dict.fromkeys(self.root_errors.values()))
            error = "; ".join(errors) if errors else None
            behind = late or error is not None
            report = behind and not self._behind_reported
            self._behind_reported = behind
        if report:
            self.events.emit("backups_behind", array=self.array_uuid, error=error)
            log.warning("backups_behind", array=self.array_uuid, error=error)
        return behind

    def stop(self) -> None:
        """Let the commit in progress finish, drop the queued ones, close the store."""
        with self._lock:
            self._stopping = True
            tickets, self._tickets = self._tickets, []
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        for ticket in tickets:
            ticket.error = RaiddError("raidd stopped before this backup ran")
            ticket.done.set()
        self._executor.submit(self.store.close).result()
        self._executor.shutdown(wait=True)

    # -- queries ---------------------------------------------------------------------

    def last_commit(self) -> dict[str, Any] | None:
        """Return the newest commit as of the last backup, without waiting for the store."""
        return self._last_commit

    def status(self) -> dict[str, Any]:
        with self._lock:
            waiting = sum(len(ticket.roots) for ticket in self._tickets)
        return {
            "available": True,
            "behind": self.behind(),
            "roots_waiting": waiting,
            "commits_this_run": self.commits,
            "last_backup": self.last_backup,
            "last_error": self.last_error,
            "failed_roots": self._root_errors_copy(),
        }

    def snapshots(self, limit: int | None) -> list[dict[str, Any]]:
        commits = self.locked(lambda store: store.snapshots(limit=limit))
        return [
            {
                "id": info.sequence,
                "parent": info.parent,
                "time": iso_time(info.time_ns),
                "time_ns": info.time_ns,
                "roots": list(info.roots),
            }
            for info in commits
        ]

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Count a restore in progress for the block; forget and gc wait until none is."""
        with self._lock:
            self._readers += 1
        try:
            yield
        finally:
            with self._lock:
                self._readers -= 1
                if self._readers == 0:
                    self._no_readers.notify_all()

    def _between_restores(self, work: Callable[[Store], T], *, dry_run: bool) -> T:
        """Run `work` on the store thread when no restore is in progress (a dry run at once)."""
        if dry_run:
            return self.locked(work)
        done: list[T] = []

        def unless_reading(store: Store) -> None:
            # A restore may have begun since the wait, and its turns need the store.
            with self._lock:
                if self._readers:
                    return
            done.append(work(store))

        while not done:
            with self._lock:
                self._no_readers.wait_for(lambda: self._readers == 0)
            self.locked(unless_reading)
        return done[0]

    def forget(self, *, dry_run: bool) -> dict[str, Any]:
        result = self._between_restores(
            lambda store: forget(store, dry_run=dry_run).to_json(), dry_run=dry_run
        )
        if not dry_run:
            self.space_freed()
        return result

    def gc(self, *, dry_run: bool) -> dict[str, Any]:
        result = self._between_restores(
            lambda store: gc(store, dry_run=dry_run).to_json(), dry_run=dry_run
        )
        if not dry_run and result["freed_stripes"]:
            self.space_freed()
        return result

    def check(self, *, read_data: bool) -> dict[str, Any]:
        return self.locked(lambda store: check(store, read_data=read_data).to_json())


def merge_tickets(tickets: Iterable[Ticket]) -> tuple[list[str], dict[str, set[bytes]]]:
    """Return the roots of all tickets and the changed paths of those none wants in full."""
    roots: set[str] = set()
    in_full: set[str] = set()
    changed: dict[str, set[bytes]] = {}
    for ticket in tickets:
        roots |= ticket.roots
        in_full |= ticket.roots - ticket.paths.keys()
        for root, paths in ticket.paths.items():
            changed.setdefault(root, set()).update(paths)
    return sorted(roots), {root: paths for root, paths in changed.items() if root not in in_full}


def _last_commit_of(store: Store) -> dict[str, Any] | None:
    info = store.catalog.last_commit()
    if info is None:
        return None
    return {"id": info.sequence, "time": iso_time(info.time_ns), "roots": list(info.roots)}
