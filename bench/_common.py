"""Helpers shared by the benchmarks: machine description, timed child processes, trees.

`run_measured` runs a command under a small Python wrapper process, so that
`resource.getrusage(RUSAGE_CHILDREN)` inside the wrapper covers that one
command's process tree and nothing else the benchmark ran before. The
largest single process's peak RSS comes from there (exact); the sum over the
tree is sampled from /proc every `sample_interval` seconds (it can miss a
short peak). NOTE: the per-process peak never reads below the wrapper's own
RSS at the time it starts the command (about 11 MiB with CPython 3.11),
because Linux carries the memory high-water mark across execve.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import platform
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

SQLITE_HEADER = b"SQLite format 3\x00"
SQLITE_SIDECAR_SUFFIXES = ("-journal", "-wal", "-shm")

# Runs in the wrapper process: argv[1] is the result file, the rest the command.
_WRAPPER = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
returncode = subprocess.run(sys.argv[2:]).returncode
seconds = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
result = {"returncode": returncode, "seconds": seconds, "maxrss_kib": usage.ru_maxrss,
          "cpu_seconds": usage.ru_utime + usage.ru_stime}
with open(sys.argv[1], "w", encoding="ascii") as out:
    json.dump(result, out)
"""


@dataclass(frozen=True, slots=True)
class Measurement:
    """One command's wall-clock time, peak memory and output.

    `seconds` counts from the command's start to its exit, plus the syncfs
    of `sync_path` when one was requested. `cpu_seconds` is the user and
    system CPU time of the whole tree. `max_process_rss` is the largest peak
    RSS of any one process of the tree (from getrusage); `tree_rss` the
    largest sampled sum of the tree's RSS.
    """

    returncode: int
    seconds: float
    cpu_seconds: float
    max_process_rss: int
    tree_rss: int
    stdout: str
    stderr: str

    @property
    def peak_rss(self) -> int:
        """Bytes: the larger of the exact per-process peak and the sampled tree sum."""
        return max(self.max_process_rss, self.tree_rss)


def syncfs(path: Path) -> None:
    """Flush the filesystem of `path` to its device (Linux syncfs(2))."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.syncfs(fd) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"syncfs failed: {os.strerror(error)}", str(path))
    finally:
        os.close(fd)


def drop_page_caches() -> bool:
    """Write back dirty pages and drop the page cache; return False when not allowed."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w", encoding="ascii") as control:
            control.write("3\n")
    except PermissionError:
        return False
    return True


