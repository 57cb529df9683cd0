"""`raidd create`: write the superblocks of a new array, with its first keyslot."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import crypto
from raidd.array.create import DEFAULT_STRIP_SIZE, create_array
from raidd.commands.output import printable
from raidd.commands.units import format_size, parse_size
from raidd.errors import EXIT_OK, EXIT_WARNINGS, UsageError


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "create",
        parents=[common],
        help="create an array on image files or block devices",
        description="Write the superblocks of a new array. Every member is checked before "
        "the first byte is written.",
    )
    parser.add_argument(
        "--level", type=int, required=True, choices=[0, 1, 5, 6, 10], help="RAID level"
    )
    parser.add_argument(
        "--strip-size",
        type=parse_size,
        default=DEFAULT_STRIP_SIZE,
        help="bytes per strip, a power of two from 4KiB to 2MiB (default 64KiB)",
    )
    parser.add_argument("--name", default="", help="array name, at most 64 bytes")
    parser.add_argument(
        "--size",
        type=parse_size,
        help="create missing members as sparse image files (mode 0600) of this many bytes; "
        "units K, KiB, M, MiB, G, GiB, T, TiB are powers of 1024 (for example 16MiB, 2GiB)",
    )
    parser.add_argument(
        "--spare", action="append", default=[], metavar="PATH", help="a spare member (repeatable)"
    )
    keys = parser.add_mutually_exclusive_group(required=True)
    keys.add_argument("--keyfile", type=Path, help="existing key file for the first keyslot")
    keys.add_argument(
        "--new-keyfile", type=Path, help="create this key file (32 random bytes, mode 0400)"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="overwrite members that already carry a raidd superblock",
    )
    parser.add_argument("members", nargs="+", metavar="MEMBER", help="member paths, in role order")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.new_keyfile is not None:
        if os.path.lexists(args.new_keyfile):
            raise UsageError(
                f"key file {args.new_keyfile} already exists; choose a new path, or pass it "
                "with --keyfile"
            )
        if not args.new_keyfile.parent.is_dir():
            raise UsageError(f"directory {args.new_keyfile.parent} of --new-keyfile not found")
    else:
        # Read it now, so a bad key file is rejected before anything is written.
        crypto.read_keyfile(args.keyfile)

    made_keyfile: list[Path] = []

    def make_keyslot_area() -> bytes:
        if args.new_keyfile is not None:
            crypto.write_new_keyfile(args.new_keyfile)
            made_keyfile.append(args.new_keyfile)
            path = args.new_keyfile
        else:
            path = args.keyfile
        secret = crypto.read_keyfile(path)
        master = crypto.MasterKey.generate()
        try:
            return crypto.KeyslotArea.create(master, keyfile_secret=secret).to_bytes()
        finally:
            master.wipe()
            secret[:] = bytes(len(secret))

    try:
        created = create_array(
            args.members,
            level=args.level,
            strip_size=args.strip_size,
            name=args.name,
            spares=args.spare,
            size=args.size,
            force=args.force,
            keyslot_area=make_keyslot_area,
        )
    except BaseException:
        # The key file opens nothing when no array was made with it.
        for path in made_keyfile:
            path.unlink()
        raise
    for warning in created.warnings:
        print(f"raidd create: warning: {warning}", file=sys.stderr)
    code = EXIT_WARNINGS if created.warnings else EXIT_OK
    keyfile = os.path.abspath(args.new_keyfile or args.keyfile)
    members = [os.path.abspath(path) for path, _ in created.members]
    spares = [os.path.abspath(path) for path, _ in created.spares]
    if getattr(args, "json", False):
        print(
            json.dumps(
                {
                    "array_uuid": str(created.array_uuid),
                    "name": created.name,
                    "level": created.level,
                    "strip_size": created.strip_size,
                    "stripes": created.stripe_count,
                    "stripe_data_size": created.stripe_data_size,
                    "members": members,
                    "spares": spares,
                    "keyfile": keyfile,
                },
                indent=2,
            )
        )
        return code
    capacity = created.stripe_count * created.stripe_data_size
    print(
        f"Created RAID{created.level} array {created.array_uuid}"
        f"{f' ({printable(created.name)})' if created.name else ''}: {len(members)} members, "
        f"strips of {format_size(created.strip_size)}, {format_size(capacity)} of stripes."
    )
    print("\nAdd this to /etc/raidd/raidd.toml:\n")
    print(config_stanza(str(created.array_uuid), members, spares, keyfile, created.name))
    return code


def toml_string(text: str) -> str:
    """Return `text` as a TOML basic string (UTF-8 kept, quotes and controls escaped)."""
    escaped = []
    for char in text:
        if char in '"\\':
            escaped.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            escaped.append(f"\\u{ord(char):04x}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


def config_stanza(
    array_uuid: str, members: list[str], spares: list[str], keyfile: str, name: str = ""
) -> str:
    """Return the [array] table of raidd.toml (raidd.config's key names) for a new array."""
    lines = ["[array]", f"uuid = {toml_string(array_uuid)}"]
    if name:
        lines.append(f"name = {toml_string(name)}")
    lines.append("members = [" + ", ".join(toml_string(m) for m in members) + "]")
    if spares:
        lines.append("spares = [" + ", ".join(toml_string(s) for s in spares) + "]")
    lines.append(f"keyfile = {toml_string(keyfile)}")
    return "\n".join(lines)
