"""Benchmark the array engine against plain sequential I/O on the same image files.

Run as root (the page cache is dropped through /proc/sys/vm/drop_caches
before every read, so reads come from the device):

    .venv/bin/python bench/array.py --member-size 1GiB

Every figure is printed beside its peer, measured in the same run on the
same files under the same cache conditions:

- full-stripe write (data bytes/s, fsync'd commits) beside a plain
  sequential write of the same member bytes, fsync'd;
- degraded read (one member missing), rebuild and scrub beside a plain
  sequential read of the bytes each must read.
"""

from __future__ import annotations

import sys

# This file is named array.py, like the standard library's array module, which
# numpy and structlog import: keep the script's own directory off the path.
if sys.path and sys.path[0] == __file__.rsplit("/", 1)[0]:
    del sys.path[0]

import argparse
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import structlog

from raidd.array import assemble, create_array
from raidd.array.admin import replace_member
from raidd.array.jobs import Rebuild
from raidd.array.scrub import Scrub
from raidd.commands.units import parse_size

MiB = 1024 * 1024
CHUNK = 4 * MiB


def drop_caches() -> None:
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w", encoding="ascii") as control:
        control.write("3\n")


def raw_write(paths: list[str], offset: int, length: int) -> float:
    """Write `length` bytes at `offset` of every file in parallel, fsync; return seconds."""
    block = np.random.default_rng(1).integers(0, 256, CHUNK, dtype=np.uint8).tobytes()

    def write(path: str) -> None:
        fd = os.open(path, os.O_WRONLY)
        try:
            for position in range(offset, offset + length, CHUNK):
                os.pwrite(fd, block[: min(CHUNK, offset + length - position)], position)
            os.fsync(fd)
        finally:
            os.close(fd)

    start = time.perf_counter()
    with ThreadPoolExecutor(len(paths)) as pool:
        list(pool.map(write, paths))
    return time.perf_counter() - start


def raw_read(paths: list[str], offset: int, length: int) -> float:
    """Read `length` bytes at `offset` of every file in parallel; return seconds."""

    def read(path: str) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            for position in range(offset, offset + length, CHUNK):
                os.pread(fd, min(CHUNK, offset + length - position), position)
        finally:
            os.close(fd)

    drop_caches()
    start = time.perf_counter()
    with ThreadPoolExecutor(len(paths)) as pool:
        list(pool.map(read, paths))
    return time.perf_counter() - start


