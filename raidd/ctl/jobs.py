"""`raidctl rebuild | scrub | jobs | progress | cancel | limits`: array jobs."""

from __future__ import annotations

import argparse
import math
from typing import Any

from raidd.ctl.common import Context, describe_job, follow_job
from raidd.errors import EXIT_OK


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    rebuild = subparsers.add_parser(
        "rebuild", parents=[common], help="start or resume the rebuild of a rebuilding member"
    )
    rebuild.add_argument("member", nargs="?", help="member path or UUID (default: the first)")
    _wait(rebuild)
    rebuild.set_defaults(run=run_rebuild)
    scrub = subparsers.add_parser(
        "scrub", parents=[common], help="check every allocated stripe and repair what is wrong"
    )
    scrub.add_argument("--check-only", action="store_true", help="report, do not repair")
    _wait(scrub)
    scrub.set_defaults(run=run_scrub)
    jobs = subparsers.add_parser("jobs", parents=[common], help="list jobs")
    jobs.add_argument("--all", action="store_true", help="include the jobs that ended")
    jobs.set_defaults(run=run_jobs)
    progress = subparsers.add_parser("progress", parents=[common], help="show a job's progress")
    progress.add_argument("job", type=int)
    _wait(progress)
    progress.set_defaults(run=run_progress)
    cancel = subparsers.add_parser("cancel", parents=[common], help="cancel a running job")
    cancel.add_argument("job", type=int)
    cancel.set_defaults(run=run_cancel)
    limits = subparsers.add_parser(
        "limits", parents=[common], help="show or set the rebuild and scrub rate bounds"
    )
    limits.add_argument(
        "--min", type=minimum_rate, metavar="MIB_S", help="minimum rate in MiB/s (more than 0)"
    )
    limits.add_argument(
        "--max", type=maximum_rate, metavar="MIB_S", help="maximum rate in MiB/s (0: unlimited)"
    )
    limits.set_defaults(run=run_limits)


def _rate(text: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid rate {text!r}: expected MiB/s") from None
    if not math.isfinite(rate) or rate < 0:
        raise argparse.ArgumentTypeError(
            f"invalid rate {text!r}: expected a finite number of MiB/s, 0 or more"
        )
    return rate


def minimum_rate(text: str) -> float:
    """Parse --min: MiB/s, more than 0, as `limits.rebuild_min_mib_s` in the configuration."""
    rate = _rate(text)
    if rate == 0:
        raise argparse.ArgumentTypeError(
            "invalid minimum rate 0: it must be more than 0 MiB/s, as "
            "limits.rebuild_min_mib_s in the configuration"
        )
    return rate


def maximum_rate(text: str) -> float:
    """Parse --max: MiB/s, 0 or more, where 0 means unlimited."""
    return _rate(text)


def describe_limits(limits: dict[str, Any]) -> str:
    """Render the rate limits with their unit, and 0 as maximum as unlimited."""
    maximum = limits["max_mib_s"]
    shown = "unlimited" if not maximum else f"{maximum:g} MiB/s"
    return f"rate limits: minimum {limits['min_mib_s']:g} MiB/s, maximum {shown}"


def _wait(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait", action="store_true", help="follow the job to its end (progress bar)"
    )


def _started(context: Context, result: dict[str, Any], what: str) -> int:
    if context.args.wait:
        return follow_job(context, result["job"])
    context.emit(result, lambda r: f"{what} started: job {r['job']}")
    return EXIT_OK


def run_rebuild(context: Context) -> int:
    member = context.args.member
    result = context.call("rebuild", {"member": member} if member else None)
    return _started(context, result, "rebuild")


def run_scrub(context: Context) -> int:
    result = context.call("scrub", {"repair": not context.args.check_only})
    return _started(context, result, "scrub")


def run_jobs(context: Context) -> int:
    jobs = context.call("jobs", {"finished": context.args.all})
    context.emit(jobs, lambda rows: "\n".join(describe_job(j) for j in rows) or "no jobs")
    return EXIT_OK


def run_progress(context: Context) -> int:
    if context.args.wait:
        return follow_job(context, context.args.job)
    context.emit(context.call("job.progress", {"job": context.args.job}), describe_job)
    return EXIT_OK


def run_cancel(context: Context) -> int:
    context.emit(context.call("job.cancel", {"job": context.args.job}), describe_job)
    return EXIT_OK


def run_limits(context: Context) -> int:
    args = context.args
    if args.min is None and args.max is None:
        result = context.call("limits")
    else:
        current = context.call("limits")
        params = {
            "min_mib_s": current["min_mib_s"] if args.min is None else args.min,
            "max_mib_s": current["max_mib_s"] if args.max is None else args.max,
        }
        result = context.call("limits.set", params)
    context.emit(result, describe_limits)
    return EXIT_OK
