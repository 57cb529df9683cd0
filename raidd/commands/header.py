"""`raidd header-backup` and `raidd header-restore`: save and put back superblocks.

The backup file holds all three superblock copies of each member, keyslots
included, like `cryptsetup luksHeaderBackup`; treat it like a key. Layout
(docs/FORMAT.md, "Header backup file"): magic, version, member count, then
per member its path and the three raw copies, then a SHA-256 of all before.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import struct
from dataclasses import dataclass

from raidd.array.lock import ArrayLock, default_lock_dir
from raidd.array.member import MemberError, open_member
from raidd.array.superblock import (
    SLOT_OFFSETS,
    SUPERBLOCK_SIZE,
    Superblock,
    end_offset,
    read_superblocks,
    unpack_superblock,
)
from raidd.errors import ArrayError, UsageError

MAGIC = b"RAIDDHB\x00"
VERSION = 1
HEAD = struct.Struct("<8sII")
MEMBER_HEAD = struct.Struct("<I")
COPY_NAMES = ("0", "1", "end")


@dataclass
class SavedMember:
    path: str
    copies: list[bytes]


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    backup = subparsers.add_parser(
        "header-backup",
        parents=[common],
        help="save the superblocks of members to a file",
        description="Save all three superblock copies of each member, keyslots included. "
        "The file can unlock the array with any key that opened it then: keep it safe.",
    )
    backup.add_argument(
        "--member",
        action="append",
        required=True,
        metavar="PATH",
        help="a member to save (repeatable)",
    )
    backup.add_argument("--force", action="store_true", help="overwrite an existing FILE")
    backup.add_argument("file", metavar="FILE")
    backup.set_defaults(run=run_backup)
    restore = subparsers.add_parser(
        "header-restore",
        parents=[common],
        help="write saved superblocks back to members",
        description="Write the saved superblock copies back. A member is matched by its "
        "member UUID when it still has a valid superblock, else by its saved path.",
    )
    restore.add_argument(
        "--member",
        action="append",
        required=True,
        metavar="PATH",
        help="a member to restore (repeatable)",
    )
    restore.add_argument(
        "--force",
        action="store_true",
        help="restore even when the member has newer commits or belongs to another array",
    )
    restore.add_argument("file", metavar="FILE")
    restore.set_defaults(run=run_restore)


def encode(members: list[SavedMember]) -> bytes:
    parts = [HEAD.pack(MAGIC, VERSION, len(members))]
    for member in members:
        path = member.path.encode("utf-8")
        parts.append(MEMBER_HEAD.pack(len(path)) + path)
        parts.extend(member.copies)
    body = b"".join(parts)
    return body + hashlib.sha256(body).digest()


def decode(data: bytes, name: str) -> list[SavedMember]:
    body, digest = data[:-32], data[-32:]
    if len(data) < HEAD.size + 32 or hashlib.sha256(body).digest() != digest:
        raise UsageError(f"{name} is not a raidd header backup, or it is damaged")
    magic, version, count = HEAD.unpack_from(body)
    if magic != MAGIC:
        raise UsageError(f"{name} is not a raidd header backup")
    if version > VERSION:
        raise UsageError(f"{name} has header backup version {version}; this raidd reads {VERSION}")
    members, position = [], HEAD.size
    for _ in range(count):
        (length,) = MEMBER_HEAD.unpack_from(body, position)
        position += MEMBER_HEAD.size
        path = body[position : position + length].decode("utf-8")
        position += length
        copies = [
            body[position + i * SUPERBLOCK_SIZE : position + (i + 1) * SUPERBLOCK_SIZE]
            for i in range(3)
        ]
        position += 3 * SUPERBLOCK_SIZE
        members.append(SavedMember(path, copies))
    return members


def run_backup(args: argparse.Namespace) -> int:
    if os.path.exists(args.file) and not args.force:
        raise UsageError(f"{args.file} already exists; pass --force to overwrite it")
    saved = []
    for path in args.member:
        member = open_member(path, writable=False, claim=False)
        try:
            if read_superblocks(member).newest is None:
                raise UsageError(f"{path} carries no valid raidd superblock; nothing to save")
            offsets = (*SLOT_OFFSETS, end_offset(member.size))
            saved.append(
                SavedMember(
                    os.path.abspath(path), [member.pread(SUPERBLOCK_SIZE, o) for o in offsets]
                )
            )
        finally:
            member.close()
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    fd = os.open(args.file, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, encode(saved))
        os.fsync(fd)
    finally:
        os.close(fd)
    print(f"saved the superblocks of {len(saved)} members to {args.file}")
    return 0


def _newest(copies: list[bytes], name: str) -> Superblock:
    parsed = []
    for data in copies:
        try:
            parsed.append(unpack_superblock(data))
        except ValueError:
            continue
    if not parsed:
        raise UsageError(f"{name} contains no valid superblock copy for one of its members")
    return max(parsed, key=lambda sb: sb.event_counter)


def run_restore(args: argparse.Namespace) -> int:
    try:
        with open(args.file, "rb") as backup:
            saved = decode(backup.read(), args.file)
    except OSError as error:
        raise UsageError(f"cannot read {args.file}: {error.strerror}") from error
    by_uuid = {_newest(m.copies, args.file).member_uuid: m for m in saved}
    by_path = {m.path: m for m in saved}
    for path in args.member:
        try:
            member = open_member(path, writable=True, claim=True)
        except MemberError as error:
            raise ArrayError(f"{error}; stop the daemon that uses it first") from error
        try:
            current = read_superblocks(member).newest
            entry = (
                by_uuid.get(current.member_uuid) if current else by_path.get(os.path.abspath(path))
            )
            if entry is None:
                raise UsageError(f"{args.file} contains no superblock of member {path}")
            saved_sb = _newest(entry.copies, args.file)
            event, array_uuid = saved_sb.event_counter, saved_sb.array_uuid
            if current is not None and not args.force:
                if current.array_uuid != array_uuid:
                    raise UsageError(
                        f"{path} belongs to array {current.array_uuid}, the backup "
                        f"to {array_uuid}; pass --force to overwrite"
                    )
                if current.event_counter > event:
                    raise UsageError(
                        f"{path} is at event {current.event_counter}, newer than the backup's "
                        f"{event}; restoring rolls it back and makes it stale. Pass --force"
                    )
            lock = ArrayLock.acquire(default_lock_dir(), array_uuid)
            try:
                offsets = (*SLOT_OFFSETS, end_offset(member.size))
                for data, offset in zip(entry.copies, offsets, strict=True):
                    member.pwrite(data, offset)
                member.fsync()
            finally:
                lock.release()
        finally:
            member.close()
        print(f"restored the superblocks of {path}")
    return 0
