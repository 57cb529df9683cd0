"""A CRM data directory through two mutations, and retention with the clock moved."""

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from raidd.store.maintenance import check, forget, gc
from raidd.store.pipeline import run_backup
from raidd.store.restore import restore, select
from raidd.store.store import Store
from tests.store.storekit import MAKE_CRM, Setup, describe_tree, make_setup

HOUR = 3600 * 1_000_000_000


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Setup:
    monkeypatch.setenv("RAIDD_LOCK_DIR", str(tmp_path / "lock"))
    return make_setup(tmp_path / "array", size=48 << 20)


def comparable(root: Path) -> dict[bytes, tuple[object, ...]]:
    """Describe a tree, SQLite databases by their dump and integrity check."""
    tree = describe_tree(root)
    for path, value in list(tree.items()):
        if value[0] == "file" and path.endswith(b".db"):
            connection = sqlite3.connect(os.path.join(os.fsencode(root), path))
            dump = "\n".join(connection.iterdump())
            integrity = connection.execute("PRAGMA integrity_check").fetchone()
            connection.close()
            tree[path] = ("database", value[1], dump, integrity)
    return tree


def test_crm_round_trip_two_mutations(setup: Setup, tmp_path: Path) -> None:
    if not MAKE_CRM.exists():
        pytest.skip(f"the CRM dataset tool is not at {MAKE_CRM}")
    shutil.rmtree(setup.data)
    subprocess.run(
        [str(MAKE_CRM), "build", str(setup.data), "--orders-scale", "5"],
        check=True,
        capture_output=True,
    )
    expected = {}
    for step in range(3):
        if step:
            subprocess.run(
                [str(MAKE_CRM), "mutate", str(setup.data), "--seed", str(step)],
                check=True,
                capture_output=True,
            )
        with Store.open(setup.config()) as store:
            result = run_backup(store)
        assert result.problems == []
        assert result.sequence == step + 1
        expected[step + 1] = comparable(setup.data)
    assert expected[1] != expected[2] != expected[3]
    with Store.open(setup.config(), read_only=True) as store:
        for sequence, tree in expected.items():
            target = tmp_path / f"commit{sequence}"
            report = restore(store, target, select(store, []), sequence)
            assert report.report.ok
            assert comparable(target / "data") == tree
        assert check(store, read_data=True).errors == []
    # No plaintext on the members: a customer's company name and a file name.
    assert b"Alfreds Futterkiste" in (setup.data / "exports" / "customers.csv").read_bytes()
    for member in setup.members:
        content = Path(member).read_bytes()
        assert b"Alfreds Futterkiste" not in content
        assert b"customers.csv" not in content


def test_retention_and_gc_with_clock_moved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAIDD_LOCK_DIR", str(tmp_path / "lock"))
    setup = make_setup(tmp_path / "array", retention='[watch.retention]\nkeep_within = "2h"\n')
    now = 1_900_000_000 * 1_000_000_000
    with Store.open(setup.config()) as store:
        times = []
        for index, clock in enumerate([now - 5 * HOUR, now - 4 * HOUR, now - 3 * HOUR]):
            (setup.data / "file").write_bytes(os.urandom(50_000) + bytes([index]))
            times.append(run_backup(store, now_ns=clock).time_ns)
        # The clock set back a day: the commit still comes after the others.
        (setup.data / "file").write_bytes(os.urandom(50_000))
        back = run_backup(store, now_ns=now - 24 * HOUR)
        assert back.time_ns is not None
        assert back.time_ns > times[-1]
        newest_tree = describe_tree(setup.data)
        # With the clock still set back, keep_within counts from the newest commit.
        kept_back = forget(store, dry_run=True, now_ns=now - 24 * HOUR)
        assert kept_back.roots["data"]["forget"] == [1]
        # With the clock far forward, every commit is outside the window but the newest stays.
        forward = forget(store, now_ns=now + 1000 * HOUR)
        assert forward.roots["data"]["forget"] == [1, 2, 3]
        assert [c.sequence for c in store.snapshots()] == [4]
        assert gc(store).freed_stripes
        assert check(store, read_data=True).errors == []
        result = restore(store, tmp_path / "out", select(store, []), 4)
        assert result.report.ok
    assert describe_tree(tmp_path / "out" / "data") == newest_tree
