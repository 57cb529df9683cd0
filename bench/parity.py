"""Benchmark the parity codecs against numpy's copy and zfec on the same bytes.

Prints, for 256 KiB strips (cache-resident) and 16 MiB strips (memory-bound):
RAID5 encode (4+1, 8+1), RAID6 P+Q encode (4+2, 8+2) and RAID6 two-data
reconstruction (4+2, 8+2), each in GB/s of the stripe's data bytes (10^9
bytes per second). Beside each, measured in the same run on the same data:
numpy copying the data strips into preallocated strips (``np.copyto``), and
zfec (Reed-Solomon) encoding the same data into the same number of parity
blocks, when zfec is installed (``pip install -e '.[bench]'``). For the
reconstruction rows, zfec decodes the same two lost data blocks.
Every codec call writes into preallocated arrays (``out=``, ``p_out=``,
``q_out=``), as the numpy copy does.

Targets (ratios within one run, at both sizes):
RAID5 encode >= 1.0 x numpy copy; RAID6 encode >= 2.5 x zfec encode;
RAID6 two-data reconstruction >= 0.5 x RAID6 encode.

Each figure is timed in rounds of about 0.2 s, interleaved with its peer's
rounds, and each round gives one ratio of the pair. "met" judges the median
of those per-round ratios: both sides of a round ran under nearly the same
load, so the median is robust to other processes on a shared machine. The
GB/s columns and the first ratio use each side's fastest round, which shows
what the code can do but compares two different moments.
Everything runs on one thread. Run: ``make bench`` or
``.venv/bin/python bench/parity.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# This script is named parity.py: drop its folder from the import path so that
# `import parity` finds the package, not this file.
BENCH_DIR = Path(__file__).resolve().parent
sys.path = [entry for entry in sys.path if Path(entry or ".").resolve() != BENCH_DIR]

import numpy as np  # noqa: E402

from parity import Level, encode_p, encode_pq, reconstruct  # noqa: E402

try:
    import zfec
except ImportError:  # zfec lives in the bench extra.
    zfec = None

KIB = 1024
MIB = 1024 * KIB
SIZES = [256 * KIB, 16 * MIB]
ROUND_SECONDS = 0.2


class Timer:
    """Times an operation in rounds of enough repeats to last about ROUND_SECONDS."""

    def __init__(self, operation: Callable[[], object], data_bytes: int) -> None:
        self.operation = operation
        self.data_bytes = data_bytes
        operation()
        start = time.perf_counter()
        operation()
        once = time.perf_counter() - start
        self.repeats = max(1, int(ROUND_SECONDS / max(once, 1e-9)))
        self.rates: list[float] = []

    def round(self) -> float:
        """Run one round and return its throughput in GB/s of data bytes."""
        start = time.perf_counter()
        for _ in range(self.repeats):
            self.operation()
        rate = self.data_bytes * self.repeats / (time.perf_counter() - start) / 1e9
        self.rates.append(rate)
        return rate

    def best(self) -> float:
        """Return the fastest round's throughput: the one least slowed by other processes."""
        return max(self.rates)


def compare(subject: Timer, peer: Timer, rounds: int) -> tuple[float, float]:
    """Run two timers' rounds interleaved and return the subject's rate over the peer's.

    Interleaving keeps the two figures of a ratio close in time, so a change
    in machine load moves both.

    Returns:
        (ratio of the best rounds, median of the per-round ratios).
    """
    ratios = []
    for _ in range(rounds):
        ratios.append(subject.round() / peer.round())
    return subject.best() / peer.best(), statistics.median(ratios)


@dataclass
class Row:
    name: str
    strip_size: int
    rate: float
    copy_rate: float
    zfec_rate: float | None
    ratio_name: str
    ratio: float | None
    median_ratio: float | None
    target: float

    def met(self) -> str:
        if self.median_ratio is None:
            return "n/a"
        return "yes" if self.median_ratio >= self.target else "NO"


def size_name(size: int) -> str:
    return f"{size // MIB} MiB" if size >= MIB else f"{size // KIB} KiB"


