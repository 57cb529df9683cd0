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
"behind", which status reports and the event hook hears once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog

from raidd.config import Config
from raidd.errors import RaiddError
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
    """

    def __init__(
        self, open_store: Callable[[], Store], events: EventHook, *, behind_after: float
    ) -> None:
        self.events = events
        self.behind_after = behind_after
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._lock = threading.Lock()
        self._tickets: list[Ticket] = []
        self._scheduled = False
        self._waiting_since: float | None = None
        self._stopping = False
        self.last_error: str | None = None
        self.last_backup: dict[str, Any] | None = None
        self.commits = 0
        self._behind_reported = False
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
        """Give the store a reloaded configuration; the store operations queued after use it."""
        self._executor.submit(setattr, self.store, "config", config)

    def locked(self, work: Callable[[Store], T]) -> T:
        """Run `work(store)` on the store thread and return its result."""
        return self._executor.submit(work, self.store).result()

    # -- committing ------------------------------------------------------------------

    def backup_now(self, roots: list[str] | None = None) -> BackupResult:
        """Back up `roots` (every root when None) and wait for it."""
        return self.locked(lambda store: self._backup(store, roots))

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

    def submit(self, roots: set[str], paths: Mapping[str, set[bytes]] | None = None) -> Ticket:
        """Queue a backup of `roots`; the ticket is done once a commit covered them.

        Args:
            roots: the root names to back up.
            paths: for some of them, the changed paths relative to the root.
                The other roots are scanned in full.
        """
        changed = {root: set(found) for root, found in (paths or {}).items() if root in roots}
        ticket = Ticket(set(roots), changed)
        with self._lock:
            if self._stopping:
                ticket.error = RaiddError("raidd is stopping; the backup did not run")
                ticket.done.set()
                return ticket
            self._tickets.append(ticket)
            if self._waiting_since is None:
                self._waiting_since = time.monotonic()
            if not self._scheduled:
                self._scheduled = True
                self._executor.submit(self._commit_pending)
        return ticket

    def _commit_pending(self) -> None:
        with self._lock:
            tickets, self._tickets = self._tickets, []
            self._scheduled = False
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
            result = self._backup(self.store, roots, changed_paths)
        except RaiddError as error:
            self._rescan_roots.update(roots)
            self.last_error = str(error)
            log.error("backup_failed", array=self.array_uuid, roots=roots, error=str(error))
            for ticket in tickets:
                ticket.error = error
        except Exception as error:
            self._rescan_roots.update(roots)
            self.last_error = f"internal error: {type(error).__name__}"
            log.exception("backup_crashed", array=self.array_uuid, roots=roots)
            for ticket in tickets:
                ticket.error = RaiddError(self.last_error)
        else:
            self._rescan_roots.clear()
            self.last_error = None
            for ticket in tickets:
                ticket.result = result
        finally:
            with self._lock:
                self._waiting_since = time.monotonic() if self._tickets else None
            for ticket in tickets:
                ticket.done.set()

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
        for problem in result.problems:
            log.warning(
                "backup_problem",
                root=problem.root,
                path=problem.path.decode("utf-8", "replace"),
                kind=problem.kind,
                error=problem.message,
            )

    def sync(self, roots: list[str], timeout: float | None = None) -> dict[str, Any]:
        """Rescan `roots`, commit, and return the commit once durable (or the last one)."""
        ticket = self.submit(set(roots))
        if not ticket.done.wait(timeout):
            raise RaiddError(f"sync did not finish within {timeout} s; it goes on in the daemon")
        if ticket.error is not None:
            raise ticket.error
        assert ticket.result is not None
        last = self.last_commit()
        return {
            "commit": last["id"] if last else None,
            "time": last["time"] if last else None,
            "changed": ticket.result.sequence is not None,
        }

    def behind(self) -> bool:
        """Tell whether backups are behind: a failed backup, or work waiting too long."""
        with self._lock:
            since = self._waiting_since
        late = since is not None and time.monotonic() - since > self.behind_after
        behind = late or self.last_error is not None
        if behind and not self._behind_reported:
            self.events.emit("backups_behind", array=self.array_uuid, error=self.last_error)
            log.warning("backups_behind", array=self.array_uuid, error=self.last_error)
        self._behind_reported = behind
        return behind

    def stop(self) -> None:
        """Let the commit in progress finish, drop the queued ones, close the store."""
        with self._lock:
            self._stopping = True
            tickets, self._tickets = self._tickets, []
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

    def forget(self, *, dry_run: bool) -> dict[str, Any]:
        return self.locked(lambda store: forget(store, dry_run=dry_run).to_json())

    def gc(self, *, dry_run: bool) -> dict[str, Any]:
        return self.locked(lambda store: gc(store, dry_run=dry_run).to_json())

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
