"""`raidd ls`: list the entries of a snapshot."""

from __future__ import annotations

import argparse
import os
import stat

from raidd.commands.snapshots import format_time
from raidd.commands.storeopen import (
    add_parser,
    add_selection_options,
    emit,
    open_store,
    time_ns,
    warn_degraded,
)
from raidd.errors import EXIT_OK, UsageError
from raidd.store.catalog_format import json_name
from raidd.store.restore import ls_not_found_message, missing_selections, select
from raidd.store.scan import EntryType

_KIND_CHARACTER = {EntryType.FILE: "-", EntryType.DIRECTORY: "d", EntryType.SYMLINK: "l"}


def listing_line(
    kind: EntryType, mode: int, size: int, mtime_ns: int, path: bytes, link_target: bytes | None
) -> str:
    """Render one entry as `ls -l` does, with newlines and odd bytes in names escaped."""
    mode_text = _KIND_CHARACTER[kind] + stat.filemode(mode)[1:]
    name = repr(os.fsdecode(path))[1:-1]
    if link_target:
        name += " -> " + repr(os.fsdecode(link_target))[1:-1]
    return f"{mode_text} {size:>12} {format_time(mtime_ns)} {name}"


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = add_parser(
        subparsers,
        common,
        "ls",
        "list the entries of a snapshot",
        "List the versions visible at a time (the newest snapshot by default) under PATH: "
        "a root's name, ROOT/PATH or an absolute path under a watched root.",
    )
    add_selection_options(parser)
    parser.add_argument("path", nargs="?", metavar="PATH", help="root name or path under a root")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    with open_store(args, read_only=True) as store:
        warn_degraded("ls", store)
        commit = store.resolve_commit(time_ns(args.at), args.commit)
        paths = [os.fsencode(args.path)] if args.path else []
        rows = []
        selections = select(store, paths)
        for selection in selections:
            for version in store.ls(selection.root, commit.sequence, selection.prefix):
                full = os.fsencode(selection.root) + (b"/" + version.path if version.path else b"")
                rows.append((full, version))
        if not rows and missing_selections(store, selections, commit.sequence):
            raise UsageError(ls_not_found_message(args.path, commit.sequence))
    document = {
        "commit": commit.sequence,
        "entries": [
            {
                "path": json_name(path),
                "type": version.type.value,
                "mode": version.mode,
                "size": version.size,
                "mtime_ns": version.mtime_ns,
                **({"link_target": json_name(version.link_target)} if version.link_target else {}),
                **({"changed_during_read": True} if version.changed_during_read else {}),
            }
            for path, version in rows
        ],
    }

    def text() -> None:
        for path, version in rows:
            print(
                listing_line(
                    version.type,
                    version.mode,
                    version.size,
                    version.mtime_ns,
                    path,
                    version.link_target,
                )
            )

    emit(args, document, text)
    return EXIT_OK
