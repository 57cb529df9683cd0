"""The member superblock: identity, geometry, event counter, member table, keyslots.

Layout of one copy (64 KiB, little-endian; docs/FORMAT.md has the tables):
header at 0, member table at 1024, pending metadata stripes at 10496,
keyslot area at 20480, SHA-256 of bytes [0, 65504) at 65504.

Each member holds three copies: slot 0 at offset 0, slot 1 at offset 64 KiB
(commit N goes to slot N % 2, so the previous commit's copy survives a torn
write), and one in the last 64 KiB of the device (4 KiB aligned), written
with every commit. The newest valid copy wins.
"""

from __future__ import annotations

import enum
import hashlib
import struct
import uuid
from dataclasses import dataclass, field

from raidd.array.member import Member, MemberError
from raidd.errors import ArrayError

MAGIC = b"RAIDDSB\x00"
# Version 2 added map_root_copy_stripe; version 1 superblocks are read as having no copy.
FORMAT_VERSION = 2
SUPERBLOCK_SIZE = 64 * 1024
SLOT_OFFSETS = (0, SUPERBLOCK_SIZE)
END_ALIGNMENT = 4096
MAX_MEMBERS = 32
MAX_PENDING = 32
METADATA_ROOT_MAX = 256
NAME_MAX = 64
PATH_MAX = 256
MEMBER_TABLE_OFFSET = 1024
PENDING_OFFSET = 10496
KEYSLOT_OFFSET = 20480
KEYSLOT_RESERVED = 40960
CHECKSUM_OFFSET = SUPERBLOCK_SIZE - 32
SPARE_ROLE = -1
STRIP_CHECKSUM_CRC32 = 1
# A map pointer's copy_stripe when the node has no second copy (every level but RAID0).
NO_COPY = 2**64 - 1

# (field, struct code, why): the header, packed in this order with no padding.
HEADER_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("magic", "8s", 'b"RAIDDSB\\0": tells a raidd member from anything else'),
    ("version", "I", "format version; a newer one is rejected, naming both"),
    ("superblock_size", "I", "bytes covered by the checksum plus the checksum (65536)"),
    ("array_uuid", "16s", "which array this member belongs to"),
    ("member_uuid", "16s", "which member this is, independent of its path"),
    ("role", "i", "position in the stripe layout, 0..member_count-1; -1 for a spare"),
    ("level", "I", "RAID level: 0, 1, 5, 6 or 10"),
    ("strip_size", "I", "bytes per strip (md's chunk size)"),
    ("member_count", "I", "members in the layout, spares excluded"),
    ("data_offset", "Q", "byte offset of stripe 0's strip on every member"),
    ("data_size", "Q", "bytes of data area per member (stripe_count * strip_size)"),
    ("stripe_count", "Q", "stripes in the array"),
    ("event_counter", "Q", "commit generation; the newest valid copy wins"),
    ("commit_tag", "Q", "random per commit: equal counters with different tags are split brain"),
    ("created_time", "Q", "array creation, Unix seconds"),
    ("commit_time", "Q", "this commit, Unix seconds"),
    ("array_name", "64s", "operator's name for the array, UTF-8, NUL padded"),
    ("strip_checksum", "I", "strip checksum algorithm: 1 = CRC-32 (zlib's), zero extended to u64"),
    ("reserve_stripes", "I", "free stripes kept back for garbage collection"),
    ("map_entries_per_leaf", "I", "allocation map: stripes per leaf node"),
    ("map_fanout", "I", "allocation map: children per internal node"),
    ("map_depth", "I", "allocation map: internal levels above the leaves"),
    ("map_root_stripe", "Q", "stripe holding the allocation map's root node"),
    ("map_root_offset", "I", "byte offset of the root node in that stripe's data"),
    ("map_root_length", "I", "root node length; 0 means an empty map"),
    ("map_root_checksum", "16s", "BLAKE2b-128 of the root node"),
    ("checkpoint_kind", "I", "running job: 0 none, 1 rebuild, 2 resync, 3 scrub"),
    ("checkpoint_role", "i", "role being rebuilt or resynced, -1 for scrub"),
    ("checkpoint_member_uuid", "16s", "member being written by the job"),
    ("checkpoint_next_stripe", "Q", "first stripe the job has not finished"),
    ("checkpoint_since_event", "Q", "rebuild: event at start; resync: member's last in-sync"),
    ("member_table_count", "I", "used entries of the member table"),
    ("pending_count", "I", "used entries of the pending metadata stripe list"),
    ("metadata_root_length", "I", "bytes used of metadata_root"),
    ("keyslot_area_length", "I", "bytes used of the keyslot area"),
    ("metadata_root", "256s", "the caller's root reference (the store's), opaque here"),
    ("map_root_copy_stripe", "Q", "RAID0: stripe with a copy of the root node; 2^64-1 for none"),
)
HEADER_FORMAT = "<" + "".join(code for _, code, _ in HEADER_FIELDS)
HEADER_SIZE = struct.calcsize(HEADER_FORMAT)

