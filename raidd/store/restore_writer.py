"""Write restored entries into a target directory without ever writing outside it.

Safety rules, each enforced here:

- A catalog path is relative and made of plain components: an empty, `.`,
  `..` or NUL-containing component, or a leading `/`, is rejected.
- Every directory below the target is opened with O_NOFOLLOW relative to its
  parent's descriptor (openat), so a symlink already inside the target, even
  one created while the restore runs, is never followed. Files are created
  with O_CREAT | O_EXCL | O_NOFOLLOW under a temporary name in their
  directory, then renamed over the final name; rename replaces a symlink
  itself, never what it points to.
- The first time the writer enters a directory, it removes the temporary
  files a killed restore left there (raidd.store.restore_temp).
- An existing entry that differs from the version is left alone and reported
  as a conflict unless `overwrite` is set. One that matches (same type, mode,
  size, mtime and content, or the same link target) is left as it is, so
  restoring the same version twice writes nothing.

Durability is batched. Files are not fsynced one by one; finish() calls
syncfs(2) once for each filesystem written to, which flushes file data and
directory entries alike, before it reports success. Directory metadata
(mode, mtime, ownership, xattrs) is applied in finish(), deepest first, so
that creating children does not move a directory's restored mtime.
"""

import ctypes
import errno
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from raidd.errors import UsageError
from raidd.store.restore_source import StreamSource
from raidd.store.restore_temp import remove_stale_temporaries, temporary_name
from raidd.store.scan import EntryType

__all__ = [
    "RestoreEntry",
    "RestoreReport",
    "RestoreWriter",
    "show_path",
    "split_catalog_path",
]

log = structlog.get_logger(__name__)

DataSource = Callable[[], Iterable[tuple[int, bytes]]]
_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_COMPARE_BLOCK = 1 << 20


@dataclass(frozen=True)
class RestoreEntry:
    """One version to write: a path relative to the target and its metadata.

    `extents` are the (offset, length) runs that hold data, kept for callers
    and reports; the writer writes what the data source yields and leaves
    the rest of `size` a hole. `hard_link_to` names an entry restored earlier
    in the same run that this one is a hard link of. A `parent_only` entry is
    a directory above the requested paths: it is not restored, but a parent
    that the writer creates for the requested entries gets its metadata.
    """

    path: bytes
    type: EntryType
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    size: int = 0
    link_target: bytes | None = None
    xattrs: tuple[tuple[bytes, bytes], ...] = ()
    extents: tuple[tuple[int, int], ...] | None = None
    hard_link_to: bytes | None = None
    parent_only: bool = False


