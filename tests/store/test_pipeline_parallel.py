"""The threaded backup and restore paths: same results as one thread, bounded memory."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from raidd.array import assemble
from raidd.store import pipeline, restore_fetch
from raidd.store.packing import MAX_QUEUED, Packer, read_location
from raidd.store.prefetch import Prefetcher
from raidd.store.store import Store
from tests.store.storekit import describe_tree, make_setup

MIB = 1 << 20


def _write_mixed_tree(root: Path, seed: int) -> None:
    """Write small, compressible, random and repeated files, and one of several chunks."""
    rng = np.random.default_rng(seed)
    (root / "small").mkdir()
    for index in range(40):
        (root / "small" / f"note-{index:02}.txt").write_bytes(
            f"customer {index}\n".encode() * (index * 37 + 1)
        )
    (root / "random.bin").write_bytes(rng.bytes(3 * MIB + 12345))
    (root / "text.csv").write_bytes(
        b"".join(b"%d,order,%d\n" % (i, i * 7) for i in range(200_000))
    )
    block = rng.bytes(700_000)
    (root / "repeated.bin").write_bytes(block * 5)
    (root / "empty").write_bytes(b"")


def _chunk_lists(store: Store, root: str, sequence: int) -> list[tuple[object, ...]]:
    return [
        (v.path, v.size, tuple((c.offset, c.length, c.chunk_id) for c in v.chunks))
        for v in store.ls(root, sequence)
    ]


def test_parallel_backup_matches_one_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One worker and four cut, name and restore the same tree identically."""
    setup = make_setup(tmp_path / "array", size=48 << 20)
    _write_mixed_tree(setup.data, seed=7)
    copy = tmp_path / "copy"
    shutil.copytree(setup.data, copy)
    with setup.config_path.open("a") as config:
        config.write(f'[[watch]]\npath = "{copy}"\nname = "copy"\n')
    with Store.open(setup.config()) as store:
        monkeypatch.setattr(pipeline, "MAX_WORKERS", 1)
        monkeypatch.setattr(os, "cpu_count", lambda: 1)
        serial = store.backup(["data"])
        monkeypatch.setattr(pipeline, "MAX_WORKERS", 4)
        monkeypatch.setattr(os, "cpu_count", lambda: 4)
        parallel = store.backup(["copy"])
        assert serial.chunks_new > 10
        # Every chunk of the copy was stored by the serial run already.
        assert parallel.chunks_new == 0
        assert parallel.bytes_read == serial.bytes_read
        assert _chunk_lists(store, "copy", parallel.sequence) == _chunk_lists(
            store, "data", serial.sequence
        )
        target = tmp_path / "restored"
        restored = store.restore(target, [], parallel.sequence)
        assert restored.lost == []
        assert restored.report.ok
    expected = describe_tree(setup.data)
    assert describe_tree(target / "data") == expected
    assert describe_tree(target / "copy") == expected


def test_restore_fetcher_matches_direct_reads(tmp_path: Path) -> None:
    """Chunks from the read-ahead fetcher equal chunks read one by one, file by file."""
    setup = make_setup(tmp_path / "array", size=48 << 20)
    _write_mixed_tree(setup.data, seed=3)
    with Store.open(setup.config()) as store:
        store.backup()
        files = [v for v in store.ls("data", 1) if v.chunks]
        with restore_fetch.ChunkFetcher(store, workers=3, window=MIB) as fetcher:
            for number, version in enumerate(files):
                fetcher.add(number, version)
            for number, version in enumerate(files):
                if number == 2:
                    continue  # a file the writer skips: its chunks are dropped
                fetched = list(fetcher.pieces(number))
                direct = [
                    (
                        c.offset,
                        restore_fetch.read_chunk(
                            store, c.chunk_id, store.objects.get(c.chunk_id).pieces, c.length
                        ),
                    )
                    for c in version.chunks
                ]
                assert fetched == direct, version.path
            assert fetcher.queued == 0