def _parent_pids() -> dict[int, int]:
    parents = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stat_file:
                fields = stat_file.read().rsplit(b")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue  # the process exited between listdir and open
        parents[int(name)] = int(fields[1])
    return parents


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (FileNotFoundError, ProcessLookupError):
        return 0


def descendants(pid: int) -> list[int]:
    """Return the pids of every live descendant of `pid`, not `pid` itself."""
    children: dict[int, list[int]] = {}
    for child, parent in _parent_pids().items():
        children.setdefault(parent, []).append(child)
    found = []
    pending = list(children.get(pid, []))
    while pending:
        current = pending.pop()
        found.append(current)
        pending.extend(children.get(current, []))
    return found


def run_measured(
    command: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    sync_path: Path | None = None,
    sample_interval: float = 0.1,
) -> Measurement:
    """Run `command` to completion and measure its time and peak RSS.

    Args:
        command: program and arguments.
        env: the whole environment of the command (default: this process's).
        cwd: working directory of the command.
        sync_path: when given, syncfs this path's filesystem after the command
            exits and count that time, so data a tool left in the page cache
            is paid for like data a tool flushed itself.
        sample_interval: seconds between samples of the tree's summed RSS.

    Returns:
        The measurement; a failing command is reported through `returncode`.
    """
    with tempfile.TemporaryDirectory(prefix="bench-run-") as scratch:
        result_path = Path(scratch) / "result.json"
        stdout_path = Path(scratch) / "stdout"
        stderr_path = Path(scratch) / "stderr"
        with open(stdout_path, "wb") as stdout, open(stderr_path, "wb") as stderr:
            wrapper = subprocess.Popen(
                [sys.executable, "-c", _WRAPPER, str(result_path), *map(str, command)],
                env=dict(env) if env is not None else None,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
            )
            tree_rss = 0
            while wrapper.poll() is None:
                tree_rss = max(tree_rss, sum(map(_rss_bytes, descendants(wrapper.pid))))
                time.sleep(sample_interval)
        sync_seconds = 0.0
        if sync_path is not None:
            start = time.perf_counter()
            syncfs(sync_path)
            sync_seconds = time.perf_counter() - start
        if wrapper.returncode != 0 or not result_path.exists():
            raise RuntimeError(
                f"measuring wrapper failed with exit code {wrapper.returncode}: "
                f"{stderr_path.read_text(errors='replace')[-2000:]}"
            )
        result = json.loads(result_path.read_text(encoding="ascii"))
        return Measurement(
            returncode=result["returncode"],
            seconds=result["seconds"] + sync_seconds,
            cpu_seconds=result["cpu_seconds"],
            max_process_rss=result["maxrss_kib"] * 1024,
            tree_rss=tree_rss,
            stdout=stdout_path.read_text(errors="replace"),
            stderr=stderr_path.read_text(errors="replace"),
        )


def command_output(command: Sequence[str]) -> str:
    """Return a command's stripped stdout, or "unknown" when it cannot run."""
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if completed.returncode != 0:
        return "unknown"
    return completed.stdout.strip()


def cpu_model() -> str:
    """Return lscpu's "Model name", or "unknown"."""
    for line in command_output(["lscpu"]).splitlines():
        if line.startswith("Model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def disk_of(path: Path) -> str:
    """Describe the filesystem and device of `path` (findmnt and lsblk)."""
    found = command_output(["findmnt", "-n", "-o", "SOURCE,FSTYPE", "-T", str(path)])
    if found == "unknown":
        return found
    source, _, fstype = found.partition(" ")
    device = command_output(["lsblk", "-n", "-d", "-P", "-o", "MODEL,ROTA,SIZE", source])
    return f"{source}, {fstype.strip()}, lsblk {device}"


def machine_info(workdir: Path) -> dict[str, object]:
    """Return the facts a benchmark record needs: CPUs, disk, Python, load average."""
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "kernel": platform.release(),
        "disk": disk_of(workdir),
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
    }


def tree_size(root: Path) -> tuple[int, int]:
    """Return (bytes, regular files) of the tree under `root`, by apparent file size."""
    total = 0
    files = 0
    for directory, _, names in os.walk(root):
        for name in names:
            info = os.lstat(os.path.join(directory, name))
            if stat.S_ISREG(info.st_mode):
                total += info.st_size
                files += 1
    return total, files


def sqlite_dump(path: Path) -> str:
    """Return the SQL text dump of a database, opened read-only."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return "\n".join(connection.iterdump())
    finally:
        connection.close()


def _file_digest(path: Path) -> str:
    with open(path, "rb") as source:
        return hashlib.file_digest(source, "blake2b").hexdigest()


def _tree_entries(root: Path) -> dict[str, tuple[str, int, str]]:
    """Map each relative path to (kind, size, digest or link target)."""
    entries: dict[str, tuple[str, int, str]] = {}
    for directory, subdirectories, names in os.walk(root):
        for name in subdirectories:
            path = Path(directory, name)
            relative = str(path.relative_to(root))
            if path.is_symlink():
                entries[relative] = ("symlink", 0, os.readlink(path))
            else:
                entries[relative] = ("directory", 0, "")
        for name in names:
            path = Path(directory, name)
            relative = str(path.relative_to(root))
            if path.is_symlink():
                entries[relative] = ("symlink", 0, os.readlink(path))
            else:
                entries[relative] = ("file", path.stat().st_size, _file_digest(path))
    return entries


def _is_sqlite(path: Path) -> bool:
    with open(path, "rb") as source:
        return source.read(len(SQLITE_HEADER)) == SQLITE_HEADER


def compare_trees(original: Path, restored: Path) -> list[str]:
    """Compare two trees by kind, size and BLAKE2b of every file; list the differences.

    A SQLite database whose bytes differ counts as equal when its `.dump`
    matches (a tool that stores a consistent copy through SQLite's backup
    API writes other bytes with the same content). Journal, WAL and shared
    memory files missing from `restored` are not differences.

    Returns:
        One line per difference; empty when the trees match.
    """
    expected = _tree_entries(original)
    found = _tree_entries(restored)
    problems = []
    for relative, entry in sorted(expected.items()):
        other = found.get(relative)
        if other is None:
            if not relative.endswith(SQLITE_SIDECAR_SUFFIXES):
                problems.append(f"{relative}: missing")
            continue
        if entry == other:
            continue
        if entry[0] == other[0] == "file" and _is_sqlite(original / relative):
            if sqlite_dump(original / relative) == sqlite_dump(restored / relative):
                continue
            problems.append(f"{relative}: database .dump differs")
            continue
        problems.append(f"{relative}: {entry[:2]} != {other[:2]} or content differs")
    problems += [
        f"{relative}: not in the original" for relative in sorted(found.keys() - expected.keys())
    ]
    return problems


def find_tree_root(top: Path, marker: str) -> Path | None:
    """Return the directory under `top` (or `top`) that contains the relative path `marker`."""
    if (top / marker).exists():
        return top
    for directory, _, _ in os.walk(top):
        if (Path(directory) / marker).exists():
            return Path(directory)
    return None
