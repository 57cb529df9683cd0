"""Creation of a new array: validate every member, then write the first superblocks."""

from __future__ import annotations

import fcntl
import os
import secrets
import struct
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from parity import Geometry, GeometryError
from raidd.array.allocmap import MapShape
from raidd.array.member import DeviceIdentity, Member, MemberError, identities, open_member
from raidd.array.reserve import MIN_RESERVE
from raidd.array.superblock import (
    END_ALIGNMENT,
    MAX_MEMBERS,
    NAME_MAX,
    PATH_MAX,
    SPARE_ROLE,
    SUPERBLOCK_SIZE,
    MemberEntry,
    MemberState,
    Superblock,
    read_superblocks,
    write_superblock,
)
from raidd.errors import UsageError

log = structlog.get_logger(__name__)

MiB = 1024 * 1024
MIN_MEMBER_SIZE = 16 * MiB
DATA_OFFSET = 1 * MiB
MAX_STRIP_SIZE = 2 * MiB
DEFAULT_STRIP_SIZE = 64 * 1024
MIN_STRIPES = 64


@dataclass(frozen=True)
class MemberLayout:
    """Where the data area lies on every member of an array."""

    data_offset: int
    data_size: int
    stripe_count: int


def plan_layout(member_size: int, strip_size: int) -> MemberLayout:
    """Compute data offset, data size and stripe count for the smallest member's size.

    The data area starts at max(1 MiB, strip_size), after superblock slots 0
    and 1, and ends before the end copy (last 64 KiB, 4 KiB aligned).
    """
    data_offset = max(DATA_OFFSET, strip_size)
    end = member_size // END_ALIGNMENT * END_ALIGNMENT - SUPERBLOCK_SIZE
    stripes = max(0, (end - data_offset) // strip_size)
    return MemberLayout(data_offset, stripes * strip_size, stripes)


@dataclass
class CreatedArray:
    array_uuid: uuid.UUID
    name: str
    level: int
    strip_size: int
    members: list[tuple[str, uuid.UUID]]
    spares: list[tuple[str, uuid.UUID]]
    stripe_count: int
    stripe_data_size: int
    warnings: list[str] = field(default_factory=list)


def _check_geometry(level: int, count: int, strip_size: int) -> Geometry:
    try:
        geometry = Geometry(level, count, strip_size)
    except GeometryError as error:
        raise UsageError(str(error)) from None
    if strip_size > MAX_STRIP_SIZE:
        raise UsageError(f"strip size must be at most {MAX_STRIP_SIZE} bytes; got {strip_size}")
    if count > MAX_MEMBERS:
        raise UsageError(
            f"an array can have at most {MAX_MEMBERS} members and spares; got {count}"
        )
    return geometry


def _check_path_text(path: str) -> None:
    stored = os.path.abspath(path)
    try:
        encoded = stored.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(
            f"member path {path!r} is not valid UTF-8, and the member table stores UTF-8; "
            "rename the file or use another path to the device"
        ) from None
    if len(encoded) > PATH_MAX:
        raise UsageError(
            f"member path {path} is {len(encoded)} bytes as an absolute path; the member table "
            f"holds at most {PATH_MAX}: use a shorter path"
        )


def _check_image_size(path: str, size: int) -> None:
    """Reject an image file larger than the file system that would hold it."""
    info = os.statvfs(Path(path).parent)
    capacity = info.f_blocks * info.f_frsize
    if size > capacity:
        raise UsageError(
            f"--size {size} is larger than the file system holding {path} ({capacity} bytes); "
            "choose a smaller --size"
        )


def _prepare_paths(paths: Sequence[str], size: int | None) -> list[str]:
    """Check every path exists (or can be created with `size`) and names a distinct device.

    A loop device counts as its backing file too, so a loop device and the
    image behind it are caught as one member given twice.
    """
    seen: dict[DeviceIdentity, str] = {}
    for path in paths:
        _check_path_text(path)
        if not os.path.exists(path):
            if size is None:
                raise UsageError(f"member {path} not found; pass --size to create image files")
            parent = Path(path).parent
            if not parent.is_dir():
                raise UsageError(f"cannot create image file {path}: {parent} is not a directory")
            if not os.access(parent, os.W_OK):
                raise UsageError(f"cannot create image file {path}: {parent} is not writable")
            _check_image_size(path, size)
            continue
        for identity in identities(path):
            if identity in seen:
                raise UsageError(f"members {seen[identity]} and {path} are the same device")
            seen[identity] = path
    return list(paths)


# (offset, bytes, what): signatures of file systems, volume managers and partition
# tables, from each format's published layout; the MBR is handled apart.
SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"XFSB", "an XFS file system"),
    (0, b"LUKS\xba\xbe", "a LUKS header"),
    (512, b"EFI PART", "a GPT partition table"),
    (512, b"LABELONE", "an LVM physical volume label"),
    (1080, b"\x53\xef", "an ext2/3/4 file system"),
    (4086, b"SWAPSPACE2", "a swap area"),
    (4096, b"\xfc\x4e\x2b\xa9", "an md RAID superblock (version 1.2)"),
    (32769, b"CD001", "an ISO 9660 file system"),
    (65600, b"_BHRfS_M", "a btrfs file system"),
)
SIGNATURE_SPAN = 65600 + 8