MEMBER_ENTRY_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("member_uuid", "16s", "member this entry describes"),
    ("role", "i", "its role; -1 for a spare"),
    ("state", "I", "1 active, 2 failed, 3 absent, 4 rebuilding, 5 spare, 6 removed"),
    ("in_sync_event", "Q", "last commit the member holds in full"),
    ("path_length", "I", "bytes used of path"),
    ("reserved", "I", "zero"),
    ("path", "256s", "last path the member was seen at, searched at assembly"),
)
MEMBER_ENTRY_FORMAT = "<" + "".join(code for _, code, _ in MEMBER_ENTRY_FIELDS)
MEMBER_ENTRY_SIZE = struct.calcsize(MEMBER_ENTRY_FORMAT)

PENDING_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("stripe", "Q", "a stripe that holds map nodes not yet listed in the map"),
    ("written_at", "Q", "commit that wrote it (superblock-only commits carry the list on)"),
    ("flags", "I", "allocation flags of that stripe (see Allocation map)"),
    ("reserved", "I", "zero"),
    ("checksums", f"{MAX_MEMBERS}Q", "strip checksum per role, for roles < member_count"),
)
PENDING_FORMAT = "<QQII" + f"{MAX_MEMBERS}Q"
PENDING_SIZE = struct.calcsize(PENDING_FORMAT)

# Error counters, one entry per member table entry (same index), in bytes that
# every earlier version-2 copy left zero: zeros read as no errors.
ERROR_COUNTERS_OFFSET = PENDING_OFFSET + MAX_PENDING * PENDING_SIZE
ERROR_COUNTER_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("read_errors", "I", "read errors counted against the member (saturates at 2^32-1)"),
    ("write_errors", "I", "write errors counted against the member"),
    ("checksum_errors", "I", "strips of the member that failed their checksum"),
)
ERROR_COUNTER_FORMAT = "<" + "".join(code for _, code, _ in ERROR_COUNTER_FIELDS)
ERROR_COUNTER_SIZE = struct.calcsize(ERROR_COUNTER_FORMAT)
COUNTER_MAX = 2**32 - 1

assert HEADER_SIZE <= MEMBER_TABLE_OFFSET
assert MEMBER_TABLE_OFFSET + MAX_MEMBERS * MEMBER_ENTRY_SIZE <= PENDING_OFFSET
assert ERROR_COUNTERS_OFFSET + MAX_MEMBERS * ERROR_COUNTER_SIZE <= KEYSLOT_OFFSET
assert KEYSLOT_OFFSET + KEYSLOT_RESERVED <= CHECKSUM_OFFSET


class MemberState(enum.IntEnum):
    EMPTY = 0
    ACTIVE = 1
    FAILED = 2
    ABSENT = 3
    REBUILDING = 4
    SPARE = 5
    REMOVED = 6


class CheckpointKind(enum.IntEnum):
    NONE = 0
    REBUILD = 1
    RESYNC = 2
    SCRUB = 3


class UnsupportedFormatError(ArrayError):
    """A superblock written by a newer raidd."""


