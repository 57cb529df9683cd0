"""Measure the store's building blocks: keyed chunking and probed compression.

Peers measured in the same run: pyfastcdc with its public (unseeded) gear
table, BLAKE2b hashing of the same bytes, and zstd without the probe.

    .venv/bin/python bench/store_parts.py [--size-mib N]
"""

import argparse
import io
import os
import platform
import random
import statistics
import time
from collections.abc import Callable

import numpy
from pyfastcdc import FastCDC

from raidd.store.chunker import AVG_SIZE, MAX_SIZE, MIN_SIZE, Chunker
from raidd.store.compress import Compressor


def best_of(runs: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def text_data(size: int) -> bytes:
    """Return CSV-like rows, about as compressible as a CRM export."""
    generator = random.Random(5)
    rows = []
    total = 0
    while total < size:
        row = b"%d,ALFKI,%d,%0.2f,Obere Str. %d,Berlin\n" % (
            generator.randrange(10**6),
            generator.randrange(80),
            generator.random() * 900,
            generator.randrange(99),
        )
        rows.append(row)
        total += len(row)
    return b"".join(rows)[:size]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256, help="bytes to process, in MiB")
    args = parser.parse_args()
    size = args.size_mib << 20
    random_data = os.urandom(size)
    print(
        f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, numpy {numpy.__version__}"
    )
    print(f"input: {args.size_mib} MiB")

    chunker = Chunker(bytes(32))
    public = FastCDC(AVG_SIZE, min_size=MIN_SIZE, max_size=MAX_SIZE)
    mib = size / (1 << 20)
    keyed = FastCDC(AVG_SIZE, min_size=MIN_SIZE, max_size=MAX_SIZE, seed=chunker.seed)
    unseeded = best_of(3, lambda: sum(1 for _ in public.cut_buf(random_data)))
    seeded_view = best_of(3, lambda: sum(1 for _ in keyed.cut_buf(random_data)))
    seeded = best_of(3, lambda: sum(1 for _ in chunker.chunk_buffer(random_data)))
    streamed = best_of(3, lambda: sum(1 for _ in chunker.chunk_stream(io.BytesIO(random_data))))
    import hashlib

    hashed = best_of(3, lambda: hashlib.blake2b(random_data).digest())
    lengths = [len(c.data) for c in chunker.chunk_buffer(random_data)]
    print(
        f"chunk sizes on random data: mean {statistics.mean(lengths) / 1024:.0f} KiB, "
        f"min {min(lengths) >> 10} KiB, max {max(lengths) >> 10} KiB, {len(lengths)} chunks"
    )
    print(f"pyfastcdc cut_buf, public table:   {mib / unseeded:8.0f} MiB/s")
    print(f"pyfastcdc cut_buf, keyed table:    {mib / seeded_view:8.0f} MiB/s (no copy)")
    for label, seconds in (("chunk_buffer", seeded), ("chunk_stream", streamed)):
        print(
            f"Chunker.{label} (keyed, copy): {mib / seconds:8.0f} MiB/s, "
            f"{unseeded / seconds:.2f} of the public table's speed"
        )
    print(f"BLAKE2b of the same bytes:          {mib / hashed:8.0f} MiB/s")

    text = text_data(64 << 20)
    pieces_random = [random_data[i : i + AVG_SIZE] for i in range(0, 64 << 20, AVG_SIZE)]
    pieces_text = [text[i : i + AVG_SIZE] for i in range(0, len(text), AVG_SIZE)]
    probed = Compressor()
    full = Compressor(probe=False)
    for label, pieces in (("random", pieces_random), ("csv text", pieces_text)):
        with_probe = best_of(3, lambda pieces=pieces: [probed.encode(p) for p in pieces])
        without = best_of(3, lambda pieces=pieces: [full.encode(p) for p in pieces])
        stored = sum(len(probed.encode(p).payload) + 1 for p in pieces)
        print(
            f"zstd-3 on 64 MiB {label:8s}: probe {64 / with_probe:7.0f} MiB/s, "
            f"no probe {64 / without:7.0f} MiB/s, stored {stored / (64 << 20):.3f} of input"
        )


if __name__ == "__main__":
    main()
