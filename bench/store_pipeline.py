"""Time the store's modules composed into one single-threaded backup and restore.

No array and no sealing: chunks go into a dict by keyed BLAKE2b id, so the
figures bound what scan, read, chunk, hash and compress cost on one core
before the array engine, crypto and the worker pool are added.

    .venv/bin/python bench/store_pipeline.py [--scale 20 --attachments-mb 100 --scans-mb 200]

The dataset is built with ../shared/tools/make-crm-dataset on /dev/shm.
"""

import argparse
import hashlib
import os
import platform
import resource
import shutil
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy

from raidd.store.catalog import CatalogIndex
from raidd.store.catalog_format import Deletion, Version, decode_delta, encode_delta
from raidd.store.chunker import Chunk, Chunker
from raidd.store.compress import Compressor, decode_chunk
from raidd.store.reader import FileReader, find_sqlite_sidecars
from raidd.store.restore_writer import RestoreWriter
from raidd.store.scan import EntryType, scan_root
from raidd.store.snapshot import HardLinkGroups, is_unchanged, restore_entries, version_from

MAKE_CRM = Path(__file__).resolve().parents[1] / ".." / "shared" / "tools" / "make-crm-dataset"
ID_KEY = bytes(32)


class Objects:
    def __init__(self) -> None:
        self.stored: dict[bytes, bytes] = {}
        self.compressor = Compressor()

    def put(self, chunk: Chunk) -> bytes:
        chunk_id = hashlib.blake2b(chunk.data, key=ID_KEY, digest_size=32).digest()
        if chunk_id not in self.stored:
            self.stored[chunk_id] = self.compressor.encode(chunk.data).to_bytes()
        return chunk_id


def backup(index: CatalogIndex, objects: Objects, reader: FileReader, root: Path) -> int:
    raw = os.fsencode(root)
    entries = list(scan_root(root))
    sidecars = find_sqlite_sidecars([entry.path for entry in entries], raw)
    current = index.current("crm")
    delta = index.next_commit(["crm"])
    groups = HardLinkGroups(delta.sequence)
    records: list[Version | Deletion] = []
    seen = set()
    for entry in entries:
        if entry.path in sidecars:
            continue
        seen.add(entry.path)
        if is_unchanged(entry, current.get(entry.path)):
            continue
        read = None
        if entry.type is EntryType.FILE:
            read = reader.read(raw + b"/" + entry.path, objects.put)
        records.append(version_from("crm", entry, read, groups.assign(entry)))
    records += [Deletion("crm", path) for path in current if path not in seen]
    index.apply(decode_delta(encode_delta(replace(delta, records=tuple(records)))))
    return delta.sequence


def restore(index: CatalogIndex, objects: Objects, sequence: int, target: Path) -> None:
    with RestoreWriter(target) as writer:
        for entry, version in restore_entries(index.state("crm", sequence), b"crm"):

            def data(version: Version = version) -> list[tuple[int, bytes]]:
                return [
                    (c.offset, decode_chunk(objects.stored[c.chunk_id], c.length))
                    for c in version.chunks
                ]

            writer.restore(entry, data)
        report = writer.finish()
    assert report.ok, (report.conflicts[:3], report.errors[:3])


def timed(label: str, work: object) -> float:
    start = time.perf_counter()
    work()  # type: ignore[operator]
    seconds = time.perf_counter() - start
    print(f"{label:28s} {seconds:7.2f} s")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=20, help="orders scale of the dataset")
    parser.add_argument("--attachments-mb", type=int, default=100, help="MiB of attachments")
    parser.add_argument("--scans-mb", type=int, default=200, help="MiB of scanned documents")
    args = parser.parse_args()
    print(
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"numpy {numpy.__version__}"
    )
    work = Path(tempfile.mkdtemp(prefix="raidd-bench-", dir="/dev/shm"))
    disk = Path(tempfile.mkdtemp(prefix="raidd-bench-"))
    try:
        root = work / "crm"
        subprocess.run(
            [
                str(MAKE_CRM),
                "build",
                str(root),
                "--orders-scale",
                str(args.scale),
                "--attachments-mb",
                str(args.attachments_mb),
                "--scans-mb",
                str(args.scans_mb),
            ],
            check=True,
            capture_output=True,
        )
        files = [p for p in root.rglob("*") if p.is_file()]
        total = sum(p.stat().st_size for p in files)
        print(f"dataset: {total / 1e6:.0f} MB in {len(files)} files (on tmpfs)")
        objects = Objects()
        reader = FileReader(Chunker(bytes(32)), state_directory=disk / "state")
        (disk / "state").mkdir(mode=0o700)
        with CatalogIndex(disk / "state" / "index.sqlite") as index:
            sequence = 0

            def first() -> None:
                nonlocal sequence
                sequence = backup(index, objects, reader, root)

            seconds = timed("first backup", first)
            print(f"{'':28s} {total / seconds / 1e6:7.0f} MB/s")
            stored = sum(map(len, objects.stored.values()))
            print(f"stored after first backup    {stored / 1e6:7.1f} MB")
            timed("no-change backup", lambda: backup(index, objects, reader, root))
            subprocess.run([str(MAKE_CRM), "mutate", str(root)], check=True, capture_output=True)
            timed("backup after mutate", lambda: backup(index, objects, reader, root))
            grown = sum(map(len, objects.stored.values())) - stored
            print(f"growth after mutate          {grown / 1e6:7.2f} MB")
            timed("full restore to disk", lambda: restore(index, objects, sequence, disk / "out"))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS                     {peak:7.0f} MiB (objects are held in memory)")
    finally:
        shutil.rmtree(work)
        shutil.rmtree(disk)


if __name__ == "__main__":
    main()
