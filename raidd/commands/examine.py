"""`raidd examine`: print each member's superblock, as `mdadm --examine` does.

It opens members read-only without claiming them, so it works while a
daemon holds the array.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from raidd.array.assemble import Candidate, probe
from raidd.array.superblock import SPARE_ROLE, MemberState, Superblock, needed_size, size_problem
from raidd.commands.output import printable
from raidd.commands.units import format_size
from raidd.errors import EXIT_OK, EXIT_WARNINGS


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "examine",
        parents=[common],
        help="print the superblocks of members",
        description="Print each member's superblock and the state of its three copies. "
        "Only reads, so it works while the daemon holds the array.",
    )
    parser.add_argument("members", nargs="+", metavar="MEMBER", help="member paths")
    parser.set_defaults(run=run)


def _role(role: int) -> int | str:
    return "spare" if role == SPARE_ROLE else role


def describe(candidate: Candidate) -> dict[str, Any]:
    """Return the JSON object of one path (docs/FORMAT.md, `raidd examine --json`)."""
    result: dict[str, Any] = {"path": candidate.path}
    copies = candidate.superblocks
    if copies is not None:
        result["superblocks"] = [
            {
                "slot": copy.slot,
                "offset": copy.offset,
                "valid": copy.superblock is not None,
                "event_counter": copy.superblock.event_counter if copy.superblock else None,
                **({"error": copy.error} if copy.error else {}),
            }
            for copy in copies.copies
        ]
    sb = candidate.sb
    if sb is None:
        result["error"] = candidate.error or "no valid raidd superblock"
        return result
    problem = size_problem(candidate.path, candidate.size, sb) if candidate.size else None
    entry = sb.entry(sb.member_uuid)
    result.update(
        {
            "array_uuid": str(sb.array_uuid),
            "member_uuid": str(sb.member_uuid),
            "role": _role(sb.role),
            "level": sb.level,
            "strip_size": sb.strip_size,
            "member_count": sb.member_count,
            "event_counter": sb.event_counter,
            "state": entry.state.name.lower() if entry else "unknown",
            "name": sb.array_name,
            "version": sb.version,
            "data_offset": sb.data_offset,
            "data_size": sb.data_size,
            "stripe_count": sb.stripe_count,
            "created_time": sb.created_time,
            "commit_time": sb.commit_time,
            "checkpoint": _checkpoint(sb),
            "members": [
                {
                    "member_uuid": str(e.member_uuid),
                    "role": _role(e.role),
                    "state": e.state.name.lower(),
                    "in_sync_event": e.in_sync_event,
                    "path": e.path,
                }
                for e in sb.members
                if e.state is not MemberState.EMPTY
            ],
            "keyslot_area_bytes": len(sb.keyslot_area),
            "size": candidate.size,
            "size_needed": needed_size(sb),
        }
    )
    if problem is not None:
        result["size_error"] = problem
    # Put the per-copy list last, as in the text output.
    result["superblocks"] = result.pop("superblocks")
    return result


def _checkpoint(sb: Superblock) -> dict[str, Any]:
    cp = sb.checkpoint
    return {
        "kind": cp.kind.name.lower(),
        "role": cp.role,
        "member_uuid": str(cp.member_uuid),
        "next_stripe": cp.next_stripe,
        "since_event": cp.since_event,
    }


def _print_text(info: dict[str, Any]) -> None:
    print(f"{printable(info['path'])}:")
    if "error" in info:
        print(f"  error: {info['error']}")
    else:
        print(f"  array UUID     : {info['array_uuid']}")
        print(f"  name           : {printable(info['name'])}")
        print(f"  level          : RAID{info['level']}")
        print(f"  strip size     : {format_size(info['strip_size'])}")
        print(f"  members        : {info['member_count']}")
        print(f"  data           : offset {info['data_offset']}, {info['stripe_count']} stripes")
        print(f"  member UUID    : {info['member_uuid']}")
        print(f"  role           : {info['role']}")
        print(f"  state          : {info['state']}")
        print(f"  event counter  : {info['event_counter']}")
        checkpoint = info["checkpoint"]
        if checkpoint["kind"] != "none":
            print(
                f"  checkpoint     : {checkpoint['kind']} of role {checkpoint['role']} "
                f"at stripe {checkpoint['next_stripe']}"
            )
        print("  member table   :")
        for entry in info["members"]:
            print(
                f"    {entry['role']!s:>5}  {entry['member_uuid']}  {entry['state']:<10} "
                f"in sync at {entry['in_sync_event']:<6} {printable(entry['path'])}"
            )
    for copy in info.get("superblocks", []):
        state = f"event {copy['event_counter']}" if copy["valid"] else f"invalid: {copy['error']}"
        print(f"  copy {copy['slot']:>3} at {copy['offset']:>12}: {state}")


def problems(info: dict[str, Any]) -> list[str]:
    """Return the warnings of one path: no superblock, invalid copies, a too small member."""
    path = printable(info["path"])
    if "error" in info:
        return [f"{path}: {info['error']}"]
    found = []
    invalid = [c for c in info["superblocks"] if not c["valid"]]
    if invalid:
        slots = ", ".join(f"copy {c['slot']} ({c['error']})" for c in invalid)
        found.append(
            f"{path}: {slots} invalid; the next commit rewrites them, or header-restore "
            "puts back a saved copy"
        )
    if "size_error" in info:
        found.append(info["size_error"])
    return found


def run(args: argparse.Namespace) -> int:
    results = [describe(probe(path)) for path in args.members]
    if getattr(args, "json", False):
        print(json.dumps(results, indent=2))
    else:
        for info in results:
            _print_text(info)
    warnings = [warning for info in results for warning in problems(info)]
    for warning in warnings:
        print(f"raidd examine: warning: {warning}", file=sys.stderr)
    return EXIT_WARNINGS if warnings else EXIT_OK
