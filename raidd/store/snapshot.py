"""Glue between scans, reads, catalog versions and restore entries.

- is_unchanged decides from a scan entry and the path's current version
  whether the file must be read again: any change of type, size, mtime,
  ctime, inode, mode, ownership, link target or xattrs means yes. ctime
  moves on every write and metadata change, even one that restores the
  mtime afterwards, so a file is skipped only when nothing about it moved.
- HardLinkGroups numbers the hard-link groups of one commit. Group ids are
  `sequence << 24 | n`, unique across commits, so an inode number reused
  after a deletion never links unrelated files in a snapshot. Adding or
  removing a link changes the inode's ctime, so every path of a group is
  versioned again together and a snapshot never mixes groups.
- restore_entries turns the versions of a snapshot into restore entries:
  the first path of each group is written, the others become links to it.
"""

import os
from collections.abc import Callable, Iterable, Iterator, Mapping

from raidd.errors import UsageError
from raidd.store.catalog_format import ChunkEntry, Version
from raidd.store.reader import FileRead
from raidd.store.restore_writer import RestoreEntry
from raidd.store.scan import Entry, EntryType

__all__ = [
    "HardLinkGroups",
    "is_unchanged",
    "is_under",
    "locate_path",
    "restore_entries",
    "restore_path",
    "version_from",
]

_GROUP_SHIFT = 24


def is_unchanged(entry: Entry, version: Version | None) -> bool:
    """Return True when `entry` matches its current version, so it need not be read."""
    if version is None or version.type is not entry.type:
        return False
    if version.changed_during_read:
        return False
    same_metadata = (
        version.mode == entry.mode
        and version.uid == entry.uid
        and version.gid == entry.gid
        and version.mtime_ns == entry.mtime_ns
        and version.ctime_ns == entry.ctime_ns
        and version.inode == entry.inode
        and version.xattrs == entry.xattrs
    )
    if not same_metadata:
        return False
    if entry.type is EntryType.SYMLINK:
        return version.link_target == entry.link_target
    if entry.type is EntryType.FILE:
        return version.size == entry.size
    return True


class HardLinkGroups:
    """Group ids for the hard links found by one commit's scan."""

    def __init__(self, sequence: int) -> None:
        if sequence >= 1 << (64 - _GROUP_SHIFT):
            raise ValueError(f"commit sequence {sequence} is too large for hard-link group ids")
        self.sequence = sequence
        self._groups: dict[tuple[int, int], int] = {}

    def assign(self, entry: Entry) -> int:
        """Return the group of `entry` (0 for a file with one link)."""
        key = entry.hard_link_key
        if key is None:
            return 0
        group = self._groups.get(key)
        if group is None:
            if len(self._groups) + 1 >= 1 << _GROUP_SHIFT:
                raise ValueError("more than 16 million hard-link groups in one commit")
            group = (self.sequence << _GROUP_SHIFT) | (len(self._groups) + 1)
            self._groups[key] = group
        return group


def version_from(
    root: str, entry: Entry, read: FileRead[bytes] | None, hard_link_group: int = 0
) -> Version:
    """Build the catalog version of a scanned entry.

    Args:
        root: the root's name.
        entry: the scan's entry.
        read: for files, the reader's result; the chunk refs must be chunk ids.
        hard_link_group: from HardLinkGroups.assign.
    """
    chunks: tuple[ChunkEntry, ...] = ()
    extents: tuple[tuple[int, int], ...] = ()
    size = entry.size
    changed = False
    sqlite_copy = False
    if read is not None:
        chunks = tuple(ChunkEntry(ref.offset, ref.length, ref.ref) for ref in read.chunks)
        extents = read.extents
        size = read.size
        changed = read.changed_during_read
        sqlite_copy = read.sqlite_mode is not None
    return Version(
        root=root,
        path=entry.path,
        type=entry.type,
        mode=entry.mode,
        uid=entry.uid,
        gid=entry.gid,
        mtime_ns=entry.mtime_ns,
        size=size if entry.type is EntryType.FILE else 0,
        chunks=chunks,
        extents=extents,
        link_target=entry.link_target,
        hard_link_group=hard_link_group,
        xattrs=entry.xattrs,
        changed_during_read=changed,
        sqlite_copy=sqlite_copy,
        ctime_ns=entry.ctime_ns,
        inode=entry.inode,
    )


def restore_path(prefix: bytes, path: bytes) -> bytes:
    """Return where a root's path lands under the target: `<prefix>/<path>`."""
    return prefix + b"/" + path if path else prefix


def restore_entries(
    versions: Iterable[Version], prefix: bytes, keep: Callable[[Version], bool] | None = None
) -> Iterator[tuple[RestoreEntry, Version]]:
    """Turn a snapshot's versions into restore entries under `prefix` (the root's name).

    Args:
        versions: the versions of one snapshot, in path order.
        prefix: the first component under the target, normally the root's name.
        keep: if given, only versions it accepts are restored.
    """
    first_of_group: dict[int, bytes] = {}
    for version in versions:
        if keep is not None and not keep(version):
            continue
        target = restore_path(prefix, version.path)
        link_to = None
        if version.hard_link_group:
            link_to = first_of_group.setdefault(version.hard_link_group, target)
            if link_to == target:
                link_to = None
        entry = RestoreEntry(
            path=target,
            type=version.type,
            mode=version.mode,
            uid=version.uid,
            gid=version.gid,
            mtime_ns=version.mtime_ns,
            size=version.size,
            link_target=version.link_target,
            xattrs=version.xattrs,
            extents=version.extents,
            hard_link_to=link_to,
        )
        yield entry, version


def is_under(path: bytes, prefix: bytes) -> bool:
    """Return True when `path` is `prefix` or inside it, matching whole components.

    `docs/a` is under `docs`, `docs2/a` is not; every path is under b"".
    """
    return not prefix or path == prefix or path.startswith(prefix + b"/")


def locate_path(path: bytes, roots: Mapping[str, bytes]) -> tuple[str, bytes]:
    """Find the root and the root-relative prefix that a restore PATH names.

    Args:
        path: a root's name, or an absolute path at or under a root's path.
        roots: each root's name and its absolute path.

    Returns:
        (root name, relative path), the relative path b"" for the whole root.

    Raises:
        UsageError: the path is neither a root's name nor under a root's path.
    """
    if b"/" not in path:
        name = os.fsdecode(path)
        if name in roots:
            return name, b""
    if path.startswith(b"/"):
        normal = os.path.normpath(path)
        for name, root in roots.items():
            root_normal = os.path.normpath(root)
            if is_under(normal, root_normal) or root_normal == b"/":
                relative = normal[len(root_normal) :].lstrip(b"/")
                return name, relative
    known = ", ".join(f"{name} ({os.fsdecode(root)})" for name, root in sorted(roots.items()))
    raise UsageError(
        f"{os.fsdecode(path)!r} is not a watched root's name or a path under one "
        f"(roots: {known or 'none configured'})"
    )
