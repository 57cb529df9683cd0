"""Backup methods: snapshots, ls and restore (read access); sync, forget, gc, check (root).

`restore` lives in its own module (`raidd.control.methods.restore`) and is
registered here with the others.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from raidd.control.methods import restore
from raidd.control.peer import Access
from raidd.control.protocol import INVALID_PARAMS, OPERATION_FAILED, RpcError
from raidd.control.registry import Registry
from raidd.errors import EXIT_USAGE
from raidd.store.catalog_format import json_name
from raidd.store.restore import ls_selection, missing_selections

if TYPE_CHECKING:
    from raidd.control.server import Call
    from raidd.daemon.backups import BackupService
    from raidd.store.store import Store

LS_LIMIT = 10_000


def register(
    registry: Registry, backups: BackupService, root_names: Callable[[], list[str]]
) -> None:
    """Register the backup methods; `root_names()` returns the watched roots' names now."""

    def sync(call: Call, *, roots: list[str] | None = None) -> dict[str, Any]:
        """Rescan the roots, commit, and return the commit id once durable."""
        return backups.sync(roots or root_names())

    def snapshots(call: Call, *, limit: int | None = None) -> list[dict[str, Any]]:
        """List the commits, newest first."""
        if limit is not None and limit < 0:
            raise RpcError(INVALID_PARAMS, f"snapshots: limit must be 0 or more, not {limit}")
        return backups.snapshots(limit)

    def ls(
        call: Call,
        *,
        root: str,
        commit: int | None = None,
        at_ns: int | None = None,
        prefix: str = "",
        limit: int = LS_LIMIT,
    ) -> dict[str, Any]:
        """List the entries of a root as of a commit (the newest by default)."""
        if limit < 0:
            raise RpcError(INVALID_PARAMS, f"ls: limit must be 0 or more, not {limit}")

        def work(store: Store) -> dict[str, Any]:
            info = store.resolve_commit(at_ns=at_ns, sequence=commit)
            selection = ls_selection(store, root, prefix)
            entries = []
            truncated = False
            for version in store.ls(selection.root, info.sequence, selection.prefix):
                if len(entries) >= limit:
                    truncated = True
                    break
                entries.append(
                    {
                        "path": json_name(version.path),
                        "type": version.type.value,
                        "size": version.size,
                        "mode": version.mode,
                        "mtime_ns": version.mtime_ns,
                        **(
                            {"link_target": json_name(version.link_target)}
                            if version.link_target
                            else {}
                        ),
                    }
                )
            if not entries and missing_selections(store, [selection], info.sequence):
                # As restore does: the client names the path, which stays out of the log.
                raise RpcError(
                    OPERATION_FAILED,
                    f"the requested path not found in commit {info.sequence}",
                    {
                        "error": "PathsNotFoundError",
                        "exit_code": EXIT_USAGE,
                        "missing": [0],
                        "commit": info.sequence,
                    },
                )
            return {
                "commit": info.sequence,
                "root": selection.root,
                "entries": entries,
                "truncated": truncated,
            }

        return backups.locked(work)

    def forget(call: Call, *, dry_run: bool = False) -> dict[str, Any]:
        """Apply the retention policies: forget the commits no rule keeps."""
        return backups.forget(dry_run=dry_run)

    def collect_garbage(call: Call, *, dry_run: bool = False) -> dict[str, Any]:
        """Free the stripes that no kept commit references."""
        return backups.gc(dry_run=dry_run)

    def check(call: Call, *, read_data: bool = False) -> dict[str, Any]:
        """Verify that catalog, object index and allocation agree (report only)."""
        return backups.check(read_data=read_data)

    registry.add("sync", sync, Access.ADMIN)
    registry.add("snapshots", snapshots, Access.READ)
    registry.add("ls", ls, Access.READ)
    restore.register(registry, backups)
    registry.add("forget", forget, Access.ADMIN)
    registry.add("gc", collect_garbage, Access.ADMIN)
    registry.add("check", check, Access.ADMIN)
