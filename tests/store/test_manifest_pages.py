"""The paged manifest: folding, long histories, gc, check and index rebuild over pages."""

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from raidd.store.maintenance import check, gc
from raidd.store.manifest import expand, fold, top_bound
from raidd.store.objects import KIND_DELTA, KIND_PAGE, KIND_SEGMENT, MetadataRef, Piece
from raidd.store.pipeline import run_backup
from raidd.store.restore import restore, select
from raidd.store.store import Store
from tests.store.storekit import Setup, make_setup

SEED = 20261204


class MemoryPages:
    """Pages kept in a dict: the sealing and reading sides of fold and expand."""

    def __init__(self) -> None:
        self.pages: dict[bytes, tuple[MetadataRef, ...]] = {}
        self.calls = 0

    def seal(self, groups: list[tuple[int, list[MetadataRef]]]) -> list[MetadataRef]:
        self.calls += 1
        refs = []
        for height, group in groups:
            page_id = len(self.pages).to_bytes(32, "little")
            self.pages[page_id] = tuple(group)
            refs.append(MetadataRef(KIND_PAGE, page_id, 1, ((Piece(0, 0, 1),),), height))
        return refs

    def read(self, ref: MetadataRef) -> tuple[MetadataRef, ...]:
        return self.pages[ref.object_id]


def leaf(number: int) -> MetadataRef:
    kind = KIND_DELTA if number % 2 else KIND_SEGMENT
    return MetadataRef(kind, number.to_bytes(32, "little"), 1, ((Piece(number, 0, 1),),))


@pytest.mark.parametrize("page_refs", [2, 4, 7])
def test_fold_keeps_order_and_bounds_the_top(page_refs: int) -> None:
    memory = MemoryPages()
    top: list[MetadataRef] = []
    for number in range(1, 1001):
        calls = memory.calls
        top = fold([*top, leaf(number)], page_refs, memory.seal)
        assert len(top) <= top_bound(number, page_refs)
        # One seal call per height that carried, never more than the height.
        assert memory.calls - calls <= max(ref.height for ref in top)
        heights = [ref.height for ref in top]
        assert heights == sorted(heights, reverse=True)
    leaves = [ref for ref in expand(top, memory.read) if ref.kind != KIND_PAGE]
    assert leaves == [leaf(number) for number in range(1, 1001)]
    assert all(len(page) == page_refs for page in memory.pages.values())


def test_fold_of_a_long_flat_list_matches_appending() -> None:
    """An unpaged (version 1) history is folded whole by the first commit that reads it."""
    flat = [leaf(number) for number in range(1, 301)]
    memory = MemoryPages()
    top = fold(flat, 4, memory.seal)
    assert len(top) <= top_bound(300, 4)
    assert [ref.height for ref in top] == sorted((ref.height for ref in top), reverse=True)
    assert [r for r in expand(top, memory.read) if r.kind != KIND_PAGE] == flat
    with pytest.raises(ValueError, match="at least 2"):
        fold(flat, 1, memory.seal)


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RAIDD_LOCK_DIR", str(tmp_path / "lock"))
    monkeypatch.setattr(Store, "manifest_page_refs", 4)


def content_of(sequence: int) -> bytes:
    return f"state as of commit {sequence}\n".encode() * (1 + sequence % 5)


def restore_file(store: Store, target: Path, sequence: int) -> bytes:
    result = restore(store, target, select(store, []), sequence)
    assert result.report.ok and not result.lost
    return (target / "data" / "counter.txt").read_bytes()


def page_ids(store: Store, height: int | None = None) -> set[bytes]:
    return {
        ref.object_id
        for ref in store.manifest_refs()
        if ref.kind == KIND_PAGE and height in (None, ref.height)
    }


@pytest.mark.usefixtures("small_pages")
@pytest.mark.parametrize(("level", "members", "commits"), [(5, 4, 300), (1, 2, 60), (0, 2, 60)])
def test_long_history_on_pages(tmp_path: Path, level: int, members: int, commits: int) -> None:
    setup = make_setup(tmp_path / "array", level=level, members=members, strip_size=4096)
    top_lengths = []
    with Store.open(setup.config()) as store:

        def commit(sequence: int) -> None:
            (setup.data / "counter.txt").write_bytes(content_of(sequence))
            assert run_backup(store).sequence == sequence
            assert store.root is not None
            top_lengths.append(store.root.manifest.length)

        for sequence in range(1, commits + 1):
            commit(sequence)
            if sequence == commits // 2:
                gc(store)
        kinds = [ref.kind for ref in store.history()]
        # Every delta is kept; gc's base segment replaced the segments before it.
        assert kinds.count(KIND_DELTA) == commits
        assert kinds.count(KIND_SEGMENT) == 1 + commits - commits // 2
        pages = [r for r in store.manifest_refs() if r.kind == KIND_PAGE]
        assert max(p.height for p in pages) >= 3
        gc(store)
        before = page_ids(store, height=1)
        for sequence in range(commits + 1, commits + 11):
            commit(sequence)
        gc(store)
        # The second gc lists the same deltas first, so it keeps their pages
        # (higher pages, few and in sparse stripes, may be written anew).
        assert len(before & page_ids(store)) >= 0.9 * len(before)
        assert check(store, read_data=True).errors == []
    total = commits + 10
    # The top stays bounded: about 60 bytes a reference (76 on RAID0), the
    # header and the seal; a flat list would hold 2 * commits references.
    bound = top_bound(2 * total, 4) * (74 if level else 92) + 20 + 40 + 64
    assert max(top_lengths) <= bound
    assert bound < 2 * total * 58 / 4
    shutil.rmtree(setup.base / "state")
    with Store.open(setup.config(), read_only=True) as store:
        for sequence in range(1, total + 1):
            target = tmp_path / f"out{sequence}"
            assert restore_file(store, target, sequence) == content_of(sequence)
            shutil.rmtree(target)
        assert check(store, read_data=True).errors == []