@dataclass(frozen=True)
class MapPointer:
    """Where a map node lives: stripe, byte offset in the stripe's data, length, checksum.

    On RAID0 `copy_stripe` holds a second copy of the node at the same offset.
    """

    stripe: int = 0
    offset: int = 0
    length: int = 0
    checksum: bytes = bytes(16)
    copy_stripe: int = NO_COPY

    @property
    def is_null(self) -> bool:
        return self.length == 0


@dataclass
class MemberEntry:
    member_uuid: uuid.UUID
    role: int
    state: MemberState
    in_sync_event: int
    path: str
    # Read, write and checksum errors, kept across restarts as md and ZFS keep them.
    errors: tuple[int, int, int] = (0, 0, 0)


@dataclass
class Checkpoint:
    kind: CheckpointKind = CheckpointKind.NONE
    role: int = -1
    member_uuid: uuid.UUID = field(default_factory=lambda: uuid.UUID(int=0))
    next_stripe: int = 0
    since_event: int = 0


@dataclass
class PendingStripe:
    """A metadata stripe whose entry (with its checksums) the map does not contain yet."""

    stripe: int
    written_at: int
    flags: int
    checksums: tuple[int, ...]


@dataclass
class Superblock:
    array_uuid: uuid.UUID
    member_uuid: uuid.UUID
    role: int
    level: int
    strip_size: int
    member_count: int
    data_offset: int
    data_size: int
    stripe_count: int
    event_counter: int
    commit_tag: int
    created_time: int
    commit_time: int
    array_name: str
    reserve_stripes: int
    map_entries_per_leaf: int
    map_fanout: int
    map_depth: int
    map_root: MapPointer = field(default_factory=MapPointer)
    checkpoint: Checkpoint = field(default_factory=Checkpoint)
    members: list[MemberEntry] = field(default_factory=list)
    pending: list[PendingStripe] = field(default_factory=list)
    metadata_root: bytes = b""
    keyslot_area: bytes = b""
    version: int = FORMAT_VERSION
    strip_checksum: int = STRIP_CHECKSUM_CRC32

    def entry(self, member_uuid: uuid.UUID) -> MemberEntry | None:
        """Return this superblock's member-table entry for `member_uuid`."""
        for entry in self.members:
            if entry.member_uuid == member_uuid:
                return entry
        return None

    def pack(self) -> bytes:
        """Serialize into one SUPERBLOCK_SIZE copy, checksum included."""
        return pack_superblock(self)


def _encode_text(text: str, limit: int, what: str) -> bytes:
    data = text.encode("utf-8")
    if len(data) > limit:
        raise ArrayError(f"{what} {text!r} is longer than {limit} bytes of UTF-8")
    return data


