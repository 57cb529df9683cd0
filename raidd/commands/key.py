"""`raidd key add | remove | list`: manage the keyslots stored in every superblock."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path

import crypto
from raidd.array import Array, assemble
from raidd.array.admin import rewrite_spare_superblocks
from raidd.errors import EXIT_OK, EXIT_WARNINGS, KeyUnlockError, UsageError


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "key",
        parents=[common],
        help="add, remove or list keyslots",
        description="Manage the keyslots of an array offline (the daemon must not hold it).",
    )
    actions = parser.add_subparsers(dest="key_action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", parents=[common], help="list the keyslots")
    listing.add_argument("members", nargs="+", metavar="MEMBER")
    listing.set_defaults(run=run_list)
    add = actions.add_parser("add", parents=[common], help="add a key file or passphrase slot")
    _unlock_options(add)
    new = add.add_mutually_exclusive_group()
    new.add_argument("--new-keyfile", type=Path, help="create this key file and add its slot")
    new.add_argument(
        "--new-passphrase-file",
        type=Path,
        help="add a slot for the passphrase in this file (else prompt)",
    )
    add.add_argument("members", nargs="+", metavar="MEMBER")
    add.set_defaults(run=run_add)
    remove = actions.add_parser("remove", parents=[common], help="remove a keyslot")
    _unlock_options(remove)
    remove.add_argument("--slot", type=int, required=True, help="slot number to remove")
    remove.add_argument("members", nargs="+", metavar="MEMBER")
    remove.set_defaults(run=run_remove)


def _unlock_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--keyfile", type=Path, help="unlock with this key file")
    group.add_argument(
        "--passphrase-file",
        type=Path,
        help="unlock with the passphrase in this file (else prompt)",
    )


def _read_passphrase_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").rstrip("\n")
    except OSError as error:
        raise UsageError(f"cannot read passphrase file {path}: {error.strerror}") from error


def _unlock(area: crypto.KeyslotArea, args: argparse.Namespace) -> crypto.MasterKey:
    try:
        if args.keyfile is not None:
            secret = crypto.read_keyfile(args.keyfile)
            try:
                return area.unlock_keyfile(secret)
            finally:
                secret[:] = bytes(len(secret))
        if args.passphrase_file is not None:
            return area.unlock_passphrase(_read_passphrase_file(args.passphrase_file))
        return area.unlock_passphrase(getpass.getpass("Passphrase: "))
    except crypto.KeyFileError as error:
        raise UsageError(str(error)) from error
    except crypto.CryptoError as error:
        raise KeyUnlockError(str(error)) from error


def _open(args: argparse.Namespace) -> tuple[Array, crypto.KeyslotArea]:
    array = assemble(args.members)
    try:
        return array, crypto.KeyslotArea.from_bytes(array.keyslot_area)
    except crypto.CryptoError as error:
        array.close()
        raise KeyUnlockError(f"array {array.uuid}: keyslot area unreadable: {error}") from error


def _store(array: Array, area: crypto.KeyslotArea) -> int:
    """Write the area into every copy on every present member; warn about the others."""
    array.keyslot_area = area.to_bytes()
    # Two commits, so both alternating slots hold the new area, not only the newest.
    array.commit_state()
    array.commit_state()
    rewrite_spare_superblocks(array)
    absent = [
        f"role {s.role} (member {s.member_uuid}, last seen at {s.path or 'unknown'})"
        for s in array.slots
        if s.member is None and s.member_uuid.int
    ]
    absent += [f"{item['path']} (member {item['member_uuid']})" for item in array.report.stale]
    for name in absent:
        print(
            f"raidd key: warning: {name} is not present and still holds the old keyslots",
            file=sys.stderr,
        )
    return EXIT_WARNINGS if absent else EXIT_OK


def run_list(args: argparse.Namespace) -> int:
    array = assemble(args.members, read_only=True)
    with array:
        try:
            slots = crypto.KeyslotArea.from_bytes(array.keyslot_area).slots()
        except crypto.CryptoError as error:
            raise KeyUnlockError(
                f"array {array.uuid}: keyslot area unreadable: {error}"
            ) from error
    rows = [{"slot": s.number, "kind": s.kind, "detail": s.detail} for s in slots]
    if getattr(args, "json", False):
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            print(
                f"slot {row['slot']}: {row['kind']}{'  ' + row['detail'] if row['detail'] else ''}"
            )
    return EXIT_OK


def run_add(args: argparse.Namespace) -> int:
    if args.new_keyfile is not None and args.new_keyfile.exists():
        raise UsageError(f"key file {args.new_keyfile} already exists; choose a new path")
    array, area = _open(args)
    with array:
        master = _unlock(area, args)
        try:
            if args.new_keyfile is not None:
                crypto.write_new_keyfile(args.new_keyfile)
                secret = crypto.read_keyfile(args.new_keyfile)
                number = area.add_keyfile(master, secret)
                secret[:] = bytes(len(secret))
            else:
                if args.new_passphrase_file is not None:
                    passphrase = _read_passphrase_file(args.new_passphrase_file)
                else:
                    passphrase = getpass.getpass("New passphrase: ")
                    if passphrase != getpass.getpass("Repeat the new passphrase: "):
                        raise UsageError("the passphrases differ; nothing was changed")
                number = area.add_passphrase(master, passphrase)
        except crypto.CryptoError as error:
            raise UsageError(str(error)) from error
        finally:
            master.wipe()
        code = _store(array, area)
    print(f"added keyslot {number}")
    return code


def run_remove(args: argparse.Namespace) -> int:
    array, area = _open(args)
    with array:
        master = _unlock(area, args)
        master.wipe()
        try:
            area.remove(args.slot)
        except crypto.CryptoError as error:
            raise UsageError(str(error)) from error
        code = _store(array, area)
    print(f"removed keyslot {args.slot} from every superblock copy of the present members")
    return code
