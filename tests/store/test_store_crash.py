"""SIGKILL during backup and during gc: the previous commit restores identical."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from raidd.store.maintenance import check
from raidd.store.restore import restore, select
from raidd.store.store import Store
from tests.store.storekit import Setup, describe_tree, make_setup

SEED = 20261204


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Setup:
    monkeypatch.setenv("RAIDD_LOCK_DIR", str(tmp_path / "lock"))
    return make_setup(
        tmp_path / "array", size=32 << 20, retention="[watch.retention]\nkeep_last = 1\n"
    )


def raidd_process(setup: Setup, *args: str) -> "subprocess.Popen[bytes]":
    return subprocess.Popen(
        [sys.executable, "-m", "raidd.cli", *args, "--config", str(setup.config_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )


def kill_after(process: "subprocess.Popen[bytes]", delay: float) -> bool:
    """Kill the process after `delay` seconds; return True when it was still running."""
    time.sleep(delay)
    running = process.poll() is None
    process.send_signal(signal.SIGKILL)
    process.wait()
    return running


def verify_newest(
    setup: Setup, target: Path, trees: dict[int, dict[bytes, tuple[object, ...]]]
) -> int:
    """Restore the newest commit, compare it with its recorded tree, run check --read-data."""
    with Store.open(setup.config(), read_only=True) as store:
        newest = store.resolve_commit().sequence
        result = restore(store, target, select(store, []), newest)
        assert result.report.ok
        assert not result.lost
        report = check(store, read_data=True)
        assert report.errors == []
    assert describe_tree(target / "data") == trees[newest]
    return newest


def test_kill_during_backup(setup: Setup, tmp_path: Path) -> None:
    chooser = random.Random(SEED)
    print(f"seed {SEED}")
    (setup.data / "base.txt").write_text("committed before the crashes\n")
    with Store.open(setup.config()) as store:
        from raidd.store.pipeline import run_backup

        run_backup(store)
    trees = {1: describe_tree(setup.data)}
    for round_number in range(3):
        for index in range(4):
            (setup.data / f"round{round_number}-{index}.bin").write_bytes(
                chooser.randbytes(1 << 20)
            )
        delay = chooser.uniform(0.3, 1.2)
        process = raidd_process(setup, "backup")
        kill_after(process, delay)
        with Store.open(setup.config(), read_only=True) as store:
            newest = store.resolve_commit().sequence
        if newest not in trees:
            trees[newest] = describe_tree(setup.data)
        verify_newest(setup, tmp_path / f"out{round_number}", trees)
    with Store.open(setup.config()) as store:
        # The array takes a new commit after the crashes.
        assert run_backup(store).problems == []


def test_kill_during_gc(setup: Setup, tmp_path: Path) -> None:
    chooser = random.Random(SEED + 1)
    print(f"seed {SEED + 1}")
    from raidd.store.maintenance import forget
    from raidd.store.pipeline import run_backup

    trees: dict[int, dict[bytes, tuple[object, ...]]] = {}
    for round_number in range(3):
        with Store.open(setup.config()) as store:
            for index in range(6):
                (setup.data / f"file{index}.bin").write_bytes(chooser.randbytes(150_000))
            sequence = run_backup(store).sequence
            assert sequence is not None
            trees[sequence] = describe_tree(setup.data)
            forget(store)
        process = raidd_process(setup, "gc")
        kill_after(process, chooser.uniform(0.2, 0.9))
        verify_newest(setup, tmp_path / f"out{round_number}", trees)
