"""Fixtures for the array engine tests: tiny image-file arrays with 4 KiB strips."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from raidd.array import Array, assemble, create_array

MiB = 1024 * 1024
MEMBER_COUNTS = {0: 3, 1: 3, 5: 4, 6: 5, 10: 4}


@dataclass
class ImageArray:
    """Paths and lock directory of an image-file array created for one test."""

    paths: list[str]
    lock_dir: Path
    level: int

    def open(self, **kwargs: object) -> Array:
        kwargs.setdefault("lock_dir", self.lock_dir)
        return assemble(self.paths, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def make_array(tmp_path: Path) -> Iterator[Callable[..., ImageArray]]:
    def make(
        level: int,
        members: int | None = None,
        strip_size: int = 4096,
        size: int = 16 * MiB,
        spares: int = 0,
        name: str = "test",
    ) -> ImageArray:
        count = MEMBER_COUNTS[level] if members is None else members
        paths = [str(tmp_path / f"member{i}.img") for i in range(count)]
        spare_paths = [str(tmp_path / f"spare{i}.img") for i in range(spares)]
        create_array(
            paths, level=level, strip_size=strip_size, size=size, name=name, spares=spare_paths
        )
        return ImageArray(paths + spare_paths, tmp_path / "lock", level)

    yield make


def write_random(array: Array, rng: random.Random, count: int) -> dict[int, bytes]:
    """Write `count` stripes of random data; return them by stripe number."""
    written = {}
    for _ in range(count):
        data = rng.randbytes(array.stripe_data_size)
        written[array.write_stripe(data)] = data
    return written
