"""Assembly: find an array's members by their superblocks and open it.

Members are matched by array UUID, member UUID and role, never by path or
argument order. The paths given are only where to look; the newest member
table's recorded paths are searched as well. Every path that is not used is
reported with its path, UUID and the reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import structlog

from parity import Geometry
from raidd.array.array import Array, AssemblyReport, Spare
from raidd.array.codec import strip_checksum
from raidd.array.lock import ArrayLock, default_lock_dir
from raidd.array.member import (
    DeviceIdentity,
    Member,
    MemberError,
    backing_identity,
    identify,
    open_member,
)
from raidd.array.stripeio import ErrorCounters, Slot
from raidd.array.superblock import (
    CheckpointKind,
    MemberState,
    MemberSuperblocks,
    Superblock,
    UnsupportedFormatError,
    read_superblocks,
    size_problem,
)
from raidd.errors import ArrayError

log = structlog.get_logger(__name__)

MemberOpener = Callable[[str, bool], Member]


def default_opener(path: str, writable: bool) -> Member:
    return open_member(path, writable=writable, claim=writable)


@dataclass
class Candidate:
    """A probed path: its identity and superblocks, or why it cannot be used."""

    path: str
    identity: DeviceIdentity | None
    superblocks: MemberSuperblocks | None
    error: str | None
    size: int | None = None
    also: tuple[DeviceIdentity, ...] = ()

    @property
    def sb(self) -> Superblock | None:
        return self.superblocks.newest if self.superblocks else None


def probe(path: str) -> Candidate:
    """Read a path's superblocks without claiming it (works beside a running daemon)."""
    try:
        identity = identify(path)
        backing = backing_identity(path)
        member = open_member(path, writable=False, claim=False)
    except MemberError as error:
        return Candidate(path, None, None, str(error))
    also = () if backing is None else (backing,)
    try:
        copies = read_superblocks(member, refuse_newer=False)
    except MemberError as error:
        return Candidate(path, identity, None, str(error), member.size, also)
    finally:
        member.close()
    if copies.newest is None:
        reason = copies.unsupported or f"no valid raidd superblock ({copies.error})"
        return Candidate(path, identity, copies, reason, member.size, also)
    return Candidate(path, identity, copies, None, member.size, also)


def _describe(candidate: Candidate) -> str:
    sb = candidate.sb
    if sb is None:
        return candidate.path
    return f"{candidate.path} (member {sb.member_uuid}, event {sb.event_counter})"


def _reject(
    report: AssemblyReport,
    candidate: Candidate,
    reason: str,
    stale: bool = False,
    kind: str = "",
) -> None:
    sb = candidate.sb
    item = {
        "path": candidate.path,
        "member_uuid": str(sb.member_uuid) if sb else "",
        "array_uuid": str(sb.array_uuid) if sb else "",
        "reason": reason,
        "kind": kind,
    }
    (report.stale if stale else report.rejected).append(item)
    log.warning("member_not_used", stale=stale, **item)


def _probe_all(paths: Iterable[str]) -> tuple[list[Candidate], AssemblyReport]:
    report = AssemblyReport()
    seen: dict[DeviceIdentity, str] = {}
    candidates = []
    for path in paths:
        candidate = probe(str(path))
        if candidate.superblocks is not None and candidate.superblocks.unsupported:
            raise UnsupportedFormatError(f"member {path}: {candidate.superblocks.unsupported}")
        keys = [] if candidate.identity is None else [candidate.identity, *candidate.also]
        same = next((seen[key] for key in keys if key in seen), None)
        if same is not None:
            log.info("member_path_duplicate", path=candidate.path, same_as=same)
            continue
        for key in keys:
            seen[key] = candidate.path
        candidates.append(candidate)
    return candidates, report


