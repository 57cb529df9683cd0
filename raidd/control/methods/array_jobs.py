"""Array jobs and their rate limits: `rebuild`, `scrub`, `limits`, `limits.set` (root only)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from raidd.control.peer import Access
from raidd.control.protocol import INVALID_PARAMS, RpcError
from raidd.control.registry import Registry

if TYPE_CHECKING:
    from raidd.control.server import Call
    from raidd.daemon.arrayservice import ArrayService


def register(registry: Registry, service: ArrayService) -> None:
    """Register `rebuild`, `scrub`, `limits` and `limits.set`."""

    def rebuild(call: Call, *, member: str | None = None) -> dict[str, Any]:
        """Start or resume the rebuild of a rebuilding member; return its job id."""
        return {"job": service.rebuild(member).id}

    def scrub(call: Call, *, repair: bool = True) -> dict[str, Any]:
        """Start a scrub of every allocated stripe; return its job id."""
        return {"job": service.scrub(repair=repair).id}

    def limits(call: Call) -> dict[str, float]:
        """Return the rebuild and scrub rate bounds in MiB/s."""
        return service.rates()

    def set_limits(call: Call, *, min_mib_s: float, max_mib_s: float) -> dict[str, float]:
        """Set the rebuild and scrub rate bounds in MiB/s, for the running job too."""
        minimum, maximum = float(min_mib_s), float(max_mib_s)
        if not (math.isfinite(minimum) and math.isfinite(maximum)) or minimum <= 0:
            raise RpcError(
                INVALID_PARAMS,
                f"invalid rate limits: minimum {min_mib_s}, maximum {max_mib_s} MiB/s; the "
                "minimum must be a finite number more than 0 (as limits.rebuild_min_mib_s) "
                "and the maximum a finite number, 0 for unlimited",
            )
        return service.set_rates(minimum, maximum)

    registry.add("rebuild", rebuild, Access.ADMIN)
    registry.add("scrub", scrub, Access.ADMIN)
    registry.add("limits", limits, Access.ADMIN)
    registry.add("limits.set", set_limits, Access.ADMIN)
