"""Administration of an open array: fail, remove, add a spare, replace, re-add.

Members are named by path (matched by device number or inode, so any path
to the same device works) or by member UUID. Every change is committed to
the member tables at once. Growing an array (more roles) is not supported:
`add` always adds a spare, which a degraded role then takes.
"""

from __future__ import annotations

import copy
import threading
import uuid
from collections.abc import Callable

import structlog

from raidd.array.array import Array, Spare
from raidd.array.jobs import Job, Rebuild
from raidd.array.member import Member, MemberError, identify, open_member
from raidd.array.scrub import Scrub
from raidd.array.stripeio import Slot
from raidd.array.superblock import (
    SLOT_OFFSETS,
    SPARE_ROLE,
    SUPERBLOCK_SIZE,
    CheckpointKind,
    MemberEntry,
    MemberState,
    read_superblocks,
    write_superblock,
)
from raidd.errors import ArrayError

log = structlog.get_logger(__name__)


def find_slot(array: Array, name: str) -> Slot:
    """Return the slot whose member is `name` (a path or a member UUID).

    Raises:
        ArrayError: no member of the array matches.
    """
    try:
        wanted_uuid: uuid.UUID | None = uuid.UUID(name)
    except ValueError:
        wanted_uuid = None
    identity = None
    if wanted_uuid is None:
        try:
            identity = identify(name)
        except MemberError:
            identity = None
    for slot in array.slots:
        if wanted_uuid is not None and slot.member_uuid == wanted_uuid:
            return slot
        if identity is not None and slot.member is not None and slot.member.identity == identity:
            return slot
        if slot.path and slot.path == name:
            return slot
    raise ArrayError(f"{name} is not a member of array {array.name or array.uuid}")


def _check_tolerance_after(array: Array, role: int, force: bool, action: str) -> None:
    unusable = [s.role for s in array.slots if s.state is not MemberState.ACTIVE or s.role == role]
    if not array.geometry.survives(unusable) and not force:
        raise ArrayError(
            f"{action} role {role} would leave roles {sorted(set(unusable))} unusable, beyond "
            f"the array's tolerance of {array.geometry.tolerance}; pass --force to do it anyway"
        )


def fail_member(array: Array, name: str, *, force: bool = False, vanished: bool = False) -> Slot:
    """Mark a member failed: it is no longer read or written.

    A failure that would leave more roles unusable than the level tolerates
    is refused before anything is written, with or without `force`: the
    array could not be read or assembled afterwards. `force` is needed to
    fail an in-sync member of an array that is already degraded (one more
    fault then loses data, RAID6 and three-way mirrors). `vanished` records
    a member whose device is gone: it is failed whatever the tolerance,
    since it can no longer serve.

    Raises:
        ArrayError: beyond the tolerance, or degraded without `force`.
    """
    with array.lock:
        slot = find_slot(array, name)
        if not vanished:
            _check_fail_allowed(array, slot, force)
        array._member_failed(slot, "device vanished" if vanished else "failed by the operator")
        array.commit_state()
        return slot


def _check_fail_allowed(array: Array, slot: Slot, force: bool) -> None:
    if slot.state is not MemberState.ACTIVE:
        return  # failing a rebuilding, failed or absent member loses no redundancy
    others = [s.role for s in array.slots if s.state is not MemberState.ACTIVE]
    unusable = sorted({*others, slot.role})
    name = array.name or array.uuid
    if not array.geometry.survives(unusable):
        raise ArrayError(
            f"failing role {slot.role} ({slot.path}) would leave roles {unusable} of array "
            f"{name} unusable, beyond the array's tolerance of {array.geometry.tolerance}: it "
            "could no longer be read or assembled, so nothing was changed (--force does not "
            "override this); replace or rebuild the other members first"
        )
    if others and not force:
        raise ArrayError(
            f"array {name} is already degraded (roles {others} not in sync); failing role "
            f"{slot.role} ({slot.path}) leaves it with less redundancy; pass --force to fail it"
        )


def remove_member(array: Array, name: str, *, force: bool = False) -> None:
    """Remove a failed, absent or (with `force`) active member from the array."""
    with array.lock:
        spare = next(
            (s for s in array.spares if s.path == name or str(s.member_uuid) == name), None
        )
        if spare is not None:
            array.spares.remove(spare)
            _set_table_state(array, spare.member_uuid, MemberState.REMOVED)
            spare.member.close()
            array.commit_state()
            return
        slot = find_slot(array, name)
        if slot.state is MemberState.ACTIVE:
            if not force:
                raise ArrayError(f"member {slot.path} is active; fail it first, or pass --force")
            _check_tolerance_after(array, slot.role, force, "removing")
        _set_table_state(array, slot.member_uuid, MemberState.REMOVED)
        if slot.member is not None:
            slot.member.close()
        array.slots[slot.role] = Slot(slot.role, uuid.UUID(int=0), MemberState.ABSENT, 0, "", None)
        array.commit_state()


