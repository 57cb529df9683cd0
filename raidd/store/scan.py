"""Walk a watched root and collect each entry's metadata, without following symlinks.

Paths are bytes throughout, relative to the root and joined with b"/" (the
root itself is b""), so a name with a newline or invalid UTF-8 round-trips.
The walk opens each directory with O_NOFOLLOW relative to its parent's file
descriptor, so a directory swapped for a symlink while the walk runs makes
that open fail instead of leading outside the root. Entries come in
pre-order (a directory before its children), children sorted by name.

Regular files, directories and symlinks are entries; FIFOs, sockets and
device nodes are skipped with a note; an entry that cannot be read is
reported by path and error and the walk goes on.
"""

import errno
import os
import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum

import structlog

__all__ = [
    "Entry",
    "EntryType",
    "Excluder",
    "ScanProblem",
    "SubsetScanner",
    "data_extents",
    "read_xattrs",
    "scan_root",
]

log = structlog.get_logger(__name__)

_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NOT_SUPPORTED = {errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS}


class EntryType(Enum):
    """The kinds of entry the store keeps."""

    FILE = "file"
    DIRECTORY = "dir"
    SYMLINK = "symlink"


@dataclass(frozen=True, slots=True)
class Entry:
    """One path under a root with its lstat metadata.

    `mode` is the permission part of st_mode (S_IMODE: 0o7777 bits); times are
    nanoseconds. `xattrs` are (name, value) pairs sorted by name, POSIX ACLs
    included as system.posix_acl_access and system.posix_acl_default.
    """

    path: bytes
    type: EntryType
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    ctime_ns: int
    size: int
    inode: int
    device: int
    nlink: int
    blocks: int
    link_target: bytes | None = None
    xattrs: tuple[tuple[bytes, bytes], ...] = ()

    @property
    def name(self) -> bytes:
        """The last path component (b"" for the root)."""
        return self.path.rpartition(b"/")[2]

    @property
    def hard_link_key(self) -> tuple[int, int] | None:
        """(device, inode) for a file with more than one link, else None."""
        if self.type is EntryType.FILE and self.nlink > 1:
            return (self.device, self.inode)
        return None

    @property
    def may_be_sparse(self) -> bool:
        """True when fewer blocks are allocated than the size needs."""
        return self.type is EntryType.FILE and self.blocks * 512 < self.size


@dataclass(frozen=True, slots=True)
class ScanProblem:
    """An entry skipped by the walk: its path, a kind and the error text."""

    path: bytes
    kind: str
    message: str


def _translate_glob(pattern: bytes) -> bytes:
    """Translate one glob into a regular expression over b"/"-joined paths.

    `*` and `?` stay inside one component, `[...]` is a character class, and
    `**` matches any number of components (`a/**/b`, `**/x`, `cache/**`).
    """
    out = []
    index = 0
    length = len(pattern)
    while index < length:
        char = pattern[index : index + 1]
        if pattern.startswith(b"**/", index):
            out.append(rb"(?:[^/]*/)*")
            index += 3
        elif pattern.startswith(b"**", index):
            out.append(rb".*")
            index += 2
        elif char == b"*":
            out.append(rb"[^/]*")
            index += 1
        elif char == b"?":
            out.append(rb"[^/]")
            index += 1
        elif char == b"[":
            end = pattern.find(b"]", index + 2)
            if end == -1:
                out.append(re.escape(char))
                index += 1
                continue
            body = pattern[index + 1 : end]
            if body.startswith(b"!"):
                body = b"^" + body[1:]
            out.append(b"[" + body.replace(b"\\", b"\\\\") + b"]")
            index = end + 1
        else:
            out.append(re.escape(char))
            index += 1
    return b"".join(out)