def _choose_array(candidates: list[Candidate], array_uuid: uuid.UUID | None) -> uuid.UUID:
    arrays: dict[uuid.UUID, list[str]] = {}
    for candidate in candidates:
        if candidate.sb is not None:
            arrays.setdefault(candidate.sb.array_uuid, []).append(candidate.path)
    if array_uuid is not None:
        if array_uuid not in arrays:
            raise ArrayError(
                f"no member of array {array_uuid} found among "
                f"{', '.join(c.path for c in candidates) or 'no paths'}"
            )
        return array_uuid
    if not arrays:
        reasons = "; ".join(f"{c.path}: {c.error}" for c in candidates)
        raise ArrayError(f"no raidd member found ({reasons or 'no paths given'})")
    if len(arrays) > 1:
        listing = "; ".join(f"array {u}: {', '.join(p)}" for u, p in arrays.items())
        raise ArrayError(
            f"the paths hold several arrays ({listing}); give the paths of one array only, "
            "or configure the uuid of the array to use"
        )
    return next(iter(arrays))


def _find_duplicates(members: list[Candidate], report: AssemblyReport) -> list[Candidate]:
    by_uuid: dict[uuid.UUID, list[Candidate]] = {}
    for candidate in members:
        assert candidate.sb is not None
        by_uuid.setdefault(candidate.sb.member_uuid, []).append(candidate)
    kept = []
    for member_uuid, group in by_uuid.items():
        if len(group) == 1:
            kept.append(group[0])
            continue
        paths = ", ".join(c.path for c in group)
        for candidate in group:
            _reject(
                report, candidate, f"member UUID {member_uuid} found on several devices: {paths}"
            )
    return kept


def _check_split_brain(members: list[Candidate], newest: Superblock) -> None:
    halves = []
    for candidate in members:
        sb = candidate.sb
        assert sb is not None
        if sb.role < 0:
            continue
        entry = newest.entry(sb.member_uuid)
        same_event = sb.event_counter == newest.event_counter
        if (same_event and sb.commit_tag != newest.commit_tag) or (
            entry is not None
            and entry.state in (MemberState.FAILED, MemberState.ABSENT, MemberState.REMOVED)
            and sb.event_counter > entry.in_sync_event
        ):
            halves.append(candidate)
    if halves:
        current = [
            c.path
            for c in members
            if c.sb is not None
            and c.sb.event_counter == newest.event_counter
            and c.sb.commit_tag == newest.commit_tag
        ]
        others = ", ".join(_describe(c) for c in halves)
        raise ArrayError(
            f"split brain in array {newest.array_uuid}: {others} were written while the members "
            f"{', '.join(current)} were away, and those were written too; neither half is used. "
            "Assemble with only the paths of the half to keep, then add the other half's "
            "members back with --force"
        )


def _classify(candidate: Candidate, newest: Superblock, report: AssemblyReport) -> str:
    """Return "current", "behind" (one commit, roll-forward candidate), "spare" or "unused"."""
    sb = candidate.sb
    assert sb is not None
    entry = newest.entry(sb.member_uuid)
    if entry is None:
        _reject(report, candidate, f"not in the member table of array {newest.array_uuid}")
        return "unused"
    if entry.state is MemberState.SPARE:
        return "spare"
    if entry.state in (MemberState.FAILED, MemberState.ABSENT, MemberState.REMOVED):
        reason = f"marked {entry.state.name.lower()} in the newest member table"
        _reject(report, candidate, f"stale: {reason} (event {newest.event_counter})", stale=True)
        return "unused"
    if sb.event_counter == newest.event_counter:
        return "current"
    if sb.event_counter == newest.event_counter - 1 and entry.state is MemberState.ACTIVE:
        return "behind"
    _reject(
        report,
        candidate,
        f"stale: missed commits {sb.event_counter + 1}..{newest.event_counter}",
        stale=True,
    )
    return "unused"


def _recorded_paths(members: list[Candidate], known: set[str]) -> list[str]:
    extra = []
    for candidate in members:
        assert candidate.sb is not None
        for entry in candidate.sb.members:
            if entry.path and entry.path not in known and os.path.exists(entry.path):
                extra.append(entry.path)
                known.add(entry.path)
    return extra