def _set_table_state(array: Array, member_uuid: uuid.UUID, state: MemberState) -> None:
    for entry in array._table:
        if entry.member_uuid == member_uuid:
            entry.state = state


def _open_new_member(array: Array, path: str, force: bool) -> Member:
    member = open_member(path, writable=True, claim=True)
    try:
        template = array._template
        needed = template.data_offset + template.data_size + SUPERBLOCK_SIZE
        if member.size < needed:
            raise ArrayError(
                f"member {path} has {member.size} bytes; array {array.name or array.uuid} "
                f"needs {needed} bytes per member"
            )
        copies = read_superblocks(member)
        if copies.newest is not None and not force:
            raise ArrayError(
                f"member {path} already carries a raidd superblock (array "
                f"{copies.newest.array_uuid}); pass --force to overwrite it"
            )
    except BaseException:
        member.close()
        raise
    return member


def add_spare(array: Array, path: str, *, force: bool = False) -> Spare:
    """Write this array's spare superblock to `path` and keep it as a spare.

    A degraded role takes the spare at once and is rebuilt onto it by the
    caller (see `start_spare_rebuilds`).
    """
    with array.lock:
        if len(array._table) >= 32:
            raise ArrayError("the member table is full (32 entries); remove old members first")
        member = _open_new_member(array, path, force)
        spare = Spare(uuid.uuid4(), path, member)
        array._table.append(MemberEntry(spare.member_uuid, SPARE_ROLE, MemberState.SPARE, 0, path))
        array.spares.append(spare)
        _write_spare_superblock(array, spare)
        array.commit_state()
        log.info("spare_added", array=str(array.uuid), member=path)
        return spare


def _write_spare_superblock(array: Array, spare: Spare, *, both_slots: bool = False) -> None:
    sb = copy.copy(array._template)
    sb.member_uuid = spare.member_uuid
    sb.role = SPARE_ROLE
    sb.members = [copy.copy(e) for e in array._table]
    write_superblock(spare.member, sb)
    if both_slots:
        # The older slot gets the same content one event earlier, so no copy keeps old keyslots.
        sb.event_counter -= 1
        spare.member.pwrite(sb.pack(), SLOT_OFFSETS[sb.event_counter % 2])
    spare.member.fsync()


def rewrite_spare_superblocks(array: Array) -> None:
    """Rewrite every copy on every present spare with the current superblock content."""
    with array.lock:
        for spare in array.spares:
            _write_spare_superblock(array, spare, both_slots=True)


def _joined_after(array: Array) -> int:
    """Return the `rebuild_since` of a member that starts receiving writes now.

    Stripes already written but not committed carry `written_at` = event + 1
    and did not reach the new member, so only later ones (event + 2 on,
    after the commit that adds it) count as written to it.
    """
    array.flush()
    return array.event + 1


def _start_rebuild_slot(array: Array, role: int, member: Member, member_uuid: uuid.UUID) -> Slot:
    old = array.slots[role]
    if old.member_uuid.int and old.state is not MemberState.REMOVED:
        _set_table_state(array, old.member_uuid, MemberState.FAILED)
    if old.member is not None:
        old.member.close()
    slot = Slot(role, member_uuid, MemberState.REBUILDING, 0, member.path, member)
    slot.rebuild_since = _joined_after(array)
    array.slots[role] = slot
    _set_table_state(array, member_uuid, MemberState.REBUILDING)
    return slot


def use_spare(array: Array, role: int) -> Slot | None:
    """Put the first spare into a failed or absent role; return its slot (or None)."""
    with array.lock:
        if not array.spares or array.slots[role].state is MemberState.ACTIVE:
            return None
        spare = array.spares.pop(0)
        slot = _start_rebuild_slot(array, role, spare.member, spare.member_uuid)
        array.checkpoint = Rebuild(array, slot).checkpoint()
        array.commit_state()
        log.info("spare_rebuild_started", role=role, member=spare.path)
        return slot


