"""`raidctl audit [--path P] [--since TIME] [--limit N] [--verify]`: the audit log (root only).

Human output is one line per record, newest first: time, actor, action,
result. Audit objects that do not open are skipped with a warning on
stderr (exit code 1). `--verify` checks the hash chain and exits 0 when it is whole and
3 (integrity error) when it is broken, naming the first bad record.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from raidd.commands.storeopen import time_ns
from raidd.ctl.common import Context
from raidd.errors import EXIT_INTEGRITY, EXIT_OK, EXIT_WARNINGS


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "audit", parents=[common], help="list the audit records or verify their chain"
    )
    parser.add_argument(
        "--path", help="only records of this path: ROOT, ROOT/PATH or an absolute path"
    )
    parser.add_argument(
        "--since", metavar="TIME", help="only records at or after TIME (ISO 8601, local time)"
    )
    parser.add_argument(
        "--limit", type=int, default=100, help="list at most this many records (default 100)"
    )
    parser.add_argument(
        "--verify", action="store_true", help="verify the hash chain instead of listing"
    )
    parser.set_defaults(run=run_audit)


def run_audit(context: Context) -> int:
    args = context.args
    context.client.timeout = None
    if args.verify:
        result = context.call("audit", {"verify": True, "limit": 0})
        report = result["verify"]
        context.emit(report, describe_report)
        return EXIT_OK if report["ok"] else EXIT_INTEGRITY
    params: dict[str, Any] = {"limit": args.limit}
    if args.path is not None:
        params["path"] = args.path
    since = time_ns(args.since, end=False)
    if since is not None:
        params["since_ns"] = since
    result = context.call("audit", params)
    context.emit(
        result["records"],
        lambda records: "\n".join(record_line(r) for r in records) or "no audit records",
    )
    for object_id in result.get("unreadable", []):
        print(
            f"raidctl audit: audit object {object_id[:16]} does not open and was skipped; "
            "raidctl audit --verify names the break",
            file=sys.stderr,
        )
    return EXIT_WARNINGS if result.get("unreadable") else EXIT_OK


def record_line(record: dict[str, Any]) -> str:
    """Render one record: time, actor, action, result, and a mark for pending records."""
    actor = record["actor"]
    caller = "daemon" if actor["kind"] == "daemon" else f"uid {actor['uid']} pid {actor['pid']}"
    result = record["result"]
    if result.get("ok"):
        outcome = "ok"
    else:
        outcome = f"error {result.get('code')}: {result.get('message', '')}"
    number = record["number"]
    label = f"#{number}" if number is not None else "pending"
    return f"{record['time']}  {label:>8}  {caller:<22} {record['action']:<18} {outcome}"


def describe_report(report: dict[str, Any]) -> str:
    """Render a verification report in one or two lines."""
    if report["ok"]:
        text = (
            f"audit chain whole: {report['records']} records in {report['objects']} objects, "
            f"head {report['head'][:16]}"
        )
        if report["pending"]:
            text += f"; {report['pending']} records not committed yet"
        return text
    broken = report["broken"]
    where = f"record {broken['record']}"
    if broken["object"] is not None:
        where += f" (audit object {broken['position']}, id {broken['object'][:16]})"
    return f"audit chain broken at {where}: {broken['reason']}"