def rate(size: int, seconds: float) -> float:
    return size / MiB / seconds


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in subprocess.run(
                ["lscpu"], capture_output=True, text=True
            ).stdout.splitlines()
            if line.startswith("Model name")
        ),
        "unknown",
    )
    return (
        f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, "
        f"numpy {np.__version__}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, help="directory for the image files (default /tmp)")
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--level", type=int, default=5)
    parser.add_argument("--member-size", type=parse_size, default=parse_size("1GiB"))
    parser.add_argument("--strip-size", type=parse_size, default=parse_size("64KiB"))
    parser.add_argument("--commit-every", type=int, default=64, help="stripes per commit")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/array.py needs root to drop the page cache", file=sys.stderr)
        return 2
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    workdir = Path(tempfile.mkdtemp(prefix="raidd-bench-", dir=args.dir))
    try:
        run(args, workdir)
    finally:
        shutil.rmtree(workdir)
    return 0


def run(args: argparse.Namespace, workdir: Path) -> None:
    paths = [str(workdir / f"member{i}.img") for i in range(args.members)]
    created = create_array(
        paths, level=args.level, strip_size=args.strip_size, size=args.member_size
    )
    with assemble(paths, lock_dir=workdir) as array:
        data_offset = array.io.data_offset
        stripes = array.stripe_count - array.reserve_stripes - array.stripe_count // 50
        strip = array.io.strip_size
    member_bytes = stripes * strip
    data_bytes = stripes * created.stripe_data_size
    print(f"# {machine()}")
    print(
        f"# RAID{args.level}, {args.members} image files of {args.member_size // MiB} MiB in "
        f"{workdir}, strips of {strip // 1024} KiB, {stripes} stripes "
        f"({data_bytes // MiB} MiB of data); page cache dropped before every read"
    )

    raw_w = raw_write(paths, data_offset, member_bytes)
    payload = (
        np.random.default_rng(2)
        .integers(0, 256, created.stripe_data_size, dtype=np.uint8)
        .tobytes()
    )
    with assemble(paths, lock_dir=workdir) as array:
        start = time.perf_counter()
        for number in range(stripes):
            array.write_stripe(payload)
            if number % args.commit_every == args.commit_every - 1:
                array.commit(b"bench")
        array.commit(b"bench")
        array_w = time.perf_counter() - start
    raw_rate = rate(member_bytes * args.members, raw_w)
    ideal = raw_rate * created.stripe_data_size / (strip * args.members)
    write_rate = rate(data_bytes, array_w)
    print(
        f"full-stripe write : {write_rate:8.1f} MiB/s of data   raw write {raw_rate:8.1f} MiB/s"
        f" of member bytes; ratio to raw x data share {write_rate / ideal:.2f} (target 0.6)"
    )

    survivors = paths[1:]
    raw_r_survivors = raw_read(survivors, data_offset, member_bytes)
    raw_r_rate = rate(member_bytes * len(survivors), raw_r_survivors)
    drop_caches()
    with assemble(
        survivors, lock_dir=workdir, read_only=True, search_recorded_paths=False
    ) as array:
        numbers = [int(s) for s in array.map.allocated_stripes()]
        start = time.perf_counter()
        for number in numbers:
            array.read(number)
        degraded = time.perf_counter() - start
    read_rate = rate(len(numbers) * created.stripe_data_size, degraded)
    print(
        f"degraded read     : {read_rate:8.1f} MiB/s of data   raw read  {raw_r_rate:8.1f} "
        f"MiB/s of the {len(survivors)} survivors; ratio {read_rate / raw_r_rate:.2f}"
    )

    replacement = str(workdir / "replacement.img")
    with open(replacement, "wb") as image:
        image.truncate(args.member_size)
    # Rebuild also writes the replacement: the device limit is the slower of the two.
    raw_w_one = raw_write([replacement], data_offset, member_bytes)
    with assemble(survivors, lock_dir=workdir, search_recorded_paths=False) as array:
        _, job = replace_member(array, paths[0], replacement)
        assert isinstance(job, Rebuild)
        job.set_rates(0, 0)
        job.checkpoint_interval = float("inf")
        drop_caches()
        start = time.perf_counter()
        job.run()
        rebuild = time.perf_counter() - start
        rebuilt = job.progress().done
    rebuild_rate = rate(rebuilt * strip * len(survivors), rebuild)
    limit = rate(member_bytes * len(survivors), max(raw_r_survivors, raw_w_one))
    print(
        f"rebuild           : {rebuild_rate:8.1f} MiB/s read      raw read  {raw_r_rate:8.1f} "
        f"MiB/s; ratio {rebuild_rate / raw_r_rate:.2f} (target 0.7); against the slower of "
        f"that read and a raw write of one member ({limit:.1f} MiB/s): {rebuild_rate / limit:.2f}"
    )

    members = [replacement, *survivors]
    raw_all = rate(member_bytes * len(members), raw_read(members, data_offset, member_bytes))
    with assemble(members, lock_dir=workdir, read_only=True, search_recorded_paths=False) as array:
        job = Scrub(array, repair=False, min_rate=0, max_rate=0)
        drop_caches()
        start = time.perf_counter()
        result = job.run()
        scrub = time.perf_counter() - start
        assert result.errors == 0, result.details[:5]
        scrubbed = job.progress().done
    scrub_rate = rate(scrubbed * strip * len(members), scrub)
    print(
        f"scrub             : {scrub_rate:8.1f} MiB/s read      raw read  {raw_all:8.1f} "
        f"MiB/s of all members; ratio {scrub_rate / raw_all:.2f} (target 0.7)"
    )


if __name__ == "__main__":
    sys.exit(main())