class Excluder:
    """Exclude patterns of one root, relative to it.

    A pattern without `/` matches a name at any depth (`*.tmp`); a pattern
    with `/` matches the whole path from the root (`cache/*`, `logs/**`); a
    pattern ending in `/` matches directories only.
    """

    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns = tuple(patterns)
        self._rules: list[tuple[re.Pattern[bytes], bool, bool]] = []
        for pattern in patterns:
            raw = os.fsencode(pattern)
            directories_only = raw.endswith(b"/")
            raw = raw.rstrip(b"/")
            anchored = b"/" in raw
            expression = re.compile(_translate_glob(raw) + rb"\Z", re.DOTALL)
            self._rules.append((expression, anchored, directories_only))

    def excludes(self, path: bytes, is_directory: bool) -> bool:
        """Return True when a path relative to the root matches a pattern."""
        name = path.rpartition(b"/")[2]
        for expression, anchored, directories_only in self._rules:
            if directories_only and not is_directory:
                continue
            if expression.match(path if anchored else name):
                return True
        return False


def read_xattrs(path: bytes | int) -> tuple[tuple[bytes, bytes], ...]:
    """Read every extended attribute of a path or open fd, never following a final symlink.

    A filesystem without xattr support yields none.

    Raises:
        OSError: the attributes exist but cannot be read.
    """
    try:
        names = (
            os.listxattr(path)
            if isinstance(path, int)
            else os.listxattr(path, follow_symlinks=False)
        )
    except OSError as error:
        if error.errno in _NOT_SUPPORTED:
            return ()
        raise
    pairs = []
    for name in sorted(names):
        try:
            if isinstance(path, int):
                value = os.getxattr(path, name)
            else:
                value = os.getxattr(path, name, follow_symlinks=False)
        except OSError as error:
            # ENODATA: removed between listing and reading.
            if error.errno == errno.ENODATA:
                continue
            raise
        pairs.append((os.fsencode(name), value))
    return tuple(pairs)


def data_extents(fd: int, size: int) -> list[tuple[int, int]]:
    """Return the (offset, length) runs of a file that hold data, via SEEK_DATA/SEEK_HOLE.

    On a filesystem without hole reporting the whole file is one run. The
    file's position is left at the end of the last run. Runs past `size`
    (a file that grew) are cut at `size`.
    """
    extents: list[tuple[int, int]] = []
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as error:
            if error.errno == errno.ENXIO:
                break
            raise
        if start >= size:
            break
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        extents.append((start, end - start))
        offset = end
    return extents


def _entry_type(mode: int) -> EntryType | None:
    if stat.S_ISREG(mode):
        return EntryType.FILE
    if stat.S_ISDIR(mode):
        return EntryType.DIRECTORY
    if stat.S_ISLNK(mode):
        return EntryType.SYMLINK
    return None


def _special_kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    ):
        if test(mode):
            return kind
    return f"file of type 0o{stat.S_IFMT(mode):o}"


def _xattr_target(fd: int, name: bytes) -> bytes | int:
    """Return what the xattr calls should name: the open directory itself, or its child.

    /proc/self/fd/N resolves to the directory the walk opened, so the calls
    reach that directory's child even if a component of the root's path was
    swapped meanwhile. The directory itself is named by its fd, because
    follow_symlinks=False on /proc/self/fd/N would read the magic link.
    """
    return b"/proc/self/fd/%d/%s" % (fd, name) if name else fd


@dataclass
class _Level:
    fd: int
    path: bytes
    children: list[bytes] = field(default_factory=list)
    entry: Entry | None = None


def _make_entry(
    relative: bytes, info: os.stat_result, kind: EntryType, fd: int, name: bytes
) -> Entry:
    target = os.readlink(name, dir_fd=fd) if kind is EntryType.SYMLINK else None
    return Entry(
        path=relative,
        type=kind,
        mode=stat.S_IMODE(info.st_mode),
        uid=info.st_uid,
        gid=info.st_gid,
        mtime_ns=info.st_mtime_ns,
        ctime_ns=info.st_ctime_ns,
        size=info.st_size if kind is not EntryType.DIRECTORY else 0,
        inode=info.st_ino,
        device=info.st_dev,
        nlink=info.st_nlink,
        blocks=info.st_blocks,
        link_target=target,
        xattrs=read_xattrs(_xattr_target(fd, name)),
    )


