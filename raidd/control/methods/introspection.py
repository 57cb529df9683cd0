"""The `methods` method: what the caller may call."""

from __future__ import annotations

from typing import TYPE_CHECKING

from raidd.control.peer import Access
from raidd.control.registry import Registry

if TYPE_CHECKING:
    from raidd.control.server import Call


def register(registry: Registry) -> None:
    """Register `methods`, which lists the methods the caller may call."""

    def list_methods(call: Call) -> list[dict[str, str]]:
        """List the methods you may call, with their access and summary."""
        return [
            {"name": method.name, "access": method.access.value, "summary": method.summary}
            for method in (registry.get(name) for name in registry.names())
            if call.may_call(method)
        ]

    registry.add("methods", list_methods, Access.READ)
