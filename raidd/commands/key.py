"""`raidd key add | remove | list`: manage the keyslots stored in every superblock."""

from __future__ import annotations

import argparse
import getpass
import os
import stat
import sys
from pathlib import Path

import crypto
from raidd.array import Array, assemble
from raidd.array.admin import rewrite_spare_superblocks
from raidd.commands.output import print_json, wants_json
from raidd.errors import EXIT_OK, EXIT_WARNINGS, ArrayError, KeyUnlockError, UsageError

MEMBER_HELP = (
    "a member path; one member is enough, because the others are found through the paths "
    "recorded in its member table, and every member found is rewritten"
)
MAX_PASSPHRASE_FILE = 64 * 1024
SLOT_COUNT = 8


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "key",
        parents=[common],
        help="add, remove or list keyslots",
        description="Manage the keyslots of an array offline (the daemon must not hold it).",
    )
    actions = parser.add_subparsers(dest="key_action", metavar="ACTION", required=True)
    listing = actions.add_parser(
        "list",
        parents=[common],
        help="list the keyslots",
        description="List the keyslots of an array; needs no key.",
    )
    listing.add_argument("members", nargs="+", metavar="MEMBER", help=MEMBER_HELP)
    listing.set_defaults(run=run_list)
    add = actions.add_parser(
        "add",
        parents=[common],
        help="add a key file or passphrase slot",
        description="Unlock the array with an existing key, then add a keyslot for a new key "
        "file, an existing key file or a passphrase, in every copy on every member found.",
    )
    _unlock_options(add)
    new = add.add_mutually_exclusive_group()
    new.add_argument("--new-keyfile", type=Path, help="create this key file and add its slot")
    new.add_argument(
        "--add-keyfile", type=Path, help="add a slot for this existing key file (mode 0600)"
    )
    new.add_argument(
        "--new-passphrase-file",
        type=Path,
        help="add a slot for the passphrase in this file, which is read as UTF-8 without "
        "one trailing newline (else prompt)",
    )
    _degraded_option(add)
    add.add_argument("members", nargs="+", metavar="MEMBER", help=MEMBER_HELP)
    add.set_defaults(run=run_add)
    remove = actions.add_parser(
        "remove",
        parents=[common],
        help="remove a keyslot",
        description="Unlock the array with a key, then wipe one keyslot in every copy on "
        "every member found.",
    )
    _unlock_options(remove)
    remove.add_argument("--slot", type=int, required=True, help="slot number to remove (0-7)")
    _degraded_option(remove)
    remove.add_argument("members", nargs="+", metavar="MEMBER", help=MEMBER_HELP)
    remove.set_defaults(run=run_remove)


def _degraded_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--degraded",
        action="store_true",
        help="change the keys even when a member is missing; it is then marked absent and "
        "needs a resync when it comes back",
    )


def _unlock_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--keyfile", type=Path, help="unlock with this key file")
    group.add_argument(
        "--passphrase-file",
        type=Path,
        help="unlock with the passphrase in this file, read as UTF-8 without one trailing "
        "newline (else prompt)",
    )