@pytest.mark.usefixtures("small_pages")
def test_check_reports_a_lost_page(tmp_path: Path) -> None:
    setup = make_setup(tmp_path / "array", strip_size=4096)
    with Store.open(setup.config()) as store:
        for sequence in range(1, 11):
            (setup.data / "counter.txt").write_bytes(content_of(sequence))
            run_backup(store)
        page = next(r for r in store.manifest.refs if r.kind == KIND_PAGE)
        (piece,) = page.copies[0]
        offset = store.array.io.strip_offset(piece.stripe)
        strip = store.array.geometry.strip_size
    # Every strip of the page's stripe wrong: beyond the tolerance.
    for member_path in setup.members:
        with open(member_path, "r+b") as member:
            member.seek(offset)
            member.write(b"\xa5" * strip)
    with Store.open(setup.config(), read_only=True) as store:
        errors = check(store).errors
    assert len(errors) == 1
    assert errors[0].startswith("the manifest cannot be walked")
    assert f"stripes [{piece.stripe}]" in errors[0]


COMMIT_LOOP = """
import sys
from pathlib import Path

from raidd.config import load_config
from raidd.store.maintenance import gc
from raidd.store.pipeline import run_backup
from raidd.store.store import Store

Store.manifest_page_refs = 2
data = Path(sys.argv[2])
with Store.open(load_config(Path(sys.argv[1]))) as store:
    while True:
        last = store.catalog.last_commit()
        sequence = (last.sequence if last else 0) + 1
        (data / "counter.txt").write_bytes(
            f"state as of commit {sequence}\\n".encode() * (1 + sequence % 5)
        )
        run_backup(store)
        print(sequence, flush=True)
        if sequence % 7 == 0:
            gc(store)
"""


@pytest.mark.usefixtures("small_pages")
def test_kill_during_page_folds(tmp_path: Path) -> None:
    """With 2 references a page every commit folds; SIGKILL lands in or between folds."""
    chooser = random.Random(SEED)
    print(f"seed {SEED}")
    setup: Setup = make_setup(tmp_path / "array", strip_size=4096)
    newest = 0
    for round_number in range(3):
        process = subprocess.Popen(
            [sys.executable, "-c", COMMIT_LOOP, str(setup.config_path), str(setup.data)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        )
        # Kill at a random point after the first commit of this round.
        assert process.stdout is not None
        assert process.stdout.readline(), "the commit loop ended before its first commit"
        time.sleep(chooser.uniform(0.2, 1.0))
        assert process.poll() is None, "the commit loop ended before it was killed"
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stdout.close()
        if round_number == 2:
            shutil.rmtree(setup.base / "state")
        with Store.open(setup.config(), read_only=True) as store:
            sequence = store.resolve_commit().sequence
            assert sequence > newest
            newest = sequence
            assert check(store, read_data=True).errors == []
            for earlier in sorted({1, newest // 2, newest - 1, newest}):
                target = tmp_path / f"out{round_number}-{earlier}"
                assert restore_file(store, target, earlier) == content_of(earlier)


SOAK_COMMITS = int(os.environ.get("RAIDD_SOAK_COMMITS", "40000"))


@pytest.mark.soak
@pytest.mark.timeout(3600)
def test_soak_history_past_the_old_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """40,000 commits with the default page size: more than unpaged manifests could list."""
    monkeypatch.setenv("RAIDD_LOCK_DIR", str(tmp_path / "lock"))
    setup = make_setup(tmp_path / "array", size=160 << 20, strip_size=4096)
    largest_top = 0
    with Store.open(setup.config()) as store:
        assert store.manifest_page_refs == 32
        for sequence in range(1, SOAK_COMMITS + 1):
            (setup.data / "counter.txt").write_bytes(content_of(sequence))
            assert run_backup(store).sequence == sequence
            assert store.root is not None
            largest_top = max(largest_top, store.root.manifest.length)
            if sequence % 4000 == 0:
                gc(store)
        gc(store)
        assert check(store).errors == []
    assert largest_top <= top_bound(2 * SOAK_COMMITS, 32) * 74 + 124
    shutil.rmtree(setup.base / "state")
    with Store.open(setup.config(), read_only=True) as store:
        for sequence in sorted({1, SOAK_COMMITS // 3, SOAK_COMMITS - 1, SOAK_COMMITS}):
            target = tmp_path / f"out{sequence}"
            assert restore_file(store, target, sequence) == content_of(sequence)
        assert check(store, read_data=True).errors == []