def test_packer_writer_thread_keeps_locations(tmp_path: Path) -> None:
    """Objects added from several threads read back whole after flush, across stripes."""
    setup = make_setup(tmp_path / "array", size=24 << 20)
    array = assemble(setup.members, read_only=False)
    try:
        packer = Packer(array)
        rng = np.random.default_rng(11)
        objects = [
            rng.bytes(int(size)) for size in rng.integers(1, 3 * array.stripe_data_size, 60)
        ]
        locations: dict[int, object] = {}

        def add(indices: range) -> None:
            for index in indices:
                header, body = objects[index][:7], objects[index][7:]
                locations[index] = packer.add((header, body))

        threads = [threading.Thread(target=add, args=(range(i, 60, 3),)) for i in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        packer.flush()
        assert packer.bytes_packed == sum(len(o) for o in objects)
        assert len(set(packer.stripes_written)) == len(packer.stripes_written)
        for index, location in locations.items():
            pieces = location.resolve()  # type: ignore[attr-defined]
            assert read_location(array, pieces) == objects[index]
    finally:
        array.close()
    assert MAX_QUEUED >= 1


def test_packer_reports_full_array(tmp_path: Path) -> None:
    """ArrayFullError met by the writer thread comes out of add() or flush()."""
    from raidd.errors import ArrayFullError

    setup = make_setup(tmp_path / "array", size=16 << 20, strip_size=16384)
    array = assemble(setup.members, read_only=False)
    try:
        packer = Packer(array)
        with pytest.raises(ArrayFullError, match="is full"):
            for _ in range(10_000):
                packer.add(bytes(array.stripe_data_size))
            packer.flush()
    finally:
        array.close()


class _RecordingPrefetcher(Prefetcher):
    """A Prefetcher that records each read-ahead and where the consumer was."""

    seen: list[tuple[int, int]]

    def _read_ahead(self, path: bytes, size: int) -> None:
        self.seen.append((int(path), self._current))
        with self._changed:
            self._changed.notify_all()


def _wait_for(prefetcher: _RecordingPrefetcher, count: int) -> None:
    with prefetcher._changed:
        assert prefetcher._changed.wait_for(lambda: len(prefetcher.seen) >= count, timeout=30)


def test_prefetcher_stays_within_window() -> None:
    """Files are read ahead in order, never more than the window past the consumer."""
    sizes = [1000, 1000, 0, 1000, 1000, 1000, 1000]
    paths = [str(index).encode() for index in range(len(sizes))]
    _RecordingPrefetcher.seen = []
    with _RecordingPrefetcher(paths, sizes, window=2500) as prefetcher:
        # Files 0 and 1 fit the window, file 2 is empty and skipped, file 3 would end
        # 3,000 bytes past the consumer.
        _wait_for(prefetcher, 2)
        prefetcher.advance(1)
        _wait_for(prefetcher, 3)
        prefetcher.advance(5)
        _wait_for(prefetcher, 5)
    seen = _RecordingPrefetcher.seen
    assert [index for index, _ in seen] == [0, 1, 3, 5, 6]
    for index, current in seen:
        assert sum(sizes[current : index + 1]) <= 2500 or index <= current


def test_prefetcher_skips_missing_file(tmp_path: Path) -> None:
    """A file that vanished is left to the worker, which reports it."""
    present = tmp_path / "present"
    present.write_bytes(bytes(5000))
    missing = os.fsencode(tmp_path / "missing")
    with Prefetcher([missing, os.fsencode(present)], [10, 5000]) as prefetcher:
        prefetcher._read_ahead(missing, 10)
        prefetcher.advance(1)
    with pytest.raises(ValueError, match="2 paths but 1 sizes"):
        Prefetcher([missing, missing], [1])


_RSS_SCRIPT = """
import json, resource, subprocess, sys
completed = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(json.dumps({
    "returncode": completed.returncode,
    "stdout": completed.stdout,
    "stderr": completed.stderr[-2000:],
    "max_rss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
}))
"""


def _peak_rss(command: list[str]) -> tuple[dict, int]:
    """Run a command under a fresh wrapper; return its result and peak RSS in bytes."""
    wrapper = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT, *command],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    report = json.loads(wrapper.stdout)
    assert report["returncode"] == 0, report["stderr"]
    return report, report["max_rss_kib"] * 1024


def test_backup_of_large_file_has_bounded_rss(tmp_path: Path) -> None:
    """A 1 GiB file with 256 MiB of random data backs up in far less memory than its data."""
    setup = make_setup(tmp_path / "array", size=160 << 20, strip_size=65536)
    big = setup.data / "big.img"
    digest = hashlib.blake2b()
    rng = np.random.default_rng(5)
    with big.open("wb") as stream:
        stream.truncate(1 << 30)
        for extent in range(4):
            stream.seek(extent * (256 * MIB))
            for _ in range(8):
                block = rng.bytes(8 * MIB)
                digest.update(block)
                stream.write(block)
    raidd = [sys.executable, "-m", "raidd.cli"]
    report, peak = _peak_rss([*raidd, "backup", "--config", str(setup.config_path), "--json"])
    result = json.loads(report["stdout"])
    assert result["files_read"] == 1
    assert result["bytes_read"] == 256 * MIB
    # Half the 256 MiB read; the interpreter and imports alone take about 45 MiB.
    assert peak < 128 * MIB, f"peak RSS {peak / MIB:.0f} MiB"
    target = tmp_path / "restored"
    _, restore_peak = _peak_rss(
        [*raidd, "restore", "--config", str(setup.config_path), "--to", str(target), "--json"]
    )
    assert restore_peak < 128 * MIB, f"restore peak RSS {restore_peak / MIB:.0f} MiB"
    restored = target / "data" / "big.img"
    assert restored.stat().st_size == 1 << 30
    check = hashlib.blake2b()
    with restored.open("rb") as stream:
        for extent in range(4):
            stream.seek(extent * (256 * MIB))
            check.update(stream.read(64 * MIB))
    assert check.hexdigest() == digest.hexdigest()