def assemble(
    paths: Iterable[str | os.PathLike[str]],
    *,
    array_uuid: uuid.UUID | str | None = None,
    read_only: bool = False,
    lock_dir: str | os.PathLike[str] | None = None,
    opener: MemberOpener | None = None,
    search_recorded_paths: bool = True,
    force: bool = False,
) -> Array:
    """Find the members of one array among `paths` and open it.

    With `force`, an array that is beyond its tolerance only because present
    members are marked failed (or absent) in the newest member table takes
    them back, as `mdadm --assemble --force` does: each one whose strips of
    every stripe written since its own last commit match their checksums
    serves its role again (`report.forced` lists them). A member that does
    not match stays out, and the assembly fails as without `force`.

    Args:
        paths: where to look (configured member paths); order does not matter.
        array_uuid: the array to open; required when the paths hold several.
        read_only: open without claims or lock and never write.
        lock_dir: directory of the array lock file (default $RAIDD_LOCK_DIR or /run/raidd).
        opener: opens a member for use (tests pass a fault-injecting one).
        search_recorded_paths: also look at the paths recorded in the member table.
        force: take back members marked failed when the array needs them (see above).

    Returns:
        The open Array; `array.report` lists degraded roles and unused members.

    Raises:
        ArrayError: no array, several arrays, split brain, or more members
            missing than the level tolerates.
        ArrayBusyError: another process holds the array.
    """
    wanted = uuid.UUID(str(array_uuid)) if array_uuid is not None else None
    texts = [os.fspath(p) for p in paths]
    candidates, report = _probe_all(texts)
    chosen = _choose_array(candidates, wanted)
    if search_recorded_paths:
        ours = [c for c in candidates if c.sb is not None and c.sb.array_uuid == chosen]
        known = {c.path for c in candidates} | set(texts)
        more, _ = _probe_all(_recorded_paths(ours, known))
        identities = {key for c in candidates for key in (c.identity, *c.also)}
        candidates += [c for c in more if not identities & {c.identity, *c.also}]
    members = []
    for candidate in candidates:
        sb = candidate.sb
        if sb is None:
            _reject(report, candidate, candidate.error or "no valid raidd superblock")
        elif sb.array_uuid != chosen:
            _reject(report, candidate, f"member of another array {sb.array_uuid}")
        elif candidate.size is not None and size_problem(candidate.path, candidate.size, sb):
            problem = size_problem(candidate.path, candidate.size, sb)
            _reject(report, candidate, problem or "", kind="too_small")
        else:
            members.append(candidate)
    members = _find_duplicates(members, report)
    active = [c for c in members if c.sb is not None and c.sb.role >= 0]
    if not active:
        unused = "; ".join(f"{item['path']}: {item['reason']}" for item in report.rejected)
        raise ArrayError(
            f"array {chosen}: no usable active member found, only spares"
            f"{f' (not used: {unused})' if unused else ''}"
        )
    newest = max((c.sb for c in active if c.sb is not None), key=lambda sb: sb.event_counter)
    _check_split_brain(active, newest)
    kinds = {c.path: _classify(c, newest, report) for c in members}
    for candidate in members:
        assert candidate.sb is not None and candidate.superblocks is not None
        invalid = {
            copy.slot: copy.error or "invalid"
            for copy in candidate.superblocks.copies
            if copy.superblock is None
        }
        if invalid:
            report.invalid_copies[str(candidate.sb.member_uuid)] = invalid
    if force:
        _choose_forced(newest, members, kinds, report)
    directory = Path(lock_dir) if lock_dir is not None else default_lock_dir()
    return _open(newest, members, kinds, report, read_only, directory, opener or default_opener)


def _choose_forced(
    newest: Superblock, members: list[Candidate], kinds: dict[str, str], report: AssemblyReport
) -> None:
    """Mark as "forced" the members marked failed or absent that the array needs to start."""
    usable = {c.sb.member_uuid for c in members if c.sb is not None and kinds[c.path] != "unused"}
    served = {
        e.role
        for e in newest.members
        if e.state in (MemberState.ACTIVE, MemberState.REBUILDING) and e.member_uuid in usable
    }
    unusable = [role for role in range(newest.member_count) if role not in served]
    if _survives(newest, unusable):
        return  # the normal assembly works; a returning member is resynced instead
    for candidate in sorted(members, key=lambda c: -(c.sb.event_counter if c.sb else 0)):
        sb = candidate.sb
        entry = newest.entry(sb.member_uuid) if sb is not None else None
        if (
            entry is None
            or kinds[candidate.path] != "unused"
            or entry.state not in (MemberState.FAILED, MemberState.ABSENT)
            or entry.role in served
        ):
            continue
        kinds[candidate.path] = "forced"
        served.add(entry.role)
        report.stale = [item for item in report.stale if item["path"] != candidate.path]


