"""`raidctl key list | add | remove`: keyslots of the running array (root only)."""

from __future__ import annotations

import argparse
import base64
import getpass
from pathlib import Path
from typing import Any

import crypto
from raidd.ctl.common import Context
from raidd.errors import EXIT_OK, UsageError


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser("key", parents=[common], help="list, add or remove keyslots")
    actions = parser.add_subparsers(dest="key_action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", parents=[common], help="list the keyslots")
    listing.set_defaults(run=run_list)
    add = actions.add_parser("add", parents=[common], help="add a key file or passphrase slot")
    new = add.add_mutually_exclusive_group(required=True)
    new.add_argument(
        "--new-keyfile", type=Path, help="create this key file (mode 0400) and add its slot"
    )
    new.add_argument("--passphrase", action="store_true", help="add a passphrase slot (prompt)")
    new.add_argument(
        "--passphrase-file", type=Path, help="add a slot for the passphrase in this file"
    )
    add.set_defaults(run=run_add)
    remove = actions.add_parser("remove", parents=[common], help="remove a keyslot")
    remove.add_argument("slot", type=int, help="slot number, as key list shows it")
    remove.add_argument(
        "--force",
        action="store_true",
        help="remove it even if it is the last slot the daemon's own key file opens",
    )
    remove.set_defaults(run=run_remove)


def run_list(context: Context) -> int:
    rows = context.call("key.list")
    context.emit(
        rows,
        lambda r: "\n".join(
            f"slot {row['slot']}: {row['kind']}" + (f"  {row['detail']}" if row["detail"] else "")
            for row in r
        ),
    )
    return EXIT_OK


def run_add(context: Context) -> int:
    args = context.args
    if args.new_keyfile is not None:
        if args.new_keyfile.exists():
            raise UsageError(f"key file {args.new_keyfile} already exists; choose a new path")
        directory = args.new_keyfile.absolute().parent
        if not directory.is_dir():
            raise UsageError(
                f"cannot create key file {args.new_keyfile}: directory {directory} does not "
                "exist; create it (mode 0700) or choose another path"
            )
        # raidctl writes the key file itself, with the caller's permissions.
        crypto.write_new_keyfile(args.new_keyfile)
        secret = crypto.read_keyfile(args.new_keyfile)
        params = {"keyfile": base64.b64encode(bytes(secret)).decode("ascii")}
        secret[:] = bytes(len(secret))
    elif args.passphrase_file is not None:
        try:
            text = args.passphrase_file.read_text(encoding="utf-8").rstrip("\n")
        except OSError as error:
            raise UsageError(
                f"cannot read passphrase file {args.passphrase_file}: {error.strerror}"
            ) from error
        params = {"passphrase": text}
    else:
        text = getpass.getpass("New passphrase: ")
        if text != getpass.getpass("Repeat the new passphrase: "):
            raise UsageError("the passphrases differ; nothing was changed")
        params = {"passphrase": text}
    result = context.call("key.add", params)
    context.emit(result, lambda r: f"added keyslot {r['slot']}")
    return EXIT_OK


def run_remove(context: Context) -> int:
    params: dict[str, Any] = {"slot": context.args.slot}
    if context.args.force:
        params["force"] = True
    result = context.call("key.remove", params)
    context.emit(result, lambda r: f"removed keyslot {r['removed']}")
    return EXIT_OK