@dataclass
class RestoreReport:
    """The outcome of a restore, path by path (paths relative to the target)."""

    written: list[bytes] = field(default_factory=list)
    unchanged: list[bytes] = field(default_factory=list)
    conflicts: list[tuple[bytes, str]] = field(default_factory=list)
    errors: list[tuple[bytes, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing was left out: no conflict and no error."""
        return not self.conflicts and not self.errors


def show_path(path: bytes) -> str:
    """Return a catalog path for messages: quoted, with newlines and odd bytes escaped."""
    return repr(os.fsdecode(path))


def split_catalog_path(path: bytes) -> list[bytes]:
    """Split a catalog path into components, rejecting any that could leave the target.

    Raises:
        UsageError: an absolute path, or an empty, `.`, `..` or NUL component.
    """
    if path.startswith(b"/"):
        raise UsageError(f"unsafe path {show_path(path)} in the catalog: it is absolute")
    parts = path.split(b"/")
    for part in parts:
        if part in (b"", b".", b"..") or b"\0" in part:
            raise UsageError(
                f"unsafe path {show_path(path)} in the catalog: component {show_path(part)} "
                "is not allowed"
            )
    return parts


class _Unsafe(Exception):
    """A path component that is not a plain directory inside the target."""


def _reads_as_zeros(fd: int, start: int, end: int) -> bool:
    """Return True when bytes start..end of a file are all zero, skipping holes."""
    position = start
    while position < end:
        try:
            position = os.lseek(fd, position, os.SEEK_DATA)
        except OSError as error:
            if error.errno == errno.ENXIO:
                return True
            raise
        if position >= end:
            return True
        block = os.pread(fd, min(_COMPARE_BLOCK, end - position), position)
        if not block:
            return False
        if block.count(0) != len(block):
            return False
        position += len(block)
    return True


_libc = ctypes.CDLL(None, use_errno=True)
# sync_file_range(2) flag from <fcntl.h>: start writeback of dirty pages, do not wait.
_SYNC_FILE_RANGE_WRITE = 2


def _start_writeback(fd: int) -> None:
    """Start writing a file's data to disk now, so the final syncfs has less to wait for.

    A hint, like posix_fadvise: finish() still calls syncfs, which is what
    makes the data durable, so a failure here is logged and not raised.
    """
    if _libc.sync_file_range(fd, ctypes.c_int64(0), ctypes.c_int64(0), _SYNC_FILE_RANGE_WRITE):
        log.debug("restore_writeback_failed", error=os.strerror(ctypes.get_errno()))


def _syncfs(fd: int) -> None:
    libc = _libc
    if libc.syncfs(fd) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


class RestoreWriter:
    """Write entries under one target directory; use as a context manager.

    Entries of a directory may come before or after the directory's own entry;
    missing parents are created with mode 0700 until their entry arrives. A
    missing parent that has only a `parent_only` entry gets that entry's
    metadata in finish(), and one without any entry stays 0700.
    """

    def __init__(
        self,
        target: Path,
        overwrite: bool = False,
        dry_run: bool = False,
        restore_ownership: bool | None = None,
    ) -> None:
        """Open the target directory, creating it when missing (not in a dry run).

        Args:
            target: DIR; it may itself be a symlink, which the caller chose.
            overwrite: replace existing entries that differ from the version.
            dry_run: decide and report every action, write nothing.
            restore_ownership: chown to the recorded uid and gid; by default
                only when running as root.
        """
        if not dry_run:
            target.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.target = target
        self.overwrite = overwrite
        self.dry_run = dry_run
        self.restore_ownership = (
            os.geteuid() == 0 if restore_ownership is None else restore_ownership
        )
        self.report = RestoreReport()
        self._root_fd = (
            os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) if target.exists() else -1
        )
        self._directories: dict[bytes, RestoreEntry] = {}
        self._parents: dict[bytes, RestoreEntry] = {}
        self._created: set[bytes] = set()
        self._restored_files: set[bytes] = set()
        self._devices: dict[int, int] = {}
        self._cleaned: set[bytes] = set()
        if self._root_fd >= 0:
            self._remove_stale_temporaries(b"", self._root_fd)
        # The directories from the target down to the parent of the entry
        # restored last, kept open because entries come in path order and
        # neighbours share them: (name, descriptor, (st_dev, st_ino)).
        self._levels: list[tuple[bytes, int, tuple[int, int]]] = []

    def __enter__(self) -> "RestoreWriter":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the descriptors the writer holds."""
        self._forget_levels()
        for fd in self._devices.values():
            os.close(fd)
        self._devices.clear()
        if self._root_fd >= 0:
            os.close(self._root_fd)
            self._root_fd = -1

    def restore(self, entry: RestoreEntry, data: DataSource | None = None) -> str:
        """Write one entry; return the action: written, unchanged, conflict, error or parent.

        A `parent_only` entry is only kept for finish(), and its action is `parent`.

        Args:
            entry: the version to restore.
            data: for files, a callable returning (offset, bytes) pieces of the
                content in order; it may be called twice (compare, then write).
        """
        if entry.parent_only:
            self._parents[entry.path] = entry
            return "parent"
        try:
            parts = split_catalog_path(entry.path)
        except UsageError as error:
            return self._record_error(entry.path, str(error))
        if entry.type is EntryType.DIRECTORY:
            self._directories[entry.path] = entry
        try:
            parent = self._parent_of(parts[:-1])
        except _Unsafe as problem:
            return self._record_conflict(entry.path, str(problem))
        except OSError as error:
            return self._record_error(entry.path, f"cannot open its directory: {error.strerror}")
        try:
            return self._restore_in(parent, parts[-1], entry, data)
        except OSError as error:
            return self._record_error(entry.path, error.strerror or str(error))

    def _parent_of(self, parts: list[bytes]) -> int:
        """Return the open parent directory of an entry, reusing the directories of the last.

        Each kept level is checked with one lstat relative to the level
        above (same device and inode, still a directory), so a directory
        moved away or replaced by a symlink since is opened again, and
        rejected like any other symlink. Only the levels that differ are
        opened, with O_NOFOLLOW as in _open_parent.
        """
        fd = self._root_fd
        keep = 0
        for level, part in enumerate(parts):
            if level >= len(self._levels) or self._levels[level][0] != part or fd < 0:
                break
            _, child, identity = self._levels[level]
            try:
                info = os.stat(part, dir_fd=fd, follow_symlinks=False)
            except OSError:
                break
            if not stat.S_ISDIR(info.st_mode) or (info.st_dev, info.st_ino) != identity:
                break
            fd = child
            keep = level + 1
        self._forget_levels(keep)
        for index in range(keep, len(parts)):
            fd = self._open_child(fd, parts, index)
            if fd < 0:
                break
            info = os.fstat(fd)
            self._levels.append((parts[index], fd, (info.st_dev, info.st_ino)))
            self._remove_stale_temporaries(b"/".join(parts[: index + 1]), fd)
            if not self.dry_run:
                self._remember_device(fd, info.st_dev)
        return fd

    def _forget_levels(self, keep: int = 0) -> None:
        while len(self._levels) > keep:
            os.close(self._levels.pop()[1])

    def restore_stream(self, entry: RestoreEntry, pieces: Iterable[tuple[int, bytes]]) -> str:
        """Write one file whose content arrives once, in order, as from the control socket.

        The content is read at most once from `pieces`: a comparison with an
        existing file reads it as it goes, and a write that follows a failed
        comparison reads the part that matched back from the existing file.
        Whatever the writer did not read is read to the end before this
        returns, so the stream stays in step.

        Returns:
            The action, as `restore()` returns it.
        """
        source = StreamSource(pieces)
        try:
            return self.restore(entry, source)
        finally:
            source.close()

    def restore_link(self, entry: RestoreEntry) -> str:
        """Make `entry.path` a hard link of `entry.hard_link_to`, restored earlier in this run.

        An existing entry that is already that file is left as it is; any
        other is a conflict unless `overwrite`.

        Returns:
            The action: written, unchanged, conflict or error.
        """
        assert entry.hard_link_to is not None
        if entry.hard_link_to not in self._restored_files:
            source = show_path(entry.hard_link_to)
            if any(path == entry.hard_link_to for path, _ in self.report.conflicts):
                return self._record_conflict(
                    entry.path, f"its hard-link source {source} was left alone"
                )
            return self._record_error(
                entry.path, f"its hard-link source {source} was not restored"
            )
        try:
            parts = split_catalog_path(entry.path)
            parent = self._open_parent(parts[:-1])
        except UsageError as error:
            return self._record_error(entry.path, str(error))
        except _Unsafe as problem:
            return self._record_conflict(entry.path, str(problem))
        except OSError as error:
            return self._record_error(entry.path, f"cannot open its directory: {error.strerror}")
        try:
            return self._link_in(parent, parts[-1], entry)
        except _Unsafe as problem:
            return self._record_conflict(entry.path, str(problem))
        except OSError as error:
            return self._record_error(entry.path, error.strerror or str(error))
        finally:
            if parent >= 0 and parent != self._root_fd:
                os.close(parent)

    def _link_in(self, parent: int, name: bytes, entry: RestoreEntry) -> str:
        existing = self._lstat(parent, name)
        if existing is not None:
            source = self._lstat_path(entry.hard_link_to or b"")
            if source is not None and (source.st_dev, source.st_ino) == (
                existing.st_dev,
                existing.st_ino,
            ):
                self.report.unchanged.append(entry.path)
                return "unchanged"
            if not self.overwrite or stat.S_ISDIR(existing.st_mode):
                return self._record_conflict(
                    entry.path, "a file other than its hard-link source exists there"
                )
        if self.dry_run or parent < 0:
            self.report.written.append(entry.path)
            return "written"
        self._remember_device(parent)
        temp = self._temp_name()
        self._link_file(parent, temp, entry)
        try:
            os.rename(temp, name, src_dir_fd=parent, dst_dir_fd=parent)
        except OSError:
            os.unlink(temp, dir_fd=parent)
            raise
        self.report.written.append(entry.path)
        return "written"

    def _lstat_path(self, path: bytes) -> os.stat_result | None:
        parts = split_catalog_path(path)
        parent = self._open_parent(parts[:-1])
        try:
            return self._lstat(parent, parts[-1])
        finally:
            if parent >= 0 and parent != self._root_fd:
                os.close(parent)

    def _open_parent(self, parts: list[bytes]) -> int:
        """Open the parent directory of an entry, creating missing components."""
        fd = self._root_fd
        for index in range(len(parts)):
            child = self._open_child(fd, parts, index)
            if fd != self._root_fd:
                os.close(fd)
            fd = child
            if fd >= 0:
                self._remove_stale_temporaries(b"/".join(parts[: index + 1]), fd)
            if fd < 0:
                break
        return fd

    def _remove_stale_temporaries(self, where: bytes, fd: int) -> None:
        if not self.dry_run and where not in self._cleaned:
            self._cleaned.add(where)
            remove_stale_temporaries(fd, where)

    def _open_child(self, fd: int, parts: list[bytes], index: int) -> int:
        """Open directory `parts[index]` in `fd` without following a symlink, creating it.

        Raises:
            _Unsafe: the component is a symlink or not a directory.
        """
        try:
            return os.open(parts[index], _DIRECTORY_FLAGS, dir_fd=fd) if fd >= 0 else -1
        except FileNotFoundError:
            created = self._make_directory(fd, parts[index])
            if created >= 0:
                self._created.add(b"/".join(parts[: index + 1]))
            return created
        except OSError as error:
            if error.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            where = b"/".join(parts[: index + 1])
            raise _Unsafe(
                f"{show_path(where)} is a symlink or not a directory; it is not followed"
            ) from None

    def _make_directory(self, parent: int, name: bytes) -> int:
        if self.dry_run or parent < 0:
            return -1
        os.mkdir(name, 0o700, dir_fd=parent)
        return os.open(name, _DIRECTORY_FLAGS, dir_fd=parent)

    def _restore_in(
        self, parent: int, name: bytes, entry: RestoreEntry, data: DataSource | None
    ) -> str:
        existing = self._lstat(parent, name)
        if existing is not None:
            verdict = self._compare(parent, name, existing, entry, data)
            if verdict is None:
                # An existing directory is merged into; its metadata is set in finish().
                if entry.type is EntryType.FILE:
                    self._restored_files.add(entry.path)
                self.report.unchanged.append(entry.path)
                return "unchanged"
            if not self.overwrite or stat.S_ISDIR(existing.st_mode):
                return self._record_conflict(entry.path, verdict)
        if self.dry_run:
            if entry.type is EntryType.FILE:
                self._restored_files.add(entry.path)
            self.report.written.append(entry.path)
            return "written"
        if parent == self._root_fd:
            self._remember_device(parent)
        if entry.type is EntryType.DIRECTORY:
            if existing is not None:
                return self._record_conflict(entry.path, "a file is where the directory goes")
            os.mkdir(name, 0o700, dir_fd=parent)
        elif entry.type is EntryType.SYMLINK:
            self._write_symlink(parent, name, entry)
        else:
            self._write_file(parent, name, entry, data)
            self._restored_files.add(entry.path)
        self.report.written.append(entry.path)
        return "written"

    def _lstat(self, parent: int, name: bytes) -> os.stat_result | None:
        if parent < 0:
            return None
        try:
            return os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def _compare(
        self,
        parent: int,
        name: bytes,
        existing: os.stat_result,
        entry: RestoreEntry,
        data: DataSource | None,
    ) -> str | None:
        """Return None when the existing entry matches the version, else how it differs."""
        kinds = {
            EntryType.FILE: stat.S_ISREG,
            EntryType.DIRECTORY: stat.S_ISDIR,
            EntryType.SYMLINK: stat.S_ISLNK,
        }
        if not kinds[entry.type](existing.st_mode):
            return "a different kind of entry exists there"
        if entry.type is EntryType.DIRECTORY:
            return None
        if entry.type is EntryType.SYMLINK:
            if os.readlink(name, dir_fd=parent) != entry.link_target:
                return "a symlink with another target exists there"
            return None
        if stat.S_IMODE(existing.st_mode) != entry.mode:
            return "a file with another mode exists there"
        if existing.st_size != entry.size or existing.st_mtime_ns != entry.mtime_ns:
            return "a file with another size or mtime exists there"
        if not self._same_content(parent, name, entry, data):
            return "a file with other content exists there"
        return None

    def _same_content(
        self, parent: int, name: bytes, entry: RestoreEntry, data: DataSource | None
    ) -> bool:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        try:
            if isinstance(data, StreamSource):
                data.compare_with(fd)
            position = 0
            for offset, piece in data() if data is not None else ():
                if offset > position and not _reads_as_zeros(fd, position, offset):
                    return False
                if os.pread(fd, len(piece), offset) != piece:
                    return False
                position = offset + len(piece)
            return _reads_as_zeros(fd, position, entry.size)
        finally:
            os.close(fd)

    def _temp_name(self) -> bytes:
        return temporary_name()

    def _write_file(
        self, parent: int, name: bytes, entry: RestoreEntry, data: DataSource | None
    ) -> None:
        temp = self._temp_name()
        if entry.hard_link_to is not None and entry.hard_link_to in self._restored_files:
            self._link_file(parent, temp, entry)
        else:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(temp, flags, 0o600, dir_fd=parent)
            try:
                for offset, piece in data() if data is not None else ():
                    os.pwrite(fd, piece, offset)
                os.ftruncate(fd, entry.size)
                _start_writeback(fd)
                self._apply_metadata(fd, entry)
            except BaseException:
                os.close(fd)
                os.unlink(temp, dir_fd=parent)
                raise
            os.close(fd)
        try:
            os.rename(temp, name, src_dir_fd=parent, dst_dir_fd=parent)
        except OSError:
            os.unlink(temp, dir_fd=parent)
            raise

    def _link_file(self, parent: int, temp: bytes, entry: RestoreEntry) -> None:
        assert entry.hard_link_to is not None
        source_parts = split_catalog_path(entry.hard_link_to)
        source_parent = self._open_parent(source_parts[:-1])
        try:
            os.link(
                source_parts[-1],
                temp,
                src_dir_fd=source_parent,
                dst_dir_fd=parent,
                follow_symlinks=False,
            )
        finally:
            if source_parent != self._root_fd:
                os.close(source_parent)

    def _write_symlink(self, parent: int, name: bytes, entry: RestoreEntry) -> None:
        temp = self._temp_name()
        os.symlink(entry.link_target or b"", temp, dir_fd=parent)
        try:
            if self.restore_ownership:
                os.chown(temp, entry.uid, entry.gid, dir_fd=parent, follow_symlinks=False)
            os.utime(
                temp, ns=(entry.mtime_ns, entry.mtime_ns), dir_fd=parent, follow_symlinks=False
            )
            os.rename(temp, name, src_dir_fd=parent, dst_dir_fd=parent)
        except BaseException:
            os.unlink(temp, dir_fd=parent)
            raise

    def _apply_metadata(self, fd: int, entry: RestoreEntry) -> None:
        """Set ownership, mode, xattrs (ACLs included) and mtime on an open entry.

        chown comes first because it clears setuid and setgid bits; the mtime
        comes last because the other calls may move it.
        """
        if self.restore_ownership:
            os.fchown(fd, entry.uid, entry.gid)
        os.fchmod(fd, entry.mode)
        for key, value in entry.xattrs:
            try:
                os.setxattr(fd, key, value)
            except OSError as error:
                self.report.errors.append(
                    (entry.path, f"cannot set xattr {key!r}: {error.strerror}")
                )
                log.warning(
                    "restore_xattr_failed", path=entry.path, xattr=key, error=error.strerror
                )
        os.utime(fd, ns=(entry.mtime_ns, entry.mtime_ns))

    def _remember_device(self, fd: int, device: int | None = None) -> None:
        if device is None:
            device = os.fstat(fd).st_dev
        if device not in self._devices:
            self._devices[device] = os.dup(fd)

    def _record_conflict(self, path: bytes, reason: str) -> str:
        self.report.conflicts.append((path, reason))
        log.warning("restore_conflict", path=path, reason=reason)
        return "conflict"

    def _record_error(self, path: bytes, message: str) -> str:
        self.report.errors.append((path, message))
        log.warning("restore_failed", path=path, error=message)
        return "error"

    def finish(self) -> RestoreReport:
        """Apply directory metadata, deepest first, and make everything durable.

        Returns:
            The report; its entries are on stable storage when this returns.

        Raises:
            OSError: syncfs failed, so durability cannot be promised.
        """
        if not self.dry_run:
            # Only the parents this writer created: an existing directory is not the restore's.
            parents = {
                path: entry
                for path, entry in self._parents.items()
                if path in self._created and path not in self._directories
            }
            finishing = {**parents, **self._directories}
            for path in sorted(finishing, key=lambda p: p.count(b"/"), reverse=True):
                self._finish_directory(finishing[path])
            for fd in self._devices.values():
                _syncfs(fd)
        return self.report

    def _finish_directory(self, entry: RestoreEntry) -> None:
        if any(path == entry.path for path, _ in self.report.conflicts):
            # Left alone: what is there is not the restored directory.
            return
        try:
            parts = split_catalog_path(entry.path)
            parent = self._open_parent(parts[:-1])
        except (_Unsafe, UsageError, OSError):
            # Already reported when the entry itself was restored.
            return
        try:
            fd = os.open(parts[-1], _DIRECTORY_FLAGS, dir_fd=parent)
        except OSError as error:
            self._record_error(entry.path, f"cannot set directory metadata: {error.strerror}")
            return
        finally:
            if parent != self._root_fd:
                os.close(parent)
        try:
            self._remember_device(fd)
            if not self._metadata_matches(fd, entry):
                self._apply_metadata(fd, entry)
        except OSError as error:
            self._record_error(entry.path, f"cannot set directory metadata: {error.strerror}")
        finally:
            os.close(fd)

    def _metadata_matches(self, fd: int, entry: RestoreEntry) -> bool:
        """Tell whether an open directory already has the entry's metadata, so none is set.

        Setting it again would leave the content alone but move the ctime,
        and restoring the same version twice is meant to change nothing.
        """
        info = os.fstat(fd)
        if stat.S_IMODE(info.st_mode) != entry.mode or info.st_mtime_ns != entry.mtime_ns:
            return False
        if self.restore_ownership and (info.st_uid, info.st_gid) != (entry.uid, entry.gid):
            return False
        try:
            names = os.listxattr(fd)
        except OSError as error:
            if error.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
            names = []
        present = sorted((os.fsencode(name), os.getxattr(fd, name)) for name in names)
        return present == sorted(entry.xattrs)