def _list_directory(fd: int) -> list[bytes]:
    with os.scandir(fd) as iterator:
        return sorted(os.fsencode(item.name) for item in iterator)


def scan_root(
    root: bytes | str | os.PathLike[str],
    excluder: Excluder | None = None,
    problems: list[ScanProblem] | None = None,
) -> Iterator[Entry]:
    """Walk a root and yield its entries in pre-order, the root itself first.

    Args:
        root: the watched directory (absolute path).
        excluder: the root's exclude patterns; an excluded directory is not entered.
        problems: receives a ScanProblem for each skipped entry (special file,
            unreadable or vanished entry); the walk continues past each.

    Raises:
        OSError: the root itself cannot be opened (missing, not a directory, a
            symlink); the caller reports the whole root.
    """
    excluder = excluder or Excluder(())
    sink = problems if problems is not None else []
    root_bytes = os.fsencode(root)
    root_fd = os.open(root_bytes, _DIRECTORY_FLAGS)
    try:
        info = os.fstat(root_fd)
        top = _Level(root_fd, b"", list(reversed(_list_directory(root_fd))))
        top.entry = _make_entry(b"", info, EntryType.DIRECTORY, root_fd, b"")
    except BaseException:
        os.close(root_fd)
        raise
    yield from _walk(top, excluder, sink)


def _walk(top: _Level, excluder: Excluder, sink: list[ScanProblem]) -> Iterator[Entry]:
    """Yield `top`'s entry and then everything under it in pre-order; close every fd."""
    stack = [top]
    try:
        assert top.entry is not None
        yield top.entry
        while stack:
            level = stack[-1]
            if not level.children:
                os.close(level.fd)
                stack.pop()
                continue
            name = level.children.pop()
            relative = level.path + b"/" + name if level.path else name
            child = _visit(level, name, relative, excluder, sink)
            if isinstance(child, Entry):
                yield child
            elif isinstance(child, _Level) and child.entry is not None:
                stack.append(child)
                yield child.entry
    finally:
        for level in stack:
            os.close(level.fd)


def _report(sink: list[ScanProblem], relative: bytes, kind: str, message: str) -> None:
    sink.append(ScanProblem(relative, kind, message))
    log.warning("scan_entry_skipped", path=relative, kind=kind, error=message)


def _visit(
    level: _Level, name: bytes, relative: bytes, excluder: Excluder, sink: list[ScanProblem]
) -> Entry | _Level | None:
    try:
        info = os.stat(name, dir_fd=level.fd, follow_symlinks=False)
    except FileNotFoundError:
        _report(sink, relative, "vanished", "removed during the scan")
        return None
    except OSError as error:
        _report(sink, relative, "unreadable", f"stat failed: {error.strerror}")
        return None
    kind = _entry_type(info.st_mode)
    if kind is None:
        _report(sink, relative, "special", f"{_special_kind(info.st_mode)} not backed up")
        return None
    if excluder.excludes(relative, kind is EntryType.DIRECTORY):
        return None
    try:
        if kind is not EntryType.DIRECTORY:
            return _make_entry(relative, info, kind, level.fd, name)
        fd = os.open(name, _DIRECTORY_FLAGS, dir_fd=level.fd)
    except FileNotFoundError:
        _report(sink, relative, "vanished", "removed during the scan")
        return None
    except OSError as error:
        _report(sink, relative, "unreadable", f"{error.strerror}")
        return None
    try:
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
            raise OSError(errno.ESTALE, "replaced during the scan")
        entry = _make_entry(relative, opened, EntryType.DIRECTORY, fd, b"")
        children = list(reversed(_list_directory(fd)))
    except OSError as error:
        os.close(fd)
        _report(sink, relative, "unreadable", f"{error.strerror}")
        return None
    return _Level(fd, relative, children, entry)


