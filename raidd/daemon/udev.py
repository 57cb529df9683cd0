"""Member devices followed through udev: a vanished member fails, a returning one comes back.

`DeviceFollower.handle(event)` takes each BlockEvent of the device monitor:

- REMOVED: a member whose path resolves to the removed node (or is one of
  its udev links) is failed at once, even beyond the tolerance, since
  the device is gone either way;
- ADDED: the new node's superblock is read without claiming it. A member
  of this array that is absent or failed is taken back and resynced; a
  device without a raidd superblock at a configured spare path is added
  as a spare (and a degraded role is rebuilt onto it).

Only the events of devices that are or could be members are logged at
info (`block_device_added`, `block_device_removed`): a member's or a
configured spare's path, or a device with a raidd superblock. The device
monitor logs every other device at debug.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import structlog

from raidd.array import fail_member, probe
from raidd.array.superblock import MemberState
from raidd.daemon.arrayservice import ArrayService
from raidd.daemon.devices import BlockEvent, Change
from raidd.daemon.startup import expand_member_paths
from raidd.errors import ArrayError, MemberError

log = structlog.get_logger(__name__)


class DeviceFollower:
    """The callback of the device monitor for one array.

    Args:
        service: the array service.
        spare_patterns: the `[array] spares` paths and glob patterns.
    """

    def __init__(self, service: ArrayService, spare_patterns: Iterable[str]) -> None:
        self.service = service
        self.spare_patterns = tuple(spare_patterns)

    def handle(self, event: BlockEvent) -> None:
        if event.change is Change.REMOVED:
            self._removed(event)
        else:
            self._added(event)

    def _removed(self, event: BlockEvent) -> None:
        array = self.service.array
        names = {event.node, *event.links}
        if self._is_member_path(event) or self._is_spare_path(event):
            _log_event(event)
        for slot in list(array.slots):
            if slot.member is None or slot.state not in (
                MemberState.ACTIVE,
                MemberState.REBUILDING,
            ):
                continue
            if slot.path in names or os.path.realpath(slot.path) == event.node:
                log.error(
                    "member_device_removed",
                    array=str(array.uuid),
                    member=slot.path,
                    member_uuid=str(slot.member_uuid),
                    device=event.node,
                )
                fail_member(array, str(slot.member_uuid), vanished=True)

    def _added(self, event: BlockEvent) -> None:
        array = self.service.array
        candidate = probe(event.node)
        sb = candidate.sb
        if sb is not None or self._is_member_path(event) or self._is_spare_path(event):
            _log_event(event)
        if sb is not None and sb.array_uuid == array.uuid:
            slot = next((s for s in array.slots if s.member_uuid == sb.member_uuid), None)
            if slot is None or slot.state in (MemberState.ACTIVE, MemberState.REBUILDING):
                return
            with array.lock:
                if slot.member is not None:
                    # The failed member's old descriptor points at the device that went away.
                    slot.member.close()
                    slot.member = None
            try:
                job = self.service.readd(event.node)
            except (ArrayError, MemberError) as error:
                log.error(
                    "member_device_not_readded",
                    array=str(array.uuid),
                    device=event.node,
                    member_uuid=str(sb.member_uuid),
                    error=str(error),
                )
                return
            log.info(
                "member_device_returned",
                array=str(array.uuid),
                device=event.node,
                member_uuid=str(sb.member_uuid),
                job=job.id if job is not None else None,
            )
            return
        if sb is None and self._is_spare_path(event):
            try:
                record = self.service.add(event.node)
            except (ArrayError, MemberError) as error:
                log.error(
                    "spare_device_not_added",
                    array=str(array.uuid),
                    device=event.node,
                    error=str(error),
                )
                return
            log.info("spare_device_added", array=str(array.uuid), device=event.node, **record)

    def _is_member_path(self, event: BlockEvent) -> bool:
        names = {event.node, *event.links}
        return any(
            slot.path in names or os.path.realpath(slot.path) == event.node
            for slot in self.service.array.slots
            if slot.path
        )

    def _is_spare_path(self, event: BlockEvent) -> bool:
        names = {event.node, *event.links}
        for path in expand_member_paths(self.spare_patterns):
            if path in names or os.path.realpath(path) == event.node:
                return True
        return False


def _log_event(event: BlockEvent) -> None:
    log.info(
        "block_device_" + event.change.value,
        device=event.node,
        size_bytes=event.size_bytes,
        links=list(event.links),
    )