def _open(
    newest: Superblock,
    members: list[Candidate],
    kinds: dict[str, str],
    report: AssemblyReport,
    read_only: bool,
    lock_dir: Path,
    opener: MemberOpener,
) -> Array:
    by_member = {
        c.sb.member_uuid: c for c in members if c.sb is not None and kinds[c.path] != "unused"
    }
    lock = None if read_only else ArrayLock.acquire(lock_dir, newest.array_uuid, newest.array_name)
    opened: list[Member] = []
    try:
        slots, behind, spares, shadows = _build_slots(
            newest, by_member, kinds, read_only, opener, opened
        )
        used = {slot.member_uuid for slot in [*slots, *shadows]}
        used |= {spare.member_uuid for spare in spares}
        for member_uuid, candidate in by_member.items():
            if member_uuid not in used:
                _reject(
                    report,
                    candidate,
                    "not used: another member serves its role (an "
                    "interrupted replace); run the replace again",
                )
        missing = [slot.role for slot in slots if slot.member is None]
        unusable = missing + [s.role for s in slots if s.state is MemberState.REBUILDING]
        if not _survives(newest, unusable):
            raise ArrayError(_beyond_tolerance_message(newest, slots, missing, report))
        array = Array(newest, slots, spares, lock=lock, read_only=read_only, report=report)
        array.io.shadows.extend(shadows)
        array.load_map()
        _check_forced(array, newest, by_member, kinds, report)
        _roll_forward(array, behind, report)
        _finish(array, newest, report, read_only)
        return array
    except BaseException:
        for member in opened:
            member.close()
        if lock is not None:
            lock.release()
        raise


def _survives(newest: Superblock, unusable: list[int]) -> bool:
    return Geometry(newest.level, newest.member_count, newest.strip_size).survives(unusable)


def _build_slots(
    newest: Superblock,
    by_member: dict[uuid.UUID, Candidate],
    kinds: dict[str, str],
    read_only: bool,
    opener: MemberOpener,
    opened: list[Member],
) -> tuple[list[Slot], list[Slot], list[Spare], list[Slot]]:
    slots: list[Slot] = []
    behind: list[Slot] = []
    shadows: list[Slot] = []
    for role in range(newest.member_count):
        entries = [
            e
            for e in newest.members
            if e.role == role and e.state in (MemberState.ACTIVE, MemberState.REBUILDING)
        ]
        # An interrupted hot replace leaves an active and a rebuilding entry: the active wins.
        entries.sort(key=lambda e: e.state is not MemberState.ACTIVE)
        entry = entries[0] if entries else None
        if entry is None:
            # Keep the failed or absent member's identity, so `re_add` can find its slot.
            gone = [
                e
                for e in newest.members
                if e.role == role and e.state in (MemberState.FAILED, MemberState.ABSENT)
            ]
            forced = [e for e in gone if kinds.get(_path_of(by_member, e.member_uuid)) == "forced"]
            if forced:
                # Taken back by a forced assembly: it serves its role, checked after the map loads.
                candidate = by_member[forced[0].member_uuid]
                member = opener(candidate.path, not read_only)
                opened.append(member)
                slots.append(
                    Slot(
                        role,
                        forced[0].member_uuid,
                        MemberState.ACTIVE,
                        forced[0].in_sync_event,
                        os.path.abspath(candidate.path),
                        member,
                    )
                )
            elif gone:
                last = gone[-1]
                slots.append(
                    Slot(role, last.member_uuid, last.state, last.in_sync_event, last.path, None)
                )
            else:
                slots.append(Slot(role, uuid.UUID(int=0), MemberState.ABSENT, 0, "", None))
            continue
        slot = Slot(role, entry.member_uuid, entry.state, entry.in_sync_event, entry.path, None)
        candidate = by_member.get(entry.member_uuid)
        if candidate is not None:
            member = opener(candidate.path, not read_only)
            opened.append(member)
            if member.identity != candidate.identity:
                raise ArrayError(f"member {candidate.path} changed while the array was assembled")
            slot.member = member
            # The member table stores absolute paths, so a later run from another
            # directory still finds the member at its recorded path.
            slot.path = os.path.abspath(candidate.path)
            if kinds[candidate.path] == "behind":
                behind.append(slot)
        if entry.state is MemberState.REBUILDING:
            _restore_progress(slot, newest)
        slots.append(slot)
        target = next((e for e in entries[1:] if e.member_uuid in by_member), None)
        if slot.member is not None and slot.state is MemberState.ACTIVE and target is not None:
            # A hot replace was under way: its target comes back as the role's shadow.
            candidate = by_member[target.member_uuid]
            member = opener(candidate.path, not read_only)
            opened.append(member)
            shadow = Slot(
                role,
                target.member_uuid,
                MemberState.REBUILDING,
                0,
                os.path.abspath(candidate.path),
                member,
            )
            _restore_progress(shadow, newest)
            shadows.append(shadow)
    _restore_counters(newest, [*slots, *shadows])
    spares = []
    for entry in newest.members:
        candidate = by_member.get(entry.member_uuid)
        if entry.state is MemberState.SPARE and candidate is not None:
            member = opener(candidate.path, not read_only)
            opened.append(member)
            spares.append(Spare(entry.member_uuid, os.path.abspath(candidate.path), member))
    return slots, behind, spares, shadows