def replace_member(
    array: Array, old_name: str, new_path: str, *, force: bool = False
) -> tuple[Slot, Rebuild]:
    """Replace a member with `new_path` and return the rebuild job that fills it.

    If the old member still reads, it keeps serving until the job finishes
    (hot replace, as md does): the job copies every stripe through
    verified reconstruction, and `finish` removes the old member only then.
    """
    with array.lock:
        old = find_slot(array, old_name)
        member = _open_new_member(array, new_path, force)
        member_uuid = uuid.uuid4()
        array._table.append(
            MemberEntry(member_uuid, old.role, MemberState.REBUILDING, 0, new_path)
        )
        if old.state is MemberState.ACTIVE and old.member is not None:
            shadow = Slot(old.role, member_uuid, MemberState.REBUILDING, 0, new_path, member)
            shadow.rebuild_since = _joined_after(array)
            array.io.shadows.append(shadow)
            job: Rebuild = HotReplace(array, shadow, old)
        else:
            slot = _start_rebuild_slot(array, old.role, member, member_uuid)
            job = Rebuild(array, slot)
        array.checkpoint = job.checkpoint()
        array.commit_state()
        return old, job


class HotReplace(Rebuild):
    """A rebuild onto a shadow member while the old member keeps serving the role."""

    def __init__(self, array: Array, shadow: Slot, old: Slot, **kwargs: object) -> None:
        super().__init__(array, shadow, **kwargs)
        self.old = old

    def finish(self) -> None:
        with self.array.lock:
            self.array.io.shadows.remove(self.slot)
            _set_table_state(self.array, self.old.member_uuid, MemberState.REMOVED)
            if self.old.member is not None:
                self.old.member.close()
            self.array.slots[self.slot.role] = self.slot
        super().finish()


def re_add(array: Array, path: str, *, force: bool = False) -> Rebuild:
    """Take back a stale member and return the resync job for what it missed.

    Raises:
        ArrayError: the path is not a stale member of this array, or it was
            written while away (split brain) and `force` is not given.
    """
    with array.lock:
        member = open_member(path, writable=True, claim=True)
        try:
            sb = read_superblocks(member).newest
            if sb is None or sb.array_uuid != array.uuid:
                raise ArrayError(f"{path} is not a member of array {array.name or array.uuid}")
            slot = next((s for s in array.slots if s.member_uuid == sb.member_uuid), None)
            entry = next((e for e in array._table if e.member_uuid == sb.member_uuid), None)
            if slot is None or entry is None or slot.member is not None:
                raise ArrayError(f"member {path} ({sb.member_uuid}) is not a stale member here")
            diverged = sb.event_counter > entry.in_sync_event
            if diverged and not force:
                raise ArrayError(
                    f"member {path} was written while away (event {sb.event_counter}, last in "
                    f"sync at {entry.in_sync_event}); pass --force to rebuild it in full"
                )
        except BaseException:
            member.close()
            raise
        slot.member = member
        slot.path = path
        slot.state = MemberState.REBUILDING
        slot.rebuild_next = 0
        slot.rebuild_since = _joined_after(array)
        # The member's own counter may be older than its table entry (a disk
        # swapped back from an old copy), so resync from the older of the two.
        slot.resync_base = 0 if diverged else min(entry.in_sync_event, sb.event_counter)
        job = Rebuild(array, slot)
        array.checkpoint = job.checkpoint()
        array.commit_state()
        log.info("member_re_added", member=path, since_event=slot.resync_base)
        return job


def resume_job(array: Array) -> Job | None:
    """Return the rebuild, resync or scrub job the superblock checkpoint records, if any.

    A hot replace target or a rebuilding member always gets its job back
    (from its checkpoint, or from the start when the checkpoint names
    another job); a scrub resumes at its checkpoint.
    """
    for shadow in array.io.shadows:
        return HotReplace(array, shadow, array.slots[shadow.role])
    for slot in array.slots:
        if slot.state is MemberState.REBUILDING and slot.member is not None:
            return Rebuild(array, slot)
    if array.checkpoint.kind is CheckpointKind.SCRUB:
        return Scrub(array, start=array.checkpoint.next_stripe)
    return None


class AutoRebuild:
    """Rebuild onto a spare, in a background thread, whenever a member fails."""

    def __init__(self, array: Array, job_options: dict[str, float] | None = None) -> None:
        self.array = array
        self.options = job_options or {}
        self.threads: list[threading.Thread] = []
        self.jobs: list[Rebuild] = []
        array.failure_listeners.append(self._on_failure)

    def _on_failure(self, slot: Slot, reason: str) -> None:
        # Runs inside the failing operation; the rebuild starts in its own thread.
        thread = threading.Thread(target=self._rebuild, args=(slot.role,), daemon=True)
        self.threads.append(thread)
        thread.start()

    def _rebuild(self, role: int) -> None:
        try:
            slot = use_spare(self.array, role)
            if slot is None:
                return
            job = Rebuild(self.array, slot, **self.options)  # type: ignore[arg-type]
            self.jobs.append(job)
            job.run()
        except ArrayError as error:
            log.error("spare_rebuild_failed", role=role, error=str(error))

    def join(self, timeout: float | None = None) -> None:
        for thread in list(self.threads):
            thread.join(timeout)


Callback = Callable[[Slot, str], None]