def pack_superblock(sb: Superblock) -> bytes:
    if len(sb.members) > MAX_MEMBERS:
        raise ArrayError(f"member table has room for at most {MAX_MEMBERS} members")
    if len(sb.pending) > MAX_PENDING:
        raise ArrayError(f"a commit can write at most {MAX_PENDING} metadata stripes")
    if len(sb.metadata_root) > METADATA_ROOT_MAX:
        raise ArrayError(f"metadata root is {len(sb.metadata_root)} bytes; at most 256")
    if len(sb.keyslot_area) > KEYSLOT_RESERVED:
        raise ArrayError(
            f"keyslot area is {len(sb.keyslot_area)} bytes; at most {KEYSLOT_RESERVED}"
        )
    buffer = bytearray(SUPERBLOCK_SIZE)
    root = sb.map_root
    cp = sb.checkpoint
    struct.pack_into(
        HEADER_FORMAT,
        buffer,
        0,
        MAGIC,
        sb.version,
        SUPERBLOCK_SIZE,
        sb.array_uuid.bytes,
        sb.member_uuid.bytes,
        sb.role,
        sb.level,
        sb.strip_size,
        sb.member_count,
        sb.data_offset,
        sb.data_size,
        sb.stripe_count,
        sb.event_counter,
        sb.commit_tag,
        sb.created_time,
        sb.commit_time,
        _encode_text(sb.array_name, NAME_MAX, "array name"),
        sb.strip_checksum,
        sb.reserve_stripes,
        sb.map_entries_per_leaf,
        sb.map_fanout,
        sb.map_depth,
        root.stripe,
        root.offset,
        root.length,
        root.checksum,
        int(cp.kind),
        cp.role,
        cp.member_uuid.bytes,
        cp.next_stripe,
        cp.since_event,
        len(sb.members),
        len(sb.pending),
        len(sb.metadata_root),
        len(sb.keyslot_area),
        sb.metadata_root,
        root.copy_stripe,
    )
    for index, entry in enumerate(sb.members):
        path = _encode_text(entry.path, PATH_MAX, "member path")
        struct.pack_into(
            MEMBER_ENTRY_FORMAT,
            buffer,
            MEMBER_TABLE_OFFSET + index * MEMBER_ENTRY_SIZE,
            entry.member_uuid.bytes,
            entry.role,
            int(entry.state),
            entry.in_sync_event,
            len(path),
            0,
            path,
        )
        struct.pack_into(
            ERROR_COUNTER_FORMAT,
            buffer,
            ERROR_COUNTERS_OFFSET + index * ERROR_COUNTER_SIZE,
            *(min(count, COUNTER_MAX) for count in entry.errors),
        )
    for index, pending in enumerate(sb.pending):
        checksums = list(pending.checksums) + [0] * (MAX_MEMBERS - len(pending.checksums))
        struct.pack_into(
            PENDING_FORMAT,
            buffer,
            PENDING_OFFSET + index * PENDING_SIZE,
            pending.stripe,
            pending.written_at,
            pending.flags,
            0,
            *checksums,
        )
    buffer[KEYSLOT_OFFSET : KEYSLOT_OFFSET + len(sb.keyslot_area)] = sb.keyslot_area
    buffer[CHECKSUM_OFFSET:] = hashlib.sha256(buffer[:CHECKSUM_OFFSET]).digest()
    return bytes(buffer)


LEVELS = (0, 1, 5, 6, 10)
MIN_STRIP_SIZE = 4096


def _check_plausible(header: dict[str, object]) -> None:
    """Reject a copy whose checksum matches but whose fields no raidd writes.

    The checksum is unkeyed, so a crafted copy passes it; these checks keep
    such a copy from being trusted as geometry.
    """
    size, level, count = header["superblock_size"], header["level"], header["member_count"]
    strip, role = header["strip_size"], header["role"]
    assert isinstance(strip, int) and isinstance(role, int) and isinstance(count, int)
    if size != SUPERBLOCK_SIZE:
        raise ValueError(f"superblock size field is {size}, expected {SUPERBLOCK_SIZE}")
    if level not in LEVELS:
        raise ValueError(f"unknown RAID level {level}")
    if not 1 <= count <= MAX_MEMBERS:
        raise ValueError(f"member count {count} out of range 1..{MAX_MEMBERS}")
    if strip < MIN_STRIP_SIZE or strip & (strip - 1):
        raise ValueError(f"strip size {strip} is not a power of two of at least 4096 bytes")
    if role != SPARE_ROLE and not 0 <= role < count:
        raise ValueError(f"role {role} out of range for {count} members")