def run_stripe(strip_size: int, k: int, rounds: int) -> list[Row]:
    """Measure the three rows of one data strip count k at one strip size."""
    rng = np.random.default_rng(strip_size + k)
    data = [rng.integers(0, 256, strip_size, dtype=np.uint8) for _ in range(k)]
    copies = [np.empty_like(strip) for strip in data]
    data_bytes = k * strip_size
    as_bytes = [strip.tobytes() for strip in data]
    p_out = np.empty(strip_size, dtype=np.uint8)
    q_out = np.empty(strip_size, dtype=np.uint8)

    def copy_all() -> None:
        for source, target in zip(data, copies, strict=True):
            np.copyto(target, source)

    def zfec_encoder(parity: int) -> Timer | None:
        if zfec is None:
            return None
        encoder = zfec.Encoder(k, k + parity)
        parity_numbers = list(range(k, k + parity))
        return Timer(lambda: encoder.encode(as_bytes, parity_numbers), data_bytes)

    p, q = encode_pq(data)
    damaged: list[np.ndarray | None] = [None, None, *data[2:], p, q]
    rebuilt = reconstruct(Level.RAID6, damaged)
    assert np.array_equal(rebuilt[0], data[0])
    assert np.array_equal(rebuilt[1], data[1])

    copy = Timer(copy_all, data_bytes)
    raid5 = Timer(lambda: encode_p(data, out=p_out), data_bytes)
    raid6 = Timer(lambda: encode_pq(data, p_out=p_out, q_out=q_out), data_bytes)
    rebuilt_out: list[np.ndarray | None] = [np.empty_like(p), np.empty_like(p), *[None] * k]
    rebuild = Timer(lambda: reconstruct(Level.RAID6, damaged, out=rebuilt_out), data_bytes)
    zfec1 = zfec_encoder(1)
    zfec2 = zfec_encoder(2)
    zfec_decode = None
    if zfec is not None:
        decoder = zfec.Decoder(k, k + 2)
        blocks = [*as_bytes[2:], p.tobytes(), q.tobytes()]
        numbers = [*range(2, k), k, k + 1]
        zfec_decode = Timer(lambda: decoder.decode(blocks, numbers), data_bytes)

    raid5_ratio = compare(raid5, copy, rounds)
    raid6_ratio: tuple[float | None, float | None] = (None, None)
    if zfec2 is not None:
        raid6_ratio = compare(raid6, zfec2, rounds)
    rebuild_ratio = compare(rebuild, raid6, rounds)
    for timer in (zfec1, zfec_decode):
        if timer is not None:
            for _ in range(rounds):
                timer.round()

    def best(timer: Timer | None) -> float | None:
        return None if timer is None else timer.best()

    copy_rate = copy.best()
    return [
        Row(
            f"RAID5 encode {k}+1",
            strip_size,
            raid5.best(),
            copy_rate,
            best(zfec1),
            "x copy",
            *raid5_ratio,
            1.0,
        ),
        Row(
            f"RAID6 encode {k}+2",
            strip_size,
            raid6.best(),
            copy_rate,
            best(zfec2),
            "x zfec",
            *raid6_ratio,
            2.5,
        ),
        Row(
            f"RAID6 rebuild D0+D1 {k}+2",
            strip_size,
            rebuild.best(),
            copy_rate,
            best(zfec_decode),
            "x RAID6 encode",
            *rebuild_ratio,
            0.5,
        ),
    ]


def machine() -> str:
    model = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError as error:
        model = f"unknown ({error})"
    return (
        f"{model}, nproc {os.cpu_count()}, Python {platform.python_version()}, "
        f"numpy {np.__version__}, zfec {getattr(zfec, '__version__', 'not installed')}, "
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rounds", type=int, default=11, help="timed rounds per figure, about 0.2 s each"
    )
    args = parser.parse_args()
    print(machine())
    print(
        "| operation | strip | GB/s | numpy copy GB/s | zfec GB/s | ratio (best rounds) "
        "| ratio (median of rounds) | target | met |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    missed = 0
    for strip_size in SIZES:
        rows = [row for k in (4, 8) for row in run_stripe(strip_size, k, args.rounds)]
        for row in rows:
            zfec_text = "-" if row.zfec_rate is None else f"{row.zfec_rate:.2f}"
            ratio_text = "-" if row.ratio is None else f"{row.ratio:.2f} {row.ratio_name}"
            median_text = "-" if row.median_ratio is None else f"{row.median_ratio:.2f}"
            cells = [
                row.name,
                size_name(row.strip_size),
                f"{row.rate:.2f}",
                f"{row.copy_rate:.2f}",
                zfec_text,
                ratio_text,
                median_text,
                str(row.target),
                row.met(),
            ]
            print("| " + " | ".join(cells) + " |", flush=True)
            missed += row.met() == "NO"
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
