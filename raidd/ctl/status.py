"""`raidctl status`: the array, its members, jobs, last commit and watcher health."""

from __future__ import annotations

import argparse
from typing import Any

from raidd.ctl.common import Context, progress_line
from raidd.errors import EXIT_INTEGRITY, EXIT_OK, EXIT_WARNINGS


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "status",
        parents=[common],
        help="show the array, members, jobs and backups",
        description="Show the array state, each member with its error counts, running jobs, "
        "the last commit and watcher health.",
    )
    parser.add_argument(
        "--test",
        action="store_true",
        help="exit 1 when degraded or backups are behind, 3 when failed or stripes are lost "
        "(as mdadm --test)",
    )
    parser.set_defaults(run=run)


def health_exit_code(status: dict[str, Any]) -> int:
    """Return the `status --test` exit code: 3 failed or lost data, 1 degraded or behind."""
    state = status["array"]["state"]
    if state == "failed" or status["array"].get("lost_stripe_count"):
        return EXIT_INTEGRITY
    backups = status.get("backups") or {}
    if state in ("degraded", "rebuilding") or backups.get("behind"):
        return EXIT_WARNINGS
    return EXIT_OK


def run(context: Context) -> int:
    status = context.call("status")
    context.emit(status, render)
    return health_exit_code(status) if context.args.test else EXIT_OK


def render(status: dict[str, Any]) -> str:
    array = status["array"]
    title = f"{array['name']} ({array['uuid']})" if array["name"] else array["uuid"]
    lines = [
        f"array {title}: raid{array['level']}, {array['state']}, event {array['event']}",
        _space_line(array),
        *_lost_lines(array),
        f"  {'role':>4}  {'state':<10}  {'read':>5} {'write':>5} {'cksum':>5}  path (uuid)",
    ]
    for member in array["members"]:
        role = "-" if member["role"] is None else str(member["role"])
        errors = member["errors"]
        lines.append(
            f"  {role:>4}  {member['state']:<10}  {errors['read']:>5} {errors['write']:>5} "
            f"{errors['checksum']:>5}  {member['path'] or '(none)'} ({member['uuid'] or '-'})"
        )
        for note in member.get("notes") or []:
            lines.append(f"        note: {note}")
    for job in status.get("jobs", []):
        lines.append(f"  job {job['id']}: " + progress_line({"detail": job, **job}))
    commit = status.get("last_commit")
    if commit:
        lines.append(f"last commit: {commit['id']} at {commit['time']}")
    else:
        lines.append("last commit: none")
    backups = status.get("backups") or {}
    if backups and not backups.get("available", True):
        lines.append(f"backups: not available: {backups.get('reason')}")
    failed = backups.get("failed_roots") or {}
    for root in status.get("watcher", []):
        health = "watching" if root["watching"] else f"NOT WATCHING: {root['error']}"
        line = f"watch {root['root']} ({root['path']}): {health}, {root['pending_paths']} pending"
        if root["root"] in failed:
            line += f"; BACKUP FAILED: {failed[root['root']]}"
        lines.append(line)
    if backups.get("behind"):
        lines.append(
            "backups: BEHIND" + (f": {backups['last_error']}" if backups.get("last_error") else "")
        )
    pending = (status.get("daemon") or {}).get("restart_pending")
    if pending:
        lines.append(f"restart needed for changes to: {', '.join(pending)}")
    return "\n".join(lines)


def _lost_lines(array: dict[str, Any]) -> list[str]:
    count = array.get("lost_stripe_count") or 0
    if not count:
        return []
    listed = ", ".join(str(stripe) for stripe in array.get("lost_stripes", []))
    more = (
        f" and {count - len(array['lost_stripes'])} more"
        if count > len(array["lost_stripes"])
        else ""
    )
    return [
        f"  DATA LOST: {count} stripe{'s' if count != 1 else ''} beyond the fault tolerance "
        f"(stripe {listed}{more}); raidctl restore reports the files they held as lost"
    ]


def _space_line(array: dict[str, Any]) -> str:
    return (
        f"  space: {_mib(array['used_bytes'])} used of {_mib(array['size_bytes'])} "
        f"({array['used_fraction'] * 100:.1f}%); {array['allocated_stripes']} stripes used, "
        f"{array['free_stripes']} free of {array['stripes']}"
    )


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"