def unpack_superblock(data: bytes) -> Superblock:
    """Parse one copy.

    Raises:
        UnsupportedFormatError: the copy has a newer format version.
        ValueError: no magic, a checksum mismatch or an inconsistent field.
    """
    if len(data) != SUPERBLOCK_SIZE:
        raise ValueError(f"superblock copy is {len(data)} bytes, expected {SUPERBLOCK_SIZE}")
    if data[:8] != MAGIC:
        raise ValueError("no raidd superblock magic")
    (version,) = struct.unpack_from("<I", data, 8)
    if version > FORMAT_VERSION:
        raise UnsupportedFormatError(
            f"superblock format version {version} is newer than this raidd supports "
            f"(version {FORMAT_VERSION}); upgrade raidd"
        )
    if hashlib.sha256(data[:CHECKSUM_OFFSET]).digest() != data[CHECKSUM_OFFSET:]:
        raise ValueError("superblock checksum mismatch")
    values = struct.unpack_from(HEADER_FORMAT, data, 0)
    header = dict(zip((name for name, _, _ in HEADER_FIELDS), values, strict=True))
    member_count = header["member_table_count"]
    pending_count = header["pending_count"]
    if member_count > MAX_MEMBERS or pending_count > MAX_PENDING:
        raise ValueError("superblock table counts out of range")
    if header["metadata_root_length"] > METADATA_ROOT_MAX:
        raise ValueError("superblock metadata root length out of range")
    if header["keyslot_area_length"] > KEYSLOT_RESERVED:
        raise ValueError("superblock keyslot area length out of range")
    _check_plausible(header)
    members = []
    for index in range(member_count):
        fields = struct.unpack_from(
            MEMBER_ENTRY_FORMAT, data, MEMBER_TABLE_OFFSET + index * MEMBER_ENTRY_SIZE
        )
        if fields[1] != SPARE_ROLE and not 0 <= fields[1] < header["member_count"]:
            raise ValueError(f"member table entry {index} has role {fields[1]} out of range")
        if fields[4] > PATH_MAX:
            raise ValueError(f"member table entry {index} has path length {fields[4]}")
        members.append(
            MemberEntry(
                member_uuid=uuid.UUID(bytes=fields[0]),
                role=fields[1],
                state=MemberState(fields[2]),
                in_sync_event=fields[3],
                path=fields[6][: fields[4]].decode("utf-8", errors="replace"),
                errors=struct.unpack_from(
                    ERROR_COUNTER_FORMAT, data, ERROR_COUNTERS_OFFSET + index * ERROR_COUNTER_SIZE
                ),
            )
        )
    pending = []
    for index in range(pending_count):
        fields = struct.unpack_from(PENDING_FORMAT, data, PENDING_OFFSET + index * PENDING_SIZE)
        checksums = tuple(fields[4 : 4 + header["member_count"]])
        pending.append(
            PendingStripe(
                stripe=fields[0], written_at=fields[1], flags=fields[2], checksums=checksums
            )
        )
    keyslot_length = header["keyslot_area_length"]
    return Superblock(
        version=version,
        array_uuid=uuid.UUID(bytes=header["array_uuid"]),
        member_uuid=uuid.UUID(bytes=header["member_uuid"]),
        role=header["role"],
        level=header["level"],
        strip_size=header["strip_size"],
        member_count=header["member_count"],
        data_offset=header["data_offset"],
        data_size=header["data_size"],
        stripe_count=header["stripe_count"],
        event_counter=header["event_counter"],
        commit_tag=header["commit_tag"],
        created_time=header["created_time"],
        commit_time=header["commit_time"],
        array_name=header["array_name"].rstrip(b"\0").decode("utf-8", errors="replace"),
        strip_checksum=header["strip_checksum"],
        reserve_stripes=header["reserve_stripes"],
        map_entries_per_leaf=header["map_entries_per_leaf"],
        map_fanout=header["map_fanout"],
        map_depth=header["map_depth"],
        map_root=MapPointer(
            header["map_root_stripe"],
            header["map_root_offset"],
            header["map_root_length"],
            header["map_root_checksum"],
            header["map_root_copy_stripe"] if version >= 2 else NO_COPY,
        ),
        checkpoint=Checkpoint(
            kind=CheckpointKind(header["checkpoint_kind"]),
            role=header["checkpoint_role"],
            member_uuid=uuid.UUID(bytes=header["checkpoint_member_uuid"]),
            next_stripe=header["checkpoint_next_stripe"],
            since_event=header["checkpoint_since_event"],
        ),
        members=members,
        pending=pending,
        metadata_root=header["metadata_root"][: header["metadata_root_length"]],
        keyslot_area=bytes(data[KEYSLOT_OFFSET : KEYSLOT_OFFSET + keyslot_length]),
    )


