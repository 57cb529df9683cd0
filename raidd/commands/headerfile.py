"""The header backup file: magic, version, member count, then per member its path
and three raw superblock copies, then a SHA-256 of all before (docs/FORMAT.md,
"Header backup file")."""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from raidd.array.superblock import MAX_MEMBERS, SUPERBLOCK_SIZE, Superblock, unpack_superblock
from raidd.errors import UsageError

MAGIC = b"RAIDDHB\x00"
VERSION = 1
HEAD = struct.Struct("<8sII")
MEMBER_HEAD = struct.Struct("<I")
COPY_NAMES = ("0", "1", "end")


@dataclass
class SavedMember:
    """One member's entry: the path it was saved from and its three copies (0, 1, end)."""

    path: str
    copies: list[bytes]


def encode(members: list[SavedMember]) -> bytes:
    parts = [HEAD.pack(MAGIC, VERSION, len(members))]
    for member in members:
        path = member.path.encode("utf-8", errors="surrogateescape")
        parts.append(MEMBER_HEAD.pack(len(path)) + path)
        parts.extend(member.copies)
    body = b"".join(parts)
    return body + hashlib.sha256(body).digest()


def decode(data: bytes, name: str) -> list[SavedMember]:
    """Parse a backup file; every length is checked against the data before it is used.

    Raises:
        UsageError: not a backup, damaged, a newer version or an inconsistent entry.
    """
    body, digest = data[:-32], data[-32:]
    if len(data) < HEAD.size + 32 or hashlib.sha256(body).digest() != digest:
        raise UsageError(f"{name} is not a raidd header backup, or it is damaged")
    magic, version, count = HEAD.unpack_from(body)
    if magic != MAGIC:
        raise UsageError(f"{name} is not a raidd header backup")
    if version > VERSION:
        raise UsageError(f"{name} has header backup version {version}; this raidd reads {VERSION}")
    entry_size = MEMBER_HEAD.size + 3 * SUPERBLOCK_SIZE
    if not 1 <= count <= MAX_MEMBERS or count * entry_size > len(body):
        raise UsageError(f"{name} is damaged: it claims {count} members in {len(data)} bytes")
    members, position = [], HEAD.size
    for index in range(count):
        (length,) = MEMBER_HEAD.unpack_from(body, position)
        position += MEMBER_HEAD.size
        if position + length + 3 * SUPERBLOCK_SIZE > len(body):
            raise UsageError(f"{name} is damaged: entry {index} runs past the end of the file")
        path = body[position : position + length].decode("utf-8", errors="surrogateescape")
        position += length
        copies = [
            body[position + i * SUPERBLOCK_SIZE : position + (i + 1) * SUPERBLOCK_SIZE]
            for i in range(3)
        ]
        position += 3 * SUPERBLOCK_SIZE
        members.append(SavedMember(path, copies))
    if position != len(body):
        raise UsageError(f"{name} is damaged: {len(body) - position} bytes after the last entry")
    return members


def newest_saved(member: SavedMember, name: str) -> Superblock:
    """Return the newest valid copy saved for one member.

    Raises:
        UsageError: none of the three saved copies is valid.
    """
    parsed = []
    for data in member.copies:
        try:
            parsed.append(unpack_superblock(data))
        except ValueError:
            continue
    if not parsed:
        raise UsageError(
            f"{name} holds no valid superblock copy for the member saved from "
            f"{member.path!r}; the backup cannot restore it"
        )
    return max(parsed, key=lambda sb: sb.event_counter)
