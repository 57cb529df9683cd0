"""Retention: which commits of a root to keep, and which versions they still need.

The rules follow the familiar keep-last / keep-hourly / ... / keep-within
scheme (restic's `forget` and borg's `prune` use the same words):

- keep_last N keeps the newest N commits;
- keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly N keep, for
  each of the newest N hours (days, ISO weeks, months, years) that contain a
  commit, the newest commit in it; periods are in the given time zone,
  local time by default;
- keep_within D keeps every commit younger than D.

A commit kept by any rule stays. Two safeguards hold whatever the rules
and the clock say. The newest commit of a root is always kept. And "now",
the reference for keep_within, is the later of the system clock and the
newest commit's time: commit times never go backwards, so a clock set back
(now earlier than the newest commit) cannot push commits out of the window.
A clock set forward can age commits out of keep_within; the first safeguard
still keeps the newest one.

A commit is a delta: the state of a root at commit C is the newest version of
each path at or before C. So forgetting commits frees only the versions that
are visible to no kept commit; `versions_needed` computes the others.
"""

import bisect
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Protocol, TypeVar

from raidd.config import RetentionPolicy

__all__ = [
    "CommitPoint",
    "RetentionDecision",
    "VersionSpan",
    "apply_policy",
    "versions_needed",
]

_NS_PER_SECOND = 1_000_000_000


@dataclass(frozen=True, slots=True)
class CommitPoint:
    """One commit of a root: its sequence number (the commit id) and time in ns since the epoch."""

    sequence: int
    time_ns: int


@dataclass(frozen=True)
class RetentionDecision:
    """The outcome: kept sequences with the rules that kept each, and forgotten ones."""

    keep: dict[int, tuple[str, ...]] = field(default_factory=dict)
    forget: tuple[int, ...] = ()
    now_ns: int = 0


def _period_keys(moment: datetime) -> dict[str, tuple[int, ...]]:
    iso = moment.isocalendar()
    return {
        "hourly": (moment.year, moment.month, moment.day, moment.hour),
        "daily": (moment.year, moment.month, moment.day),
        "weekly": (iso.year, iso.week),
        "monthly": (moment.year, moment.month),
        "yearly": (moment.year,),
    }


def apply_policy(
    commits: Iterable[CommitPoint],
    policy: RetentionPolicy,
    now_ns: int | None = None,
    zone: tzinfo | None = None,
) -> RetentionDecision:
    """Decide which commits of one root to keep under `policy`.

    Args:
        commits: the root's commits, in any order.
        policy: the root's rules; a policy with no rule keeps everything.
        now_ns: the system time in ns; time.time_ns() when None. The time used
            is the later of this and the newest commit's time.
        zone: the time zone of the calendar periods; local time when None.

    Returns:
        Every commit either in `keep` (with the names of the rules that kept
        it) or in `forget`.
    """
    ordered = sorted(commits, key=lambda commit: (commit.time_ns, commit.sequence), reverse=True)
    system_now = time.time_ns() if now_ns is None else now_ns
    newest = ordered[0].time_ns if ordered else system_now
    reference = max(system_now, newest)
    if not ordered:
        return RetentionDecision(now_ns=reference)
    reasons: dict[int, list[str]] = {commit.sequence: [] for commit in ordered}
    if policy.keeps_everything:
        for commit in ordered:
            reasons[commit.sequence].append("no policy")
        return _decision(ordered, reasons, reference)
    reasons[ordered[0].sequence].append("newest")
    if policy.keep_last:
        for commit in ordered[: policy.keep_last]:
            reasons[commit.sequence].append("last")
    if policy.keep_within is not None:
        cutoff = reference - int(policy.keep_within * _NS_PER_SECOND)
        for commit in ordered:
            if commit.time_ns > cutoff:
                reasons[commit.sequence].append("within")
    _apply_periods(ordered, policy, zone, reasons)
    return _decision(ordered, reasons, reference)


def _apply_periods(
    ordered: Sequence[CommitPoint],
    policy: RetentionPolicy,
    zone: tzinfo | None,
    reasons: dict[int, list[str]],
) -> None:
    counts = {
        "hourly": policy.keep_hourly,
        "daily": policy.keep_daily,
        "weekly": policy.keep_weekly,
        "monthly": policy.keep_monthly,
        "yearly": policy.keep_yearly,
    }
    last_key: dict[str, tuple[int, ...] | None] = dict.fromkeys(counts)
    kept: dict[str, int] = dict.fromkeys(counts, 0)
    for commit in ordered:
        moment = datetime.fromtimestamp(commit.time_ns / _NS_PER_SECOND, tz=zone)
        if zone is None:
            moment = moment.astimezone()
        keys = _period_keys(moment)
        for rule, limit in counts.items():
            if not limit or kept[rule] >= limit:
                continue
            # Newest first, so the first commit seen in a period is its newest.
            if keys[rule] != last_key[rule]:
                last_key[rule] = keys[rule]
                kept[rule] += 1
                reasons[commit.sequence].append(rule)


def _decision(
    ordered: Sequence[CommitPoint], reasons: dict[int, list[str]], reference: int
) -> RetentionDecision:
    keep = {sequence: tuple(why) for sequence, why in reasons.items() if why}
    forget = tuple(sorted(commit.sequence for commit in ordered if not reasons[commit.sequence]))
    return RetentionDecision(keep=keep, forget=forget, now_ns=reference)


class VersionSpan(Protocol):
    """The part of a version that versions_needed reads: which commits it is visible to.

    `first` is the sequence of the commit that wrote it; `last` the sequence
    of the commit that replaced or deleted it, or None while it is current.
    The version is visible to commit C when first <= C < last.
    """

    @property
    def first(self) -> int: ...

    @property
    def last(self) -> int | None: ...


V = TypeVar("V", bound=VersionSpan)


def versions_needed(versions: Iterable["V"], kept: Iterable[int]) -> list["V"]:
    """Return the versions visible to at least one kept commit.

    Every other version belongs only to forgotten commits, so its chunks may be
    released by garbage collection.
    """
    kept_sorted = sorted(set(kept))
    needed = []
    for version in versions:
        index = bisect.bisect_left(kept_sorted, version.first)
        if index < len(kept_sorted) and (
            version.last is None or kept_sorted[index] < version.last
        ):
            needed.append(version)
    return needed