def read_passphrase_file(path: Path) -> str:
    """Read a passphrase file, checked like a key file: a regular file of mode 0600 or less.

    Raises:
        UsageError: missing, not a regular file, readable by group or others,
            not UTF-8, or empty.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as error:
        raise UsageError(f"cannot read passphrase file {path}: {error.strerror}") from error
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UsageError(f"passphrase file {path} is not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise UsageError(
                f"passphrase file {path} has mode {mode:04o}, so group or others can access "
                f"it: run chmod 600 {path}, and treat the passphrase as leaked if others "
                "could read it"
            )
        data = os.read(fd, MAX_PASSPHRASE_FILE + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_PASSPHRASE_FILE:
        raise UsageError(f"passphrase file {path} is longer than {MAX_PASSPHRASE_FILE} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(
            f"passphrase file {path} is not UTF-8; save the passphrase as UTF-8"
        ) from None
    passphrase = text[:-1] if text.endswith("\n") else text
    if not passphrase:
        raise UsageError(f"passphrase file {path} contains an empty passphrase")
    return passphrase


def prompt(text: str) -> str:
    """Ask for a passphrase on the terminal.

    Raises:
        UsageError: no terminal to ask on, or an empty passphrase typed.
    """
    try:
        tty = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        raise UsageError(
            "no terminal to ask for the passphrase on: pass --passphrase-file, or --keyfile"
        ) from None
    os.close(tty)
    try:
        answer = getpass.getpass(text)
    except EOFError:
        raise UsageError("no passphrase was typed (end of input); nothing was changed") from None
    if not answer:
        raise UsageError("empty passphrase; nothing was changed")
    return answer


def _unlock(area: crypto.KeyslotArea, args: argparse.Namespace) -> crypto.MasterKey:
    try:
        if args.keyfile is not None:
            secret = crypto.read_keyfile(args.keyfile)
            try:
                return area.unlock_keyfile(secret)
            finally:
                secret[:] = bytes(len(secret))
        if args.passphrase_file is not None:
            return area.unlock_passphrase(read_passphrase_file(args.passphrase_file))
        return area.unlock_passphrase(prompt("Passphrase: "))
    except crypto.KeyFileError as error:
        raise UsageError(str(error)) from error
    except crypto.CryptoError as error:
        raise KeyUnlockError(str(error)) from error


def _absent_roles(array: Array) -> list[str]:
    """Describe each role without a usable member: stale when one was found, else missing."""
    stale = {item["member_uuid"]: item for item in array.report.stale}
    found = []
    for slot in array.slots:
        if slot.member is not None or not slot.member_uuid.int:
            continue
        item = stale.get(str(slot.member_uuid))
        if item is not None:
            found.append(
                f"role {slot.role} (member {slot.member_uuid} at {item['path']}) is not used: "
                f"{item['reason']}"
            )
        else:
            found.append(
                f"role {slot.role} (member {slot.member_uuid}, last seen at "
                f"{slot.path or 'unknown'}) is not found"
            )
    return found


def _check_members(args: argparse.Namespace) -> None:
    """Find missing, stale and too small members before anything is written.

    Opening the array for writing marks a member without a usable device
    absent, so this read-only look comes first.
    """
    with assemble(args.members, read_only=True) as array:
        small = [item["reason"] for item in array.report.rejected if item.get("kind")]
        if small:
            raise ArrayError("; ".join(small))
        absent = _absent_roles(array)
    if absent and not args.degraded:
        raise UsageError(
            f"{'; '.join(absent)}. Give the paths of every member, or pass --degraded to "
            "change the keys anyway: such a member is then marked absent, the array runs "
            "degraded, and the member needs a resync when it comes back"
        )


def _open(args: argparse.Namespace) -> tuple[Array, crypto.KeyslotArea]:
    _check_members(args)
    array = assemble(args.members)
    try:
        return array, crypto.KeyslotArea.from_bytes(array.keyslot_area)
    except crypto.CryptoError as error:
        array.close()
        raise UsageError(f"array {array.uuid}: keyslot area unreadable: {error}") from error


def _store(array: Array, area: crypto.KeyslotArea) -> list[str]:
    """Write the area into every copy on every present member; return the warnings."""
    array.keyslot_area = area.to_bytes()
    # Two commits, so both alternating slots hold the new area, not only the newest.
    array.commit_state()
    array.commit_state()
    rewrite_spare_superblocks(array)
    warnings = [
        f"{text}; it is now marked absent, so the array runs degraded, and it still "
        "contains the old keyslots until a resync"
        for text in _absent_roles(array)
    ]
    used = {str(s.member_uuid) for s in array.slots}
    warnings += [
        f"{item['path']} (member {item['member_uuid']}) is not used ({item['reason']}) and "
        "still contains the old keyslots"
        for item in [*array.report.stale, *array.report.rejected]
        if item["member_uuid"]
        and item["member_uuid"] not in used
        and item["array_uuid"] == str(array.uuid)
    ]
    return warnings


def _finish(
    args: argparse.Namespace, result: dict[str, object], text: str, warnings: list[str]
) -> int:
    for warning in warnings:
        print(f"raidd key {args.key_action}: warning: {warning}", file=sys.stderr)
    if wants_json(args):
        print_json({**result, "warnings": warnings})
    else:
        print(text)
    return EXIT_WARNINGS if warnings else EXIT_OK


def _members_of(array: Array) -> list[str]:
    return [s.path for s in array.slots if s.member is not None] + [
        spare.path for spare in array.spares
    ]


def run_list(args: argparse.Namespace) -> int:
    array = assemble(args.members, read_only=True)
    with array:
        warnings = [f"{text}, so the array is degraded" for text in _absent_roles(array)]
        try:
            slots = crypto.KeyslotArea.from_bytes(array.keyslot_area).slots()
        except crypto.CryptoError as error:
            raise UsageError(f"array {array.uuid}: keyslot area unreadable: {error}") from error
    for warning in warnings:
        print(f"raidd key list: warning: {warning}", file=sys.stderr)
    rows = [
        {
            "slot": s.number,
            "kind": s.kind,
            "detail": s.detail,
            **(
                {"scrypt": {"log_n": s.scrypt.log_n, "r": s.scrypt.r, "p": s.scrypt.p}}
                if s.scrypt is not None
                else {}
            ),
        }
        for s in slots
    ]
    if wants_json(args):
        print_json(rows)
    else:
        for row in rows:
            cost = row.get("scrypt")
            extra = f"scrypt N=2^{cost['log_n']} r={cost['r']} p={cost['p']}" if cost else ""
            extra = row["detail"] or extra
            print(f"slot {row['slot']}: {row['kind']}{'  ' + extra if extra else ''}")
    return EXIT_WARNINGS if warnings else EXIT_OK


def _check_new_key_path(args: argparse.Namespace) -> None:
    if args.new_keyfile is not None and os.path.lexists(args.new_keyfile):
        raise UsageError(
            f"key file {args.new_keyfile} already exists; choose a new path, or pass it with "
            "--add-keyfile"
        )
    if args.new_keyfile is not None and not args.new_keyfile.parent.is_dir():
        raise UsageError(f"directory {args.new_keyfile.parent} of --new-keyfile not found")
    if args.add_keyfile is not None:
        # Read it now, so a bad key file is rejected before the array is unlocked.
        secret = _read_keyfile(args.add_keyfile)
        secret[:] = bytes(len(secret))
    if args.new_passphrase_file is not None:
        read_passphrase_file(args.new_passphrase_file)


def _read_keyfile(path: Path) -> bytearray:
    try:
        return crypto.read_keyfile(path)
    except crypto.KeyFileError as error:
        raise UsageError(str(error)) from error


def _add_slot(args: argparse.Namespace, area: crypto.KeyslotArea, master: crypto.MasterKey) -> int:
    if len(area.slots()) >= SLOT_COUNT:
        # Checked before --new-keyfile creates a file that would open nothing.
        raise UsageError(
            f"all {SLOT_COUNT} keyslots are in use: remove one with raidd key remove --slot N "
            "before adding another"
        )
    if args.new_keyfile is not None or args.add_keyfile is not None:
        path = args.add_keyfile
        if args.new_keyfile is not None:
            crypto.write_new_keyfile(args.new_keyfile)
            path = args.new_keyfile
        secret = _read_keyfile(path)
        try:
            return area.add_keyfile(master, secret)
        except BaseException:
            if args.new_keyfile is not None:
                args.new_keyfile.unlink()
            raise
        finally:
            secret[:] = bytes(len(secret))
    if args.new_passphrase_file is not None:
        passphrase = read_passphrase_file(args.new_passphrase_file)
    else:
        passphrase = prompt("New passphrase: ")
        if passphrase != prompt("Repeat the new passphrase: "):
            raise UsageError("the passphrases differ; nothing was changed")
    return area.add_passphrase(master, passphrase)


def run_add(args: argparse.Namespace) -> int:
    _check_new_key_path(args)
    array, area = _open(args)
    with array:
        master = _unlock(area, args)
        try:
            number = _add_slot(args, area, master)
        except crypto.CryptoError as error:
            raise UsageError(str(error)) from error
        finally:
            master.wipe()
        warnings = _store(array, area)
        members = _members_of(array)
    result = {"action": "add", "slot": number, "members": members}
    return _finish(args, result, f"added keyslot {number} on {', '.join(members)}", warnings)


def run_remove(args: argparse.Namespace) -> int:
    array, area = _open(args)
    with array:
        master = _unlock(area, args)
        master.wipe()
        try:
            area.remove(args.slot)
        except crypto.CryptoError as error:
            raise UsageError(str(error)) from error
        warnings = _store(array, area)
        members = _members_of(array)
    result = {"action": "remove", "slot": args.slot, "members": members}
    text = f"removed keyslot {args.slot} from every superblock copy on {', '.join(members)}"
    return _finish(args, result, text, warnings)