def _restore_counters(newest: Superblock, slots: list[Slot]) -> None:
    """Give each slot the error counts its member table entry kept across restarts."""
    for slot in slots:
        entry = newest.entry(slot.member_uuid) if slot.member_uuid.int else None
        if entry is not None:
            slot.counters = ErrorCounters(*entry.errors)


def _path_of(by_member: dict[uuid.UUID, Candidate], member_uuid: uuid.UUID) -> str:
    candidate = by_member.get(member_uuid)
    return candidate.path if candidate is not None else ""


def _check_forced(
    array: Array,
    newest: Superblock,
    by_member: dict[uuid.UUID, Candidate],
    kinds: dict[str, str],
    report: AssemblyReport,
) -> None:
    """Keep a forced member only if it holds every stripe written since its own last commit.

    A member marked failed missed the commits after its own superblock's
    event; its strips of the stripes those commits wrote must match the
    map's checksums, or its data is not the newest commit's.

    Raises:
        ArrayError: a forced member does not match, and the array is beyond its tolerance.
    """
    forced = [
        slot
        for slot in array.slots
        if slot.member is not None and kinds.get(_path_of(by_member, slot.member_uuid)) == "forced"
    ]
    for slot in forced:
        candidate = by_member[slot.member_uuid]
        assert candidate.sb is not None and slot.member is not None
        own_event = candidate.sb.event_counter
        bad = []
        for stripe in array.map.allocated_stripes():
            written_at = int(array.map.entries[stripe]["written_at"])
            if written_at <= own_event:
                continue
            strip = array.io.read_strip(slot, int(stripe), written_at)
            expected = int(array.map.entries[stripe]["checksums"][slot.role])
            if strip is None or strip_checksum(strip) != expected:
                bad.append(int(stripe))
        if not bad:
            report.forced.append(slot.path)
            log.warning(
                "member_forced_back",
                member=slot.path,
                role=slot.role,
                member_event=own_event,
                event_counter=newest.event_counter,
            )
            continue
        _reject(
            report,
            candidate,
            f"marked failed, and not taken back by force: its strips of {len(bad)} stripes "
            f"written after its event {own_event} do not match (first: stripe {bad[0]})",
            stale=True,
        )
        slot.member.close()
        slot.member = None
        slot.state = MemberState.FAILED
    if forced:
        array.io.check_tolerance(f"array {array.name or array.uuid} (forced assembly)")