# BLKROGET = _IO(0x12, 94): nonzero when the block device is read-only.
BLKROGET = 0x125E


def find_signature(head: bytes) -> str | None:
    """Return what the first bytes of a device look like, or None when no signature matches."""
    for offset, magic, what in SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return what
    if head[510:512] == b"\x55\xaa":
        entries = [head[446 + 16 * i : 462 + 16 * i] for i in range(4)]
        if any(entry[4] != 0 for entry in entries):
            return "an MBR partition table"
    return None


def _check_writable(member: Member) -> None:
    if member.is_block:
        flag = struct.unpack("=i", fcntl.ioctl(member.fd, BLKROGET, bytes(4)))[0]
        if flag:
            raise UsageError(f"member {member.path} is a read-only block device")
    elif os.fstatvfs(member.fd).f_flag & os.ST_RDONLY:
        raise UsageError(f"member {member.path} is on a read-only file system")


def _check_member(member: Member, force: bool) -> None:
    if member.size < MIN_MEMBER_SIZE:
        raise UsageError(
            f"member {member.path} has {member.size} bytes; a member needs at least "
            f"{MIN_MEMBER_SIZE} bytes (16 MiB)"
        )
    _check_writable(member)
    copies = read_superblocks(member)
    if force:
        return
    if copies.newest is not None:
        raise UsageError(
            f"member {member.path} already carries a raidd superblock (array "
            f"{copies.newest.array_uuid}); pass --force to overwrite it"
        )
    found = find_signature(member.pread(SIGNATURE_SPAN, 0))
    if found is not None:
        raise UsageError(
            f"member {member.path} carries {found}; check that it is the right device, and "
            "pass --force to overwrite it"
        )


