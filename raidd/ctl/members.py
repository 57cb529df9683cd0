"""`raidctl fail | remove | add | replace`: member administration (root only)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from raidd.ctl.common import Context, follow_job
from raidd.errors import EXIT_OK, UsageError


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    fail = subparsers.add_parser("fail", parents=[common], help="mark a member faulty")
    fail.add_argument("member", help="member path or UUID")
    _force(
        fail,
        "fail it although the array is already degraded (never beyond the fault tolerance)",
    )
    fail.set_defaults(run=run_fail)
    remove = subparsers.add_parser(
        "remove", parents=[common], help="remove a faulty or missing member, or a spare"
    )
    remove.add_argument("member", help="member path or UUID")
    _force(remove, "remove an active member too")
    remove.set_defaults(run=run_remove)
    add = subparsers.add_parser("add", parents=[common], help="add a spare member")
    add.add_argument("path", help="device or image file to add")
    _force(add, "overwrite a raidd superblock already on it")
    add.set_defaults(run=run_add)
    replace = subparsers.add_parser(
        "replace", parents=[common], help="replace a member and rebuild onto the new one"
    )
    replace.add_argument("old", help="member path or UUID to replace")
    replace.add_argument("new", help="device or image file that takes its role")
    _force(replace, "overwrite a raidd superblock already on the new device")
    replace.add_argument(
        "--wait", action="store_true", help="follow the rebuild to its end (progress bar)"
    )
    replace.set_defaults(run=run_replace)


def _force(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--force", action="store_true", help=what)


def _absolute(path: str) -> str:
    # The daemon resolves paths in its own working directory, so send absolute ones.
    return os.path.abspath(path) if os.sep in path or os.path.exists(path) else path


def run_fail(context: Context) -> int:
    args = context.args
    result = context.call("fail", {"member": _absolute(args.member), "force": args.force})
    context.emit(result, _describe_change("failed"))
    return EXIT_OK


def run_remove(context: Context) -> int:
    args = context.args
    result = context.call("remove", {"member": _absolute(args.member), "force": args.force})
    context.emit(result, lambda r: f"removed {r['removed']}; array {r['state']}")
    return EXIT_OK


def run_add(context: Context) -> int:
    args = context.args
    _require_new_device(context, _absolute(args.path), None)
    result = context.call("add", {"path": _absolute(args.path), "force": args.force})

    def human(record: dict[str, Any]) -> str:
        text = f"added spare {record['path']} ({record['uuid']})"
        if record.get("job") is not None:
            text += f"; rebuilding onto it as job {record['job']}"
        return text

    context.emit(result, human)
    return EXIT_OK


def _require_new_device(context: Context, new: str, old: str | None) -> None:
    """Reject a NEW device or image file that does not exist, naming the size it needs."""
    if os.path.exists(new):
        return
    sizes = []
    for member in context.call("status")["array"]["members"]:
        path = member.get("path")
        if path and os.path.exists(path) and member.get("uuid") != old and path != old:
            sizes.append((os.stat(path).st_size, path))
    old_size = [(os.stat(old).st_size, old)] if old and os.path.isfile(old) else []
    reference = (old_size or sorted(sizes, reverse=True) or [None])[0]
    need = f" of at least {reference[0]} bytes, the size of {reference[1]}" if reference else ""
    raise UsageError(
        f"{new} does not exist; create it first: a block device or an image file{need} "
        f"(truncate -s SIZE {new})"
    )


def run_replace(context: Context) -> int:
    args = context.args
    _require_new_device(context, _absolute(args.new), _absolute(args.old))
    params = {"old": _absolute(args.old), "new": _absolute(args.new), "force": args.force}
    result = context.call("replace", params)
    if args.wait:
        return follow_job(context, result["job"])
    context.emit(result, lambda r: f"replacing {args.old} with {args.new}: job {r['job']}")
    return EXIT_OK


def _describe_change(verb: str) -> Any:
    def human(result: dict[str, Any]) -> str:
        member = result["member"]
        return f"{verb} role {member['role']} ({member['path']}); array {result['state']}"

    return human
