"""Helpers shared by the parity tests."""

import numpy as np


def random_strips(seed: int, count: int, size: int) -> list[bytes]:
    """Return ``count`` random strips of ``size`` bytes from a seeded generator."""
    rng = np.random.default_rng(seed)
    return [rng.bytes(size) for _ in range(count)]


def as_bytes(strips: list[np.ndarray]) -> list[bytes]:
    """Convert the codec's output arrays to bytes for comparison with the reference."""
    return [strip.tobytes() for strip in strips]