class SubsetScanner:
    """Look up chosen paths of a root, and walk chosen subtrees, as scan_root reaches them.

    A path is reached through its parent directories, each opened with
    O_NOFOLLOW relative to the one above, and none of them excluded. So a
    path under an excluded directory, or below a component that is a
    symlink or no directory, is not reached, as scan_root never yields it.
    Open parents are kept as one chain from the root, so looking paths up
    in sorted order opens each directory once.

    Args:
        root: the watched directory (absolute path).
        excluder: the root's exclude patterns.
        problems: receives a ScanProblem for each entry that scan_root would
            skip with one (special file, unreadable entry).

    Raises:
        OSError: the root itself cannot be opened.
    """

    def __init__(
        self,
        root: bytes | str | os.PathLike[str],
        excluder: Excluder | None = None,
        problems: list[ScanProblem] | None = None,
    ) -> None:
        self.excluder = excluder or Excluder(())
        self.problems = problems if problems is not None else []
        self._chain: list[tuple[bytes, int]] = [
            (b"", os.open(os.fsencode(root), _DIRECTORY_FLAGS))
        ]

    def __enter__(self) -> "SubsetScanner":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every directory the scanner keeps open."""
        while self._chain:
            os.close(self._chain.pop()[1])

    def lookup(self, path: bytes) -> tuple[Entry, list[bytes]] | None:
        """Return the entry scan_root would yield for `path`, and a directory's child names.

        Returns None when scan_root would yield nothing for `path`: it does
        not exist, it is not reached, it is excluded, or it is skipped with
        a problem. The child names of a file or symlink are empty.
        """
        level = self._open(path)
        if level is None:
            return None
        if isinstance(level, Entry):
            return level, []
        os.close(level.fd)
        assert level.entry is not None
        return level.entry, sorted(level.children)

    def walk(self, path: bytes) -> Iterator[Entry]:
        """Yield what scan_root yields at and under `path`, in pre-order."""
        level = self._open(path)
        if isinstance(level, Entry):
            yield level
        elif level is not None:
            yield from _walk(level, self.excluder, self.problems)

    def _open(self, path: bytes) -> Entry | _Level | None:
        if not path:
            fd = os.dup(self._chain[0][1])
            try:
                info = os.fstat(fd)
                entry = _make_entry(b"", info, EntryType.DIRECTORY, fd, b"")
                children = list(reversed(_list_directory(fd)))
            except BaseException:
                os.close(fd)
                raise
            return _Level(fd, b"", children, entry)
        parent, _, name = path.rpartition(b"/")
        parent_fd = self._reach(parent)
        if parent_fd is None:
            return None
        try:
            os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        except OSError:
            pass  # _visit reports it, as scan_root does
        return _visit(_Level(parent_fd, parent), name, path, self.excluder, self.problems)

    def _reach(self, directory: bytes) -> int | None:
        """Return an fd of `directory` opened the way scan_root would enter it, or None."""
        components = directory.split(b"/") if directory else []
        depth = 0
        while depth + 1 < len(self._chain) and depth < len(components):
            if self._chain[depth + 1][0] != b"/".join(components[: depth + 1]):
                break
            depth += 1
        while len(self._chain) > depth + 1:
            os.close(self._chain.pop()[1])
        for index in range(depth, len(components)):
            relative = b"/".join(components[: index + 1])
            if self.excluder.excludes(relative, True):
                return None
            try:
                fd = os.open(components[index], _DIRECTORY_FLAGS, dir_fd=self._chain[-1][1])
            except (FileNotFoundError, NotADirectoryError):
                return None
            except OSError as error:
                if error.errno == errno.ELOOP:
                    return None
                _report(self.problems, relative, "unreadable", f"{error.strerror}")
                return None
            self._chain.append((relative, fd))
        return self._chain[-1][1]
