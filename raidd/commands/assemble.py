"""`raidd assemble`: show how the array assembles; with --force, take back failed members.

A normal assembly never reads a member marked failed in the newest member
table. When too many are marked failed for the array to start (a failure
committed beyond the tolerance), `--force` takes them back and commits
their return, as `mdadm --assemble --force` does. It takes back only the
members whose strips of every stripe written since their own last commit
match the allocation map's checksums. The key is checked first, so nothing
is written without it.
"""

from __future__ import annotations

import argparse
from typing import Any

from raidd.array import Array, assemble
from raidd.commands.storeopen import _command_line_key, add_member_options, add_parser, emit, warn
from raidd.config import DEFAULT_CONFIG_PATH, load_config
from raidd.errors import EXIT_OK, EXIT_WARNINGS
from raidd.store.store import UnlockKey, _expand_members, _unlock, config_key


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = add_parser(
        subparsers,
        common,
        "assemble",
        "show the assembly of the array; --force takes back members marked failed",
        "Assemble the array and show each role's member. Without --force nothing is "
        "written, and the output says which members marked failed --force would take back. "
        "With --force, members marked failed whose data matches the newest commit serve "
        "their roles again and the member tables record it. Run it with the daemon stopped.",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="take back members marked failed whose data matches the newest commit",
    )
    add_member_options(parser, "a member path (repeatable)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    paths, key, array_uuid = _members_and_key(args)
    # A read-only forced assembly first: it shows the result and checks the key
    # before anything is written.
    with assemble(paths, array_uuid=array_uuid, read_only=True, force=True) as probe:
        _unlock(probe, key).wipe()
        if not args.force:
            document = _describe(probe, written=False)
    if args.force:
        with assemble(paths, array_uuid=array_uuid, force=True) as array:
            document = _describe(array, written=True)

    def text() -> None:
        for member in document["members"]:
            print(f"role {member['role']}: {member['state']:<10} {member['path'] or '(none)'}")
        for path in document["forced"]:
            verb = "taken back" if document["written"] else "would be taken back by --force"
            print(f"{path}: marked failed, data matches event {document['event']}: {verb}")
        for item in document["not_used"]:
            print(f"{item['path']}: not used: {item['reason']}")
        if document["forced"] and document["written"]:
            print(
                "run `raidd scrub` (or `raidctl scrub` once the daemon runs) to check every strip"
            )

    emit(args, document, text)
    if document["forced"] and not document["written"]:
        warn("assemble", "nothing written; pass --force to take the members back")
        return EXIT_WARNINGS
    return EXIT_OK


def _members_and_key(args: argparse.Namespace) -> tuple[list[str], UnlockKey, Any]:
    if args.member:
        return _expand_members(args.member), _command_line_key(args), None
    config = load_config(getattr(args, "config", None) or DEFAULT_CONFIG_PATH)
    key = _command_line_key(args) if args.keyfile or args.passphrase_file else config_key(config)
    return _expand_members(config.array.members), key, config.array.uuid


def _describe(array: Array, *, written: bool) -> dict[str, Any]:
    report = array.report
    return {
        "array": str(array.uuid),
        "event": array.event,
        "written": written,
        "members": [
            {"role": s.role, "path": s.path, "state": s.state.name.lower()} for s in array.slots
        ],
        "forced": list(report.forced),
        "not_used": [
            {"path": item["path"], "reason": item["reason"]}
            for item in [*report.stale, *report.rejected]
        ],
    }
