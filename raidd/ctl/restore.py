"""`raidctl restore`: receive a snapshot's entries over the control socket and write them.

raidctl runs as its caller, so the caller restores only where it may
write. The entries go through the same RestoreWriter as the offline
`raidd restore`, with the same rules. Nothing is written outside DIR,
because no symlink inside DIR is followed. Files are written under a
temporary name and renamed. A different existing entry is a conflict
unless `--overwrite`, and restoring the same version twice writes
nothing. One syncfs at the end makes everything durable before success
is reported.
Ownership is restored when the caller is root; otherwise the set-user-ID
and set-group-ID bits are dropped, since the files belong to the caller.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raidd.control.client import RemoteError
from raidd.control.stream import (
    EntryReader,
    FileLostError,
    Frame,
    ReceivedEntry,
    bytes_from_fields,
    path_from_fields,
    xattrs_from_fields,
)
from raidd.ctl.backups import selection_options, selection_params
from raidd.ctl.common import Context
from raidd.errors import EXIT_INTEGRITY, EXIT_OK, EXIT_USAGE, EXIT_WARNINGS, UsageError
from raidd.store.catalog_format import json_name
from raidd.store.restore import not_found_message
from raidd.store.restore_writer import RestoreEntry, RestoreReport, RestoreWriter, show_path
from raidd.store.scan import EntryType

_ENTRY_TYPES = {
    "file": EntryType.FILE,
    "hardlink": EntryType.FILE,
    "dir": EntryType.DIRECTORY,
    "symlink": EntryType.SYMLINK,
}
_SET_ID_BITS = 0o6000


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    restore = subparsers.add_parser(
        "restore",
        parents=[common],
        help="restore files into a directory",
        description="Write the versions under each PATH (a root's name, ROOT/PATH or an "
        "absolute path under a watched root; every root without PATH) to DIR/<root name>/"
        "<relative path>, with your own permissions. Nothing is written outside DIR.",
    )
    restore.add_argument(
        "paths", nargs="*", metavar="PATH", help="root names, ROOT/PATH or absolute paths"
    )
    restore.add_argument("--to", required=True, type=Path, metavar="DIR", help="target directory")
    selection_options(restore)
    restore.add_argument(
        "--overwrite", action="store_true", help="replace different entries already in DIR"
    )
    restore.add_argument("--dry-run", action="store_true", help="list what would be written")
    restore.set_defaults(run=run_restore)


@dataclass
class Received:
    """Counts of the entries a restore stream carried, and the files that arrived lost."""

    kinds: dict[str, int] = field(
        default_factory=lambda: {"file": 0, "dir": 0, "symlink": 0, "hardlink": 0}
    )
    bytes: int = 0
    lost: list[tuple[bytes, str]] = field(default_factory=list)


def entry_from_frame(frame: Frame, *, keep_set_id: bool) -> RestoreEntry:
    """Build the writer's entry from a `file`, `dir`, `symlink` or `hardlink` frame.

    Raises:
        StreamError: a member is missing or malformed.
    """
    params = frame.params
    path = path_from_fields(params)
    if frame.kind == "hardlink":
        link_to = bytes_from_fields(params, "link_to")
        return RestoreEntry(path, EntryType.FILE, 0, 0, 0, 0, hard_link_to=link_to)
    mode = frame.integer("mode") & 0o7777
    if not keep_set_id:
        mode &= ~_SET_ID_BITS
    return RestoreEntry(
        path=path,
        type=_ENTRY_TYPES[frame.kind],
        mode=mode,
        uid=frame.integer("uid"),
        gid=frame.integer("gid"),
        mtime_ns=frame.integer("mtime_ns"),
        size=frame.integer("size") if frame.kind == "file" else 0,
        link_target=bytes_from_fields(params, "target") if frame.kind == "symlink" else None,
        xattrs=xattrs_from_fields(params.get("xattrs")),
        parent_only=frame.kind == "dir" and params.get("parent") is True,
    )


def write_entry(writer: RestoreWriter, item: ReceivedEntry, received: Received) -> None:
    """Write one received entry through the writer, counting it in `received`."""
    entry = entry_from_frame(item.frame, keep_set_id=writer.restore_ownership)
    if entry.parent_only:
        # A directory above the requested paths: the writer uses its metadata only
        # for a parent that it has to create.
        writer.restore(entry)
        return
    received.kinds[item.kind] += 1
    if item.kind == "hardlink":
        writer.restore_link(entry)
    elif item.content is None:
        writer.restore(entry)
    else:
        try:
            writer.restore_stream(entry, item.content)
        except FileLostError as error:
            received.lost.append((entry.path, error.reason))
        received.bytes += item.content.received


def _check_target(target: Path, dry_run: bool) -> None:
    """Reject a DIR that is no directory or that the caller may not write, creating nothing."""
    if target.exists() and not target.is_dir():
        raise UsageError(f"--to {target} is not a directory")
    if dry_run:
        return
    existing = target
    while not existing.exists():
        existing = existing.absolute().parent
    if not os.access(existing, os.W_OK | os.X_OK):
        if existing == target:
            raise UsageError(f"--to {target}: you may not write there; choose another directory")
        raise UsageError(
            f"--to {target}: cannot create it, because you may not write to {existing}; "
            "choose another directory"
        )


def _open_writer(target: Path, args: argparse.Namespace) -> RestoreWriter:
    try:
        return RestoreWriter(target, overwrite=args.overwrite, dry_run=args.dry_run)
    except OSError as error:
        raise UsageError(
            f"--to {target}: cannot create it: {error.strerror}; choose another directory"
        ) from None


def _receive(context: Context, target: Path, received: Received) -> tuple[Any, RestoreReport]:
    """Send the request, write the entries it streams back; return the reply and the report.

    The target directory is created only once the daemon has accepted the
    request, so a restore rejected for its arguments leaves nothing behind.
    """
    args = context.args
    # dry_run, overwrite and target change nothing on the daemon's side: they are
    # sent so that the audit record says what this restore was for.
    params = {
        "paths": args.paths,
        **selection_params(args),
        "dry_run": args.dry_run,
        "overwrite": args.overwrite,
        "target": os.path.abspath(target),
    }
    reply = context.client.stream("restore", params)
    writer: RestoreWriter | None = None
    try:
        for item in _named_errors(EntryReader(reply), args.paths):
            if writer is None:
                writer = _open_writer(target, args)
            write_entry(writer, item, received)
        if writer is None:
            writer = _open_writer(target, args)
        return reply, writer.finish()
    finally:
        if writer is not None:
            writer.close()


def _named_errors(entries: Iterator[ReceivedEntry], paths: list[str]) -> Iterator[ReceivedEntry]:
    """Pass the entries on, turning the daemon's error for missing PATHs into one naming them."""
    try:
        yield from entries
    except RemoteError as error:
        if not (isinstance(error.data, dict) and error.data.get("error") == "PathsNotFoundError"):
            raise
        names = _missing_paths(error.data.get("missing"), paths)
        raise UsageError(not_found_message(names, error.data.get("commit"))) from None


