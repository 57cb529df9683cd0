"""A failure beyond the tolerance: refused before writing, named at assembly, forced back."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from raidd.array import fail_member
from raidd.array.superblock import MemberState
from raidd.errors import ArrayError
from tests.array.conftest import ImageArray, write_random


def images(image: ImageArray) -> list[bytes]:
    return [Path(p).read_bytes() for p in image.paths]


def test_fail_beyond_tolerance_writes_nothing_even_forced(
    make_array: Callable[..., ImageArray],
) -> None:
    image = make_array(5)
    with image.open() as array:
        write_random(array, random.Random(1), 4)
        array.commit(b"r")
        fail_member(array, image.paths[0])
        before = images(image)
        for force in (False, True):
            with pytest.raises(ArrayError, match="nothing was changed") as raised:
                fail_member(array, image.paths[1], force=force)
            assert "--force does not override this" in str(raised.value)
        assert images(image) == before
        assert array.slots[1].state is MemberState.ACTIVE


def test_second_failure_of_a_degraded_raid6_needs_force(
    make_array: Callable[..., ImageArray],
) -> None:
    image = make_array(6)
    with image.open() as array:
        fail_member(array, image.paths[0])
        with pytest.raises(ArrayError, match=r"already degraded .* pass --force"):
            fail_member(array, image.paths[1])
        assert array.slots[1].state is MemberState.ACTIVE
        fail_member(array, image.paths[1], force=True)
        assert array.slots[1].state is MemberState.FAILED


def test_members_marked_failed_are_named_and_forced_back(
    make_array: Callable[..., ImageArray],
) -> None:
    """Role 0 failed before new data and role 1 only marked failed: force takes back role 1."""
    image = make_array(5)
    with image.open() as array:
        old = write_random(array, random.Random(2), 4)
        array.commit(b"r")
        fail_member(array, image.paths[0])
        new = write_random(array, random.Random(3), 4)
        array.commit(b"s")
        # A vanished device is recorded whatever the tolerance, which leaves this state.
        with pytest.raises(ArrayError):
            fail_member(array, image.paths[1], vanished=True)
    with pytest.raises(ArrayError) as refused:
        image.open()
    message = str(refused.value)
    assert f"present at {image.paths[1]}): marked failed by commit" in message
    assert "missing" not in message.replace("no device", "")
    assert "raidd assemble --force" in message
    with image.open(read_only=True, force=True) as array:
        assert array.report.forced == [image.paths[1]]
        assert array.slots[0].state is MemberState.FAILED
        assert any("do not match" in item["reason"] for item in array.report.stale)
    with image.open(force=True) as array:
        assert array.report.forced == [image.paths[1]]
        for stripe, data in {**old, **new}.items():
            assert array.read(stripe) == data
    # The return is committed: a normal assembly works, degraded by role 0 only.
    with image.open() as array:
        assert [s.state for s in array.slots][:2] == [MemberState.FAILED, MemberState.ACTIVE]
        assert array.report.forced == []
