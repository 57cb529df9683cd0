"""The audit log: `audit` lists records and verifies the chain (root only).

Root only, because records show who restored what and when, across every
user of the control group.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from raidd.control.peer import Access
from raidd.control.protocol import INVALID_PARAMS, RpcError
from raidd.control.registry import Registry
from raidd.store.audit import resolve_path

if TYPE_CHECKING:
    from raidd.control.server import Call
    from raidd.daemon.backups import BackupService
    from raidd.store.store import Store

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def register(
    registry: Registry, backups: BackupService, roots: Callable[[], Mapping[str, str]]
) -> None:
    """Register `audit`; `roots()` returns each watched root's name and path now."""

    def audit(
        call: Call,
        *,
        path: str | None = None,
        since_ns: int | None = None,
        limit: int = DEFAULT_LIMIT,
        verify: bool = False,
    ) -> dict[str, Any]:
        """List audit records newest first, and verify the chain with `verify`."""
        if not 0 <= limit <= MAX_LIMIT:
            raise RpcError(
                INVALID_PARAMS, f"audit: limit must be between 0 and {MAX_LIMIT}, not {limit}"
            )
        hashes = None
        if path is not None:
            root, relative = resolve_path(path, roots())
            hashes = set(backups.store.audit.hashes_above(root, relative))

        def work(store: Store) -> dict[str, Any]:
            records = []
            unreadable: list[str] = []
            if limit:
                records = store.audit_records(
                    path_hashes=hashes, since_ns=since_ns, limit=limit, unreadable=unreadable
                )
            report = store.verify_audit().to_json() if verify else None
            return {"records": records, "unreadable": unreadable, "verify": report}

        return backups.locked(work)

    registry.add("audit", audit, Access.ADMIN)
