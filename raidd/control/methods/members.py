"""Member administration: `fail`, `remove`, `add` and `replace` (root only).

Members are named by path (any path to the same device or file) or by
member UUID.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from raidd.control.peer import Access
from raidd.control.registry import Registry

if TYPE_CHECKING:
    from raidd.control.server import Call
    from raidd.daemon.arrayservice import ArrayService


def register(registry: Registry, service: ArrayService) -> None:
    """Register `fail`, `remove`, `add` and `replace`."""

    def fail(call: Call, *, member: str, force: bool = False) -> dict[str, Any]:
        """Mark a member faulty: it is no longer read or written."""
        return {"member": service.fail(member, force=force), "state": service.state()}

    def remove(call: Call, *, member: str, force: bool = False) -> dict[str, Any]:
        """Remove a faulty or missing member, or a spare, from the array."""
        service.remove(member, force=force)
        return {"removed": member, "state": service.state()}

    def add(call: Call, *, path: str, force: bool = False) -> dict[str, Any]:
        """Add a spare; a degraded role takes it and is rebuilt onto it at once."""
        return service.add(path, force=force)

    def replace(call: Call, *, old: str, new: str, force: bool = False) -> dict[str, Any]:
        """Replace member `old` with device `new` and return the rebuild job's id."""
        return {"job": service.replace(old, new, force=force).id}

    registry.add("fail", fail, Access.ADMIN)
    registry.add("remove", remove, Access.ADMIN)
    registry.add("add", add, Access.ADMIN)
    registry.add("replace", replace, Access.ADMIN)
