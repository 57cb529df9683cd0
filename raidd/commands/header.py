"""`raidd header-backup` and `raidd header-restore`: save and put back superblocks.

The backup file holds all three superblock copies of each member, keyslots
included, like `cryptsetup luksHeaderBackup`; treat it like a key. Layout
(docs/FORMAT.md, "Header backup file"): magic, version, member count, then
per member its path and the three raw copies, then a SHA-256 of all before.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from raidd.array.member import DeviceIdentity, identify, open_member
from raidd.array.superblock import (
    SLOT_OFFSETS,
    SUPERBLOCK_SIZE,
    end_offset,
    read_superblocks,
    size_problem,
)
from raidd.commands.header_restore import run_restore
from raidd.commands.headerfile import SavedMember, encode, newest_saved
from raidd.commands.output import print_json, wants_json
from raidd.errors import ArrayError, UsageError


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
    backup.add_argument(
        "--force",
        action="store_true",
        help="replace an existing FILE (the old file stays until the new one is on disk)",
    )
    backup.add_argument("file", metavar="FILE", help="backup file to write (mode 0600)")
    backup.set_defaults(run=run_backup)
    restore = subparsers.add_parser(
        "header-restore",
        parents=[common],
        help="write saved superblocks back to members",
        description="Write the saved superblock copies back. A member with a valid superblock "
        "is matched by its member UUID. A member without one, or one that now belongs to "
        "another array, must be named as PATH=MEMBER_UUID (run examine on the backup's "
        "members, or read the list this command prints). Every member is checked before the "
        "first one is written.",
    )
    restore.add_argument(
        "--member",
        action="append",
        required=True,
        metavar="PATH[=MEMBER_UUID]",
        help="a member to restore (repeatable); =MEMBER_UUID picks the saved entry",
    )
    restore.add_argument(
        "--force",
        action="store_true",
        help="restore even when the member has newer commits or belongs to another array",
    )
    restore.add_argument("file", metavar="FILE", help="backup file written by header-backup")
    restore.set_defaults(run=run_restore)


def _check_target(path: Path, force: bool) -> None:
    parent = path.parent
    if not parent.is_dir():
        raise UsageError(f"cannot write {path}: directory {parent} not found; create it first")
    if path.is_symlink():
        raise UsageError(f"{path} is a symbolic link; give the path of a regular file instead")
    if path.is_dir():
        raise UsageError(f"{path} is a directory; give a file name, such as {path}/headers.bin")
    if path.exists() and not force:
        raise UsageError(f"{path} already exists; pass --force to replace it")


def write_file_atomically(path: Path, data: bytes, replace: bool) -> None:
    """Write `data` to a temporary file beside `path`, fsync it, then rename it into place.

    The rename replaces a symbolic link at `path` rather than following it,
    and without `replace` a file that appears at `path` meanwhile is kept.

    Raises:
        UsageError: a write, fsync or rename failed (the previous file is unchanged).
    """
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(temporary, path)
        else:
            os.link(temporary, path)
            os.unlink(temporary)
        directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as error:
        if os.path.lexists(temporary):
            os.unlink(temporary)
        raise UsageError(
            f"cannot write {path}: {error.strerror}; nothing was saved and any previous "
            "file at that path is unchanged"
        ) from error


def _save_member(path: str) -> SavedMember:
    member = open_member(path, writable=False, claim=False)
    try:
        newest = read_superblocks(member).newest
        if newest is None:
            raise UsageError(f"{path} carries no valid raidd superblock; nothing to save")
        problem = size_problem(path, member.size, newest)
        if problem is not None:
            raise ArrayError(problem)
        offsets = (*SLOT_OFFSETS, end_offset(member.size))
        copies = [member.pread(SUPERBLOCK_SIZE, offset) for offset in offsets]
        return SavedMember(os.path.abspath(path), copies)
    finally:
        member.close()


def run_backup(args: argparse.Namespace) -> int:
    target = Path(args.file)
    _check_target(target, args.force)
    saved: list[SavedMember] = []
    identities: dict[DeviceIdentity, str] = {}
    for path in args.member:
        identity = identify(path)
        if identity in identities:
            raise UsageError(f"members {identities[identity]} and {path} are the same device")
        identities[identity] = path
        saved.append(_save_member(path))
    newest = [newest_saved(m, args.file) for m in saved]
    arrays = {sb.array_uuid for sb in newest}
    write_file_atomically(target, encode(saved), replace=args.force)
    result = {
        "file": str(target.absolute()),
        "members": [
            {"path": m.path, "member_uuid": str(sb.member_uuid), "array_uuid": str(sb.array_uuid)}
            for m, sb in zip(saved, newest, strict=True)
        ],
    }
    if len(arrays) > 1:
        print(
            f"raidd header-backup: warning: the members belong to {len(arrays)} arrays "
            f"({', '.join(sorted(map(str, arrays)))})",
            file=sys.stderr,
        )
    if wants_json(args):
        print_json(result)
    else:
        print(f"saved the superblocks of {len(saved)} members to {args.file}")
    return 1 if len(arrays) > 1 else 0
