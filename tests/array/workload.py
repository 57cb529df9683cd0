"""A write-and-commit workload whose committed state a test can check after a crash.

Each step writes a few stripes, frees a few old ones and commits with the
step's id as metadata root. Before the commit it records the step's intent,
so that after a crash the checker applies every step up to the id found in
the array's metadata root and nothing after it.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field

from raidd.array import Array


def stripe_content(tag: int, size: int) -> bytes:
    return random.Random(tag).randbytes(size)


@dataclass
class Intent:
    step: int
    writes: dict[int, int]
    frees: list[int]

    def to_line(self) -> bytes:
        record = {"step": self.step, "writes": self.writes, "frees": self.frees}
        return (json.dumps(record) + "\n").encode()

    @classmethod
    def from_line(cls, line: str) -> Intent:
        record = json.loads(line)
        writes = {int(k): int(v) for k, v in record["writes"].items()}
        return cls(record["step"], writes, record["frees"])


@dataclass
class Model:
    """The committed state: live stripes with their content tags, and the last step."""

    live: dict[int, int] = field(default_factory=dict)
    step: int = 0

    def apply(self, intent: Intent) -> None:
        for stripe in intent.frees:
            del self.live[stripe]
        self.live.update(intent.writes)
        self.step = intent.step


def run_step(array: Array, model: Model, rng: random.Random, record: callable) -> Intent:  # type: ignore[valid-type]
    """Write, free and commit one step; `record(intent)` runs before the commit."""
    step = model.step + 1
    writes = {}
    for _ in range(rng.randint(1, 4)):
        tag = rng.getrandbits(48)
        writes[array.write_stripe(stripe_content(tag, array.stripe_data_size))] = tag
    frees = rng.sample(sorted(model.live), min(len(model.live), rng.randint(0, 3)))
    intent = Intent(step, writes, frees)
    record(intent)
    array.commit(str(step).encode(), freed=frees)
    model.apply(intent)
    return intent


def committed_step(array: Array) -> int:
    return int(array.metadata_root.decode() or "0")


def check(array: Array, model: Model) -> None:
    """Assert every live stripe reads back byte-identical."""
    for stripe, tag in model.live.items():
        assert array.read(stripe) == stripe_content(tag, array.stripe_data_size), (
            f"stripe {stripe} differs after the crash"
        )