def _missing_paths(indexes: Any, paths: list[str]) -> list[str]:
    """Map the daemon's positions of missing PATHs back to the arguments."""
    if not isinstance(indexes, list) or not all(
        type(index) is int and 0 <= index < len(paths) for index in indexes
    ):
        raise UsageError(f"unexpected list of missing paths from the daemon: {indexes!r}")
    return [paths[index] for index in indexes]


def run_restore(context: Context) -> int:
    args = context.args
    target: Path = args.to
    _check_target(target, args.dry_run)
    received = Received()
    context.client.timeout = None
    reply, report = _receive(context, target, received)

    missing = _missing_paths(reply.result.get("missing") or [], args.paths)
    result = {
        "commit": reply.result["commit"],
        "target": str(target),
        "dry_run": args.dry_run,
        "files": received.kinds["file"],
        "directories": received.kinds["dir"],
        "symlinks": received.kinds["symlink"],
        "hard_links": received.kinds["hardlink"],
        "bytes": received.bytes,
        "written": [json_name(path) for path in report.written],
        "unchanged": [json_name(path) for path in report.unchanged],
        "conflicts": [{"path": json_name(p), "reason": r} for p, r in report.conflicts],
        "errors": [{"path": json_name(p), "error": e} for p, e in report.errors],
        "lost": [{"path": json_name(p), "error": e} for p, e in received.lost],
        "missing": missing,
    }
    _warn(report.conflicts, report.errors, received.lost)
    context.emit(result, _summary)

    if missing:
        # The paths that exist are restored; the missing ones are an error all the same.
        message = not_found_message(missing, result["commit"])
        print(f"raidctl restore: {message}", file=sys.stderr)
    if received.lost:
        return EXIT_INTEGRITY
    if missing:
        return EXIT_USAGE
    return EXIT_OK if report.ok else EXIT_WARNINGS


def _warn(
    conflicts: list[tuple[bytes, str]],
    errors: list[tuple[bytes, str]],
    lost: list[tuple[bytes, str]],
) -> None:
    for path, reason in conflicts:
        _warning(f"{show_path(path)} left alone: {reason} (use --overwrite)")
    for path, error in errors:
        _warning(f"{show_path(path)}: {error}")
    for path, error in lost:
        _warning(f"{show_path(path)} is lost: {error}")


def _warning(message: str) -> None:
    print(f"raidctl restore: warning: {message}", file=sys.stderr)


def _display(path: str | dict[str, str]) -> str:
    # A name that is not UTF-8 arrives as {"base64": ...}; repr() shows a newline as \n.
    return repr(path)[1:-1] if isinstance(path, str) else f"(base64 name) {path['base64']}"


def _summary(result: dict[str, Any]) -> str:
    verb = "would write" if result["dry_run"] else "written"
    lines = []
    if result["dry_run"]:
        lines = [f"{verb}: {_display(path)}" for path in result["written"]]
    links = result["symlinks"] + result["hard_links"]
    lines.append(
        f"Commit {result['commit']} into {result['target']}: {result['files']} files, "
        f"{result['directories']} directories, {links} links, {result['bytes']} bytes; "
        f"{len(result['written'])} {verb}, {len(result['unchanged'])} unchanged, "
        f"{len(result['conflicts'])} conflicts, {len(result['errors'])} errors, "
        f"{len(result['lost'])} lost."
    )
    return "\n".join(lines)