def _create_image(path: str, size: int) -> None:
    """Create a sparse image file of mode 0600: its superblocks hold wrapped keys."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as error:
        raise UsageError(f"cannot create image file {path}: {error.strerror}") from error
    try:
        os.ftruncate(fd, size)
    except OSError as error:
        os.close(fd)
        os.unlink(path)
        raise UsageError(
            f"cannot make image file {path} {size} bytes long: {error.strerror}; "
            "choose a smaller --size"
        ) from error
    os.close(fd)


def _open_all(paths: Sequence[str], size: int | None, force: bool) -> list[Member]:
    """Open and check the existing members first, then create the missing image files."""
    members: dict[str, Member] = {}
    created = []
    try:
        for path in paths:
            if os.path.exists(path):
                members[path] = open_member(path, writable=True, claim=True)
                _check_member(members[path], force)
        for path in paths:
            if path not in members:
                assert size is not None
                _create_image(path, size)
                created.append(path)
                members[path] = open_member(path, writable=True, claim=True)
    except BaseException:
        for member in members.values():
            member.close()
        for path in created:
            os.unlink(path)
        raise
    return [members[path] for path in paths]


def create_array(
    paths: Sequence[str],
    *,
    level: int,
    strip_size: int = DEFAULT_STRIP_SIZE,
    name: str = "",
    spares: Sequence[str] = (),
    keyslot_area: bytes | Callable[[], bytes] = b"",
    size: int | None = None,
    force: bool = False,
) -> CreatedArray:
    """Write the superblocks of a new array; nothing is written before all checks pass.

    Args:
        paths: the members, in role order.
        level: RAID level (0, 1, 5, 6, 10).
        strip_size: bytes per strip, a power of two from 4 KiB to 2 MiB.
        name: operator's name, at most 64 bytes of UTF-8.
        spares: paths that get spare superblocks.
        keyslot_area: the crypto keyslot area stored in every superblock, or a
            function that returns it, called once every check has passed
            (so that `--new-keyfile` creates its file only then).
        size: create missing image files of this many bytes.
        force: overwrite members that already carry a raidd superblock.

    Raises:
        UsageError: an invalid geometry, a missing, duplicate, busy, too small or
            already used member; the message names the path.
    """
    geometry = _check_geometry(level, len(paths), strip_size)
    if len(paths) + len(spares) > MAX_MEMBERS:
        raise UsageError(
            f"an array can have at most {MAX_MEMBERS} members and spares; got "
            f"{len(paths)} members and {len(spares)} spares"
        )
    _check_name(name)
    if size is not None and size < MIN_MEMBER_SIZE:
        raise UsageError(f"--size {size} is below the minimum member size of 16 MiB")
    all_paths = _prepare_paths([*paths, *spares], size)
    existing = [path for path in all_paths if os.path.exists(path)]
    members = _open_all(all_paths, size, force)
    created = [m.path for m in members if m.path not in existing]
    written: list[str] = []
    try:
        layout = _check_layout(members, geometry)
        area = keyslot_area() if callable(keyslot_area) else keyslot_area
        result = _write_new(members, len(paths), geometry, name, area, layout, written)
        result.warnings += _sparse_warnings(created, size)
        return result
    except BaseException as error:
        for member in members:
            member.close()
        for path in created:
            os.unlink(path)
        changed = [path for path in written if path not in created]
        if changed and isinstance(error, MemberError):
            raise MemberError(
                f"{error}; the image files this run created were removed, but these existing "
                f"members already hold the new array's superblocks: {', '.join(changed)}. "
                "Fix the failing member and run create again with --force"
            ) from error
        raise
    finally:
        for member in members:
            member.close()


def _sparse_warnings(created: list[str], size: int | None) -> list[str]:
    """Warn when the sparse images made here could outgrow the free space of their file system."""
    if not created or size is None:
        return []
    info = os.statvfs(Path(created[0]).parent)
    free = info.f_bavail * info.f_frsize
    total = size * len(created)
    if total <= free:
        return []
    return [
        f"the {len(created)} image files are sparse and may grow to {total} bytes, but the "
        f"file system holding {created[0]} has {free} bytes free; writes fail once it is full"
    ]


def _check_name(name: str) -> None:
    if any(not char.isprintable() for char in name):
        raise UsageError(f"array name {name!r} contains control characters; use printable text")
    if len(name.encode("utf-8", errors="surrogateescape")) > NAME_MAX:
        raise UsageError(f"array name {name!r} is longer than {NAME_MAX} bytes of UTF-8")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"array name {name!r} is not valid UTF-8") from None


def _check_layout(members: list[Member], geometry: Geometry) -> MemberLayout:
    smallest = min(m.size for m in members)
    layout = plan_layout(smallest, geometry.strip_size)
    if layout.stripe_count < MIN_STRIPES:
        needed = layout.data_offset + MIN_STRIPES * geometry.strip_size + SUPERBLOCK_SIZE
        raise UsageError(
            f"members of {smallest} bytes hold only {layout.stripe_count} stripes of "
            f"{geometry.strip_size}-byte strips; at least {MIN_STRIPES} are needed, so use "
            f"members of at least {needed} bytes ({-(-needed // MiB)} MiB) or a smaller "
            "--strip-size"
        )
    return layout


def _write_new(
    members: list[Member],
    count: int,
    geometry: Geometry,
    name: str,
    keyslot_area: bytes,
    layout: MemberLayout,
    written: list[str],
) -> CreatedArray:
    warnings = []
    sizes = {m.size for m in members}
    smallest = min(sizes)
    if len(sizes) > 1:
        warnings.append(
            f"members differ in size; every member uses {smallest} bytes, the smallest "
            f"({', '.join(m.path for m in members if m.size == smallest)})"
        )
        log.info("member_sizes_differ", smallest=smallest)
    array_uuid = uuid.uuid4()
    member_uuids = [uuid.uuid4() for _ in members]
    table = [
        MemberEntry(
            member_uuids[i],
            i if i < count else SPARE_ROLE,
            MemberState.ACTIVE if i < count else MemberState.SPARE,
            1 if i < count else 0,
            os.path.abspath(member.path),
        )
        for i, member in enumerate(members)
    ]
    shape = MapShape.for_array(layout.stripe_count, count, geometry.stripe_data_size)
    now = int(time.time())
    commit_tag = secrets.randbits(63)
    for i, member in enumerate(members):
        sb = Superblock(
            array_uuid=array_uuid,
            member_uuid=member_uuids[i],
            role=i if i < count else SPARE_ROLE,
            level=int(geometry.level),
            strip_size=geometry.strip_size,
            member_count=count,
            data_offset=layout.data_offset,
            data_size=layout.data_size,
            stripe_count=layout.stripe_count,
            event_counter=1,
            commit_tag=commit_tag,
            created_time=now,
            commit_time=now,
            array_name=name,
            reserve_stripes=max(MIN_RESERVE, layout.stripe_count // 100),
            map_entries_per_leaf=shape.entries_per_leaf,
            map_fanout=shape.fanout,
            map_depth=shape.depth,
            members=table,
            keyslot_area=keyslot_area,
        )
        # Slot 0 as well as slot 1 and the end copy, so no stale copy of an
        # earlier array survives on a forced re-create.
        written.append(member.path)
        write_superblock(member, sb)
        sb0 = Superblock(**{**sb.__dict__, "event_counter": 0})
        member.pwrite(sb0.pack(), 0)
        member.fsync()
    log.info("array_created", array=str(array_uuid), level=int(geometry.level), members=count)
    return CreatedArray(
        array_uuid=array_uuid,
        name=name,
        level=int(geometry.level),
        strip_size=geometry.strip_size,
        members=[(members[i].path, member_uuids[i]) for i in range(count)],
        spares=[(members[i].path, member_uuids[i]) for i in range(count, len(members))],
        stripe_count=layout.stripe_count,
        stripe_data_size=geometry.stripe_data_size,
        warnings=warnings,
    )
