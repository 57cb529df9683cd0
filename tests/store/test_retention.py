"""Retention rules over a root's commits, clock changes, and the versions kept commits need."""

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from raidd.config import RetentionPolicy
from raidd.store.retention import CommitPoint, apply_policy, versions_needed

NS = 1_000_000_000
START = datetime(2026, 1, 1, tzinfo=UTC)


def at(moment: datetime) -> int:
    return int(moment.timestamp()) * NS


def hourly_commits(hours: int) -> list[CommitPoint]:
    return [CommitPoint(index + 1, at(START + timedelta(hours=index))) for index in range(hours)]


def decide(commits: list[CommitPoint], now: datetime | None = None, **rules: object):
    policy = RetentionPolicy(**rules)  # type: ignore[arg-type]
    now_ns = at(now) if now else commits[-1].time_ns
    return apply_policy(commits, policy, now_ns=now_ns, zone=UTC)


def test_no_policy_keeps_everything() -> None:
    commits = hourly_commits(30)
    decision = apply_policy(commits, RetentionPolicy(), zone=UTC)
    assert decision.forget == ()
    assert set(decision.keep) == set(range(1, 31))


def test_empty_history() -> None:
    decision = apply_policy([], RetentionPolicy(keep_last=3), now_ns=5, zone=UTC)
    assert decision.keep == {}
    assert decision.forget == ()


def test_keep_last() -> None:
    decision = decide(hourly_commits(10), keep_last=3)
    assert set(decision.keep) == {8, 9, 10}
    assert decision.forget == tuple(range(1, 8))
    assert decision.keep[10] == ("newest", "last")


def test_keep_daily_newest_per_day() -> None:
    commits = hourly_commits(24 * 5)
    decision = decide(commits, keep_daily=3)
    # Newest commit of each of the last three days: hours 23 of day 5, 4, 3.
    assert set(decision.keep) == {120, 96, 72}


def test_keep_hourly_counts_hours_with_commits() -> None:
    commits = [CommitPoint(1, at(START)), CommitPoint(2, at(START + timedelta(hours=5)))]
    commits.append(CommitPoint(3, at(START + timedelta(hours=5, minutes=30))))
    decision = decide(commits, keep_hourly=2)
    assert set(decision.keep) == {1, 3}
    assert decision.forget == (2,)


def test_weekly_monthly_yearly() -> None:
    days = [START + timedelta(days=index) for index in range(800)]
    commits = [CommitPoint(index + 1, at(day)) for index, day in enumerate(days)]
    weekly = decide(commits, keep_weekly=4)
    assert len(weekly.keep) == 4
    kept_days = sorted(days[sequence - 1] for sequence in weekly.keep)
    assert all(day.isoweekday() == 7 for day in kept_days[:-1])
    monthly = decide(commits, keep_monthly=3)
    assert sorted((days[s - 1].month, days[s - 1].day) for s in monthly.keep) == [
        (1, 31),
        (2, 29),
        (3, 10),
    ]
    yearly = decide(commits, keep_yearly=5)
    assert sorted(days[s - 1].year for s in yearly.keep) == [2026, 2027, 2028]
    assert sorted(days[s - 1] for s in yearly.keep)[:2] == [
        datetime(2026, 12, 31, tzinfo=UTC),
        datetime(2027, 12, 31, tzinfo=UTC),
    ]


def test_keep_within() -> None:
    commits = hourly_commits(48)
    decision = decide(commits, keep_within=6 * 3600)
    assert set(decision.keep) == {43, 44, 45, 46, 47, 48}


def test_rules_combine_as_union() -> None:
    commits = hourly_commits(24 * 3)
    decision = decide(commits, keep_last=2, keep_daily=3)
    assert set(decision.keep) == {71, 72, 48, 24}
    assert decision.keep[72] == ("newest", "last", "daily")


def test_clock_set_back_keeps_window() -> None:
    """With the clock far behind the newest commit, keep_within counts from that commit."""
    commits = hourly_commits(48)
    decision = decide(commits, now=START - timedelta(days=400), keep_within=6 * 3600)
    assert set(decision.keep) == {43, 44, 45, 46, 47, 48}
    assert decision.now_ns == commits[-1].time_ns


def test_clock_set_forward_keeps_newest() -> None:
    commits = hourly_commits(48)
    decision = decide(commits, now=START + timedelta(days=400), keep_within=6 * 3600)
    assert set(decision.keep) == {48}
    assert decision.keep[48] == ("newest",)


def test_zero_counts_keep_newest_only() -> None:
    decision = decide(hourly_commits(5), keep_last=0, keep_daily=0, keep_within=0)
    assert set(decision.keep) == {5}


def test_every_commit_decided_once() -> None:
    generator = random.Random(1234)
    moment = at(START)
    commits = []
    for sequence in range(1, 400):
        moment += generator.randrange(1, 20_000) * NS
        commits.append(CommitPoint(sequence, moment))
    decision = decide(commits, keep_last=5, keep_hourly=10, keep_daily=7, keep_weekly=4)
    assert set(decision.keep).isdisjoint(decision.forget)
    assert set(decision.keep) | set(decision.forget) == set(range(1, 400))
    assert 399 in decision.keep


@dataclass(frozen=True)
class Version:
    path: bytes
    first: int
    last: int | None


def test_versions_needed_by_kept_commits() -> None:
    versions = [
        Version(b"a", 1, 3),  # seen by commits 1 and 2
        Version(b"a", 3, None),  # current since 3
        Version(b"b", 2, 4),  # seen by 2 and 3
        Version(b"c", 1, 2),  # seen by 1 only
        Version(b"d", 4, 6),  # seen by 4 and 5
    ]
    needed = versions_needed(versions, kept=[2, 6])
    assert needed == [versions[0], versions[1], versions[2]]
    assert versions_needed(versions, kept=[]) == []
    assert versions_needed(versions, kept=[5]) == [versions[1], versions[4]]


def test_versions_needed_matches_brute_force() -> None:
    generator = random.Random(99)
    for _ in range(200):
        versions = []
        for index in range(20):
            first = generator.randrange(1, 30)
            last = generator.choice([None, first + generator.randrange(1, 10)])
            versions.append(Version(b"%d" % index, first, last))
        kept = generator.sample(range(1, 40), generator.randrange(0, 8))
        expected = [
            v
            for v in versions
            if any(v.first <= k and (v.last is None or k < v.last) for k in kept)
        ]
        assert versions_needed(versions, kept) == expected


@pytest.mark.parametrize("seed", [3, 17])
def test_retention_never_drops_a_kept_snapshot(seed: int) -> None:
    """Versions visible to a kept commit survive pruning, so each kept snapshot stays whole."""
    generator = random.Random(seed)
    commits = hourly_commits(100)
    current: dict[bytes, Version] = {}
    versions: list[Version] = []
    for commit in commits:
        for name in generator.sample([b"a", b"b", b"c", b"d", b"e"], 2):
            if name in current:
                old = current[name]
                versions[versions.index(old)] = Version(name, old.first, commit.sequence)
            current[name] = Version(name, commit.sequence, None)
            versions.append(current[name])
    decision = decide(commits, keep_last=3, keep_daily=2)
    survivors = versions_needed(versions, decision.keep)
    for kept in decision.keep:
        before = {
            v.path for v in versions if v.first <= kept and (v.last is None or kept < v.last)
        }
        after = {
            v.path for v in survivors if v.first <= kept and (v.last is None or kept < v.last)
        }
        assert after == before