def end_offset(member_size: int) -> int:
    """Return the offset of the end copy: the last 64 KiB, 4 KiB aligned."""
    return member_size // END_ALIGNMENT * END_ALIGNMENT - SUPERBLOCK_SIZE


@dataclass
class SuperblockCopy:
    """One of a member's three copies as read: the parsed copy, or why it is invalid."""

    slot: str
    offset: int
    superblock: Superblock | None
    error: str | None


@dataclass
class MemberSuperblocks:
    """All copies of one member and the newest valid one."""

    copies: list[SuperblockCopy]
    newest: Superblock | None
    unsupported: str | None = None

    @property
    def error(self) -> str:
        reasons = {copy.error for copy in self.copies if copy.error}
        return "; ".join(sorted(reasons)) or "no valid superblock"


def read_superblocks(member: Member, *, refuse_newer: bool = True) -> MemberSuperblocks:
    """Read all three copies of a member's superblock.

    Args:
        member: the open member.
        refuse_newer: raise when a copy has a newer format version; otherwise
            that copy is listed as invalid and `unsupported` names both versions
            (examine reports it per member).

    Raises:
        UnsupportedFormatError: a copy carries a newer format version.
        MemberError: the member is too small to hold superblocks.
    """
    if member.size < 3 * SUPERBLOCK_SIZE:
        raise MemberError(f"member {member.path} is too small ({member.size} bytes) for raidd")
    places = [("0", SLOT_OFFSETS[0]), ("1", SLOT_OFFSETS[1]), ("end", end_offset(member.size))]
    copies = []
    unsupported = None
    for slot, offset in places:
        try:
            data = member.pread(SUPERBLOCK_SIZE, offset)
            copies.append(SuperblockCopy(slot, offset, unpack_superblock(data), None))
        except UnsupportedFormatError as error:
            if refuse_newer:
                raise UnsupportedFormatError(f"member {member.path}: {error}") from None
            unsupported = str(error)
            copies.append(SuperblockCopy(slot, offset, None, str(error)))
        except MemberError as error:
            copies.append(SuperblockCopy(slot, offset, None, f"read failed: {error}"))
        except ValueError as error:
            copies.append(SuperblockCopy(slot, offset, None, str(error)))
    valid = [copy.superblock for copy in copies if copy.superblock is not None]
    newest = max(valid, key=lambda sb: sb.event_counter, default=None)
    if unsupported is not None:
        # A member with any newer copy is not used by this raidd, whatever its other copies.
        newest = None
    return MemberSuperblocks(copies, newest, unsupported)


def write_superblock(member: Member, sb: Superblock) -> None:
    """Write `sb` to slot event % 2 and to the end copy (the caller fsyncs).

    Raises:
        MemberError: a write failed.
    """
    data = sb.pack()
    member.pwrite(data, SLOT_OFFSETS[sb.event_counter % 2])
    member.pwrite(data, end_offset(member.size))


def wipe_superblocks(member: Member) -> None:
    """Overwrite all three copies with zeros (the caller fsyncs)."""
    zero = bytes(SUPERBLOCK_SIZE)
    for offset in (*SLOT_OFFSETS, end_offset(member.size)):
        member.pwrite(zero, offset)


def needed_size(sb: Superblock) -> int:
    """Return the smallest member size that holds `sb`'s data area and the end copy after it."""
    return sb.data_offset + sb.data_size + SUPERBLOCK_SIZE


def size_problem(path: str, size: int, sb: Superblock) -> str | None:
    """Return why a member of `size` bytes cannot hold `sb`'s array, or None when it can.

    A truncated image would put the end copy inside the data area, so a
    commit would overwrite stripe data.
    """
    needed = needed_size(sb)
    if end_offset(size) >= sb.data_offset + sb.data_size:
        return None
    return (
        f"member {path} has {size} bytes, but array {sb.array_uuid} needs {needed} bytes on "
        f"each member (data area up to {sb.data_offset + sb.data_size}, then the 64 KiB end "
        f"superblock); restore its size (truncate -s {needed} for an image file) or replace it"
    )
