"""The `status` method: array, members, jobs, last commit and watcher health (read access)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from raidd.control.peer import Access
from raidd.control.registry import Registry

if TYPE_CHECKING:
    from raidd.control.server import Call


def register(registry: Registry, status: Callable[[], dict[str, Any]]) -> None:
    """Register `status`, which returns what `status()` builds."""

    def get_status(call: Call) -> dict[str, Any]:
        """Return the array's state, its members, jobs, last commit and watcher health."""
        return status()

    registry.add("status", get_status, Access.READ)
