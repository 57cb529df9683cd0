"""`raidd header-restore`: put saved superblocks back, after checking every member first.

A member is matched only by what it can prove: the member UUID of a valid
superblock on it, or the entry the operator names as PATH=MEMBER_UUID. The
path saved in the backup is never used to match, because device names move.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from dataclasses import dataclass, field

from raidd.array.assemble import probe
from raidd.array.lock import ArrayLock, default_lock_dir
from raidd.array.member import DeviceIdentity, Member, identify, open_member
from raidd.array.superblock import (
    SLOT_OFFSETS,
    SPARE_ROLE,
    Superblock,
    end_offset,
    read_superblocks,
    size_problem,
)
from raidd.commands.headerfile import SavedMember, decode, newest_saved
from raidd.commands.output import print_json, printable, wants_json
from raidd.errors import ArrayError, MemberError, UsageError


@dataclass
class Saved:
    """A backup entry with its newest valid copy."""

    entry: SavedMember
    sb: Superblock

    def describe(self) -> str:
        role = "spare" if self.sb.role == SPARE_ROLE else f"role {self.sb.role}"
        return (
            f"member {self.sb.member_uuid} ({role} of array {self.sb.array_uuid}, event "
            f"{self.sb.event_counter}, saved from {printable(self.entry.path)})"
        )


@dataclass
class Plan:
    """One member to restore: the open member, the entry chosen for it and the warnings."""

    path: str
    member: Member
    saved: Saved
    current: Superblock | None
    warnings: list[str] = field(default_factory=list)


def parse_member(text: str) -> tuple[str, uuid.UUID | None]:
    """Split PATH=MEMBER_UUID; a text whose part after the last `=` is no UUID is a path."""
    path, sep, tail = text.rpartition("=")
    if sep:
        try:
            return path, uuid.UUID(tail)
        except ValueError:
            pass
    return text, None


def _listing(saved: list[Saved]) -> str:
    return "; ".join(s.describe() for s in saved)


def _choose(
    path: str,
    current: Superblock | None,
    wanted: uuid.UUID | None,
    saved: list[Saved],
    args: argparse.Namespace,
) -> Saved:
    by_uuid = {s.sb.member_uuid: s for s in saved}
    if wanted is not None:
        chosen = by_uuid.get(wanted)
        if chosen is None:
            raise UsageError(f"{args.file} holds no member {wanted}; it holds: {_listing(saved)}")
        if current is not None and current.member_uuid != wanted and not args.force:
            if current.array_uuid == chosen.sb.array_uuid:
                raise UsageError(
                    f"{path} carries member {current.member_uuid} of the same array, not "
                    f"{wanted}; restoring would give two devices one role. Check the path, or "
                    "pass --force"
                )
            raise UsageError(
                f"{path} belongs to array {current.array_uuid}, the saved member {wanted} to "
                f"array {chosen.sb.array_uuid}; pass --force to overwrite {path}"
            )
        return chosen
    if current is None:
        raise UsageError(
            f"{path} has no valid raidd superblock, so nothing on it shows which saved member "
            f"it is; name the entry as --member {path}=MEMBER_UUID. {args.file} holds: "
            f"{_listing(saved)}"
        )
    chosen = by_uuid.get(current.member_uuid)
    if chosen is None:
        raise UsageError(
            f"{path} carries member {current.member_uuid} of array {current.array_uuid}, "
            f"which {args.file} does not hold (it holds: {_listing(saved)}); to restore over "
            f"another array, name the entry as --member {path}=MEMBER_UUID and pass --force"
        )
    return chosen


def _others(
    saved: list[Saved], plans_paths: list[str]
) -> list[tuple[str, DeviceIdentity | None, Superblock]]:
    """Probe the given paths and the paths recorded in the saved member tables."""
    paths = list(dict.fromkeys([*plans_paths, *(e.path for s in saved for e in s.sb.members)]))
    found = []
    for path in paths:
        if not path or not os.path.exists(path):
            continue
        candidate = probe(path)
        if candidate.sb is not None:
            found.append((path, candidate.identity, candidate.sb))
    return found


def _check_plan(
    plan: Plan, others: list[tuple[str, DeviceIdentity | None, Superblock]], force: bool
) -> None:
    saved = plan.saved.sb
    problem = size_problem(plan.path, plan.member.size, saved)
    if problem is not None:
        raise ArrayError(problem)
    same_array = [
        (path, sb)
        for path, identity, sb in others
        if sb.array_uuid == saved.array_uuid and identity != plan.member.identity
    ]
    for path, sb in same_array:
        if sb.member_uuid == saved.member_uuid and not force:
            raise UsageError(
                f"member {saved.member_uuid} is already on {path}; restoring it onto "
                f"{plan.path} too would give two devices one member UUID. Check the paths, "
                "or pass --force"
            )
    newest = max([sb.event_counter for _, sb in same_array], default=0)
    if plan.current is not None and plan.current.array_uuid == saved.array_uuid:
        newest = max(newest, plan.current.event_counter)
    if newest > saved.event_counter:
        message = (
            f"{plan.path}: the array is at event {newest}, newer than the backup's "
            f"{saved.event_counter}; restoring rolls the member back and makes it stale, "
            "so it needs a resync afterwards"
        )
        if not force:
            raise UsageError(f"{message}. Pass --force to restore anyway")
        plan.warnings.append(message)
    if plan.current is not None and plan.current.array_uuid != saved.array_uuid:
        plan.warnings.append(
            f"{plan.path}: overwrote the superblocks of array {plan.current.array_uuid}"
        )


def _plan_all(args: argparse.Namespace, saved: list[Saved], opened: list[Member]) -> list[Plan]:
    plans: list[Plan] = []
    seen: dict[DeviceIdentity, str] = {}
    for text in args.member:
        path, wanted = parse_member(text)
        identity = identify(path)
        if identity in seen:
            raise UsageError(f"members {seen[identity]} and {path} are the same device")
        seen[identity] = path
        member = open_member(path, writable=True, claim=True)
        opened.append(member)
        current = read_superblocks(member).newest
        plans.append(Plan(path, member, _choose(path, current, wanted, saved, args), current))
    chosen = [p.saved.sb.member_uuid for p in plans]
    for member_uuid in set(chosen):
        if chosen.count(member_uuid) > 1:
            paths = ", ".join(p.path for p in plans if p.saved.sb.member_uuid == member_uuid)
            raise UsageError(f"member {member_uuid} was chosen for several paths: {paths}")
    others = _others(saved, [p.path for p in plans])
    for plan in plans:
        _check_plan(plan, others, args.force)
    return plans


def _write(plans: list[Plan]) -> list[Plan]:
    done: list[Plan] = []
    for plan in plans:
        offsets = (*SLOT_OFFSETS, end_offset(plan.member.size))
        try:
            for data, offset in zip(plan.saved.entry.copies, offsets, strict=True):
                plan.member.pwrite(data, offset)
            plan.member.fsync()
        except MemberError as error:
            restored = ", ".join(p.path for p in done) or "none"
            raise MemberError(
                f"{error}; members already restored: {restored}; {plan.path} may hold a mix "
                "of old and restored copies, so run header-restore again for it"
            ) from error
        done.append(plan)
    return done


def run_restore(args: argparse.Namespace) -> int:
    try:
        with open(args.file, "rb") as backup:
            entries = decode(backup.read(), args.file)
    except OSError as error:
        raise UsageError(f"cannot read {args.file}: {error.strerror}") from error
    saved = [Saved(entry, newest_saved(entry, args.file)) for entry in entries]
    opened: list[Member] = []
    locks: list[ArrayLock] = []
    try:
        plans = _plan_all(args, saved, opened)
        for array_uuid in dict.fromkeys(p.saved.sb.array_uuid for p in plans):
            locks.append(ArrayLock.acquire(default_lock_dir(), array_uuid))
        _write(plans)
    finally:
        for lock in locks:
            lock.release()
        for member in opened:
            member.close()
    warnings = [w for p in plans for w in p.warnings]
    for warning in warnings:
        print(f"raidd header-restore: warning: {warning}", file=sys.stderr)
    if wants_json(args):
        print_json(
            {
                "file": args.file,
                "restored": [
                    {
                        "path": p.path,
                        "member_uuid": str(p.saved.sb.member_uuid),
                        "array_uuid": str(p.saved.sb.array_uuid),
                        "role": "spare" if p.saved.sb.role == SPARE_ROLE else p.saved.sb.role,
                        "event_counter": p.saved.sb.event_counter,
                        "saved_from": p.saved.entry.path,
                    }
                    for p in plans
                ],
                "warnings": warnings,
            }
        )
    else:
        for plan in plans:
            print(f"restored {plan.saved.describe()} to {plan.path}")
    return 1 if warnings else 0
