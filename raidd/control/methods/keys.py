"""Keyslots: `key.list`, `key.add`, `key.remove` (root only).

`key.add` takes the new key file's content in base64 (raidctl creates the
file itself, with the caller's permissions) or a passphrase. Neither is
ever logged.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any

from raidd.control.peer import Access
from raidd.control.protocol import INVALID_PARAMS, RpcError
from raidd.control.registry import Registry

if TYPE_CHECKING:
    from raidd.control.server import Call
    from raidd.daemon.arrayservice import ArrayService


def register(registry: Registry, service: ArrayService) -> None:
    """Register `key.list`, `key.add` and `key.remove`."""

    def key_list(call: Call) -> list[dict[str, Any]]:
        """List the keyslots in use: number, kind and detail."""
        return service.key_list()

    def key_add(
        call: Call, *, keyfile: str | None = None, passphrase: str | None = None
    ) -> dict[str, int]:
        """Add a keyslot for a key file (content in base64) or a passphrase."""
        secret = None
        if keyfile is not None:
            try:
                secret = base64.b64decode(keyfile, validate=True)
            except binascii.Error:
                raise RpcError(INVALID_PARAMS, "key.add: keyfile must be base64") from None
        return {"slot": service.key_add(keyfile_secret=secret, passphrase=passphrase)}

    def key_remove(call: Call, *, slot: int, force: bool = False) -> dict[str, int]:
        """Remove a keyslot from every superblock copy of the present members.

        The last slot that the daemon's own key file opens is removed only with `force`.
        """
        service.key_remove(slot, force=force)
        return {"removed": slot}

    registry.add("key.list", key_list, Access.ADMIN)
    registry.add("key.add", key_add, Access.ADMIN)
    registry.add("key.remove", key_remove, Access.ADMIN)