def _restore_progress(slot: Slot, newest: Superblock) -> None:
    """Set how far a rebuilding member got, from the checkpoint when it names this member."""
    cp = newest.checkpoint
    if cp.member_uuid != slot.member_uuid:
        # No checkpoint of its own: every stripe it holds is suspect, so start again.
        slot.rebuild_next, slot.rebuild_since = 0, newest.event_counter
        return
    slot.rebuild_next = cp.next_stripe
    if cp.kind is CheckpointKind.RESYNC:
        # Stripes written since the resync began went to the member too, but
        # which commit that was is not recorded: resync them again.
        slot.resync_base = cp.since_event
        slot.rebuild_since = newest.event_counter
    else:
        slot.rebuild_since = cp.since_event


def _beyond_tolerance_message(
    newest: Superblock, slots: list[Slot], missing: list[int], report: AssemblyReport
) -> str:
    """Name each unusable role: marked failed (its device present or not) or missing."""
    found = {item["member_uuid"]: item["path"] for item in report.stale}
    names = []
    marked = False
    for role in missing:
        entries = [
            e for e in newest.members if e.role == role and e.state is not MemberState.SPARE
        ]
        entry = entries[-1] if entries else None
        if entry is None:
            names.append(f"role {role} (no member)")
            continue
        present = found.get(str(entry.member_uuid))
        state = entry.state.name.lower()
        if entry.state in (MemberState.FAILED, MemberState.REMOVED) or present:
            where = f"present at {present}" if present else f"no device at {entry.path}"
            names.append(
                f"role {role} (member {entry.member_uuid}, {where}): marked {state} by "
                f"commit {newest.event_counter}, last in sync at event {entry.in_sync_event}"
            )
            marked = marked or bool(present)
        else:
            names.append(
                f"role {role} (member {entry.member_uuid}): missing, no device at {entry.path}"
            )
    advice = "find the missing members and add their paths"
    if marked:
        advice = (
            "members marked failed can be taken back with `raidd assemble --force` when their "
            "data matches the newest commit (see docs/OPERATIONS.md)"
        )
    return (
        f"array {newest.array_name or newest.array_uuid} cannot start: {'; '.join(names)}; "
        f"more roles unusable than its level tolerates; {advice}"
    )


def _roll_forward(array: Array, behind: list[Slot], report: AssemblyReport) -> None:
    """Keep a member one commit behind when its strips of that commit match their checksums."""
    if not behind:
        return
    event = array.event
    stripes = [
        int(s)
        for s in array.map.allocated_stripes()
        if int(array.map.entries[s]["written_at"]) == event
    ]
    for slot in behind:
        assert slot.member is not None
        good = True
        for stripe in stripes:
            expected = int(array.map.entries[stripe]["checksums"][slot.role])
            strip = array.io.read_strip(slot, stripe, event)
            if strip is None or strip_checksum(strip) != expected:
                good = False
                break
        if good:
            report.rolled_forward.append(slot.path)
            log.info("member_rolled_forward", member=slot.path, event_counter=event)
            continue
        _reject(
            report,
            Candidate(slot.path, slot.member.identity, None, None),
            f"stale: one commit behind and its strips of commit {event} do not match",
            stale=True,
        )
        slot.member.close()
        slot.member = None
        slot.state = MemberState.ABSENT
    array.io.check_tolerance(f"array {array.name or array.uuid}")


def _finish(array: Array, newest: Superblock, report: AssemblyReport, read_only: bool) -> None:
    missing = [slot.role for slot in array.slots if slot.member is None]
    report.missing_roles = missing
    report.degraded = bool(missing) or array.degraded
    for slot in array.slots:
        if slot.member is None and slot.state is MemberState.ACTIVE:
            slot.state = MemberState.ABSENT
    if report.degraded:
        log.warning("array_degraded", array=str(array.uuid), missing_roles=missing)
    if read_only:
        return
    if missing or report.rolled_forward or report.forced:
        array.commit_state()
    log.info(
        "array_assembled",
        array=str(array.uuid),
        event_counter=array.event,
        degraded=report.degraded,
    )
