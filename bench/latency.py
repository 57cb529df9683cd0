"""Change-to-commit latency of `raidd serve`, its idle CPU and RSS, and array space per commit.

Creates a RAID5 array of four image files in a temporary directory, fills
the watched root with `--files` small files in directories of 500, starts
the daemon on it with its default watcher settings (unless
`--quiet-period` or `--max-delay` is given), measures idle CPU, then makes
`--edits` small edits.

Each edit rewrites one small file at the root's top level. Its latency
runs from just before the write to the first poll that finds the
daemon's catalog index listing that file with the written mtime: the
store updates the index only after the array committed the version (the
superblock is durable on every member), so this is the durable point,
seen at most `--poll` seconds late. `--streams` edits are in flight at
a time, each on its own file and started once that file's last edit is
durable, so the edits take about 1/streams of their summed latencies.
The streams' first edits are `--spacing` seconds apart, so that the
edits seldom land in one commit.

    python bench/latency.py                      # 1,000 edits, 20,000 files
    python bench/latency.py --edits 100 --files 2000 --idle-seconds 5

Prints one JSON object: the machine, the settings, p50 and p99 latency,
idle CPU as a percentage of one core over `--idle-seconds`, the daemon's
RSS after the edits, the commits made and the allocated stripes (and
bytes) per commit.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import machine_info

from raidd.control import ControlClient

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
FILES_PER_DIRECTORY = 500
ROOT_NAME = "data"


def _create_array(directory: Path, env: dict[str, str]) -> None:
    members = [str(directory / f"m{index}") for index in range(4)]
    create = ["create", "--level", "5", "--size", "256MiB", "--name", "bench"]
    keyfile = ["--new-keyfile", str(directory / "key")]
    subprocess.run(
        [sys.executable, "-m", "raidd.cli", *create, *keyfile, *members],
        check=True,
        capture_output=True,
        env=env,
    )


def _write_config(directory: Path, quiet_period: float | None, max_delay: float | None) -> Path:
    config = directory / "raidd.toml"
    text = (
        f'[array]\nmembers = ["{directory}/m*"]\nkeyfile = "{directory}/key"\n\n'
        f'[[watch]]\npath = "{directory}/data"\nname = "{ROOT_NAME}"\n\n'
        f'[control]\nsocket = "{directory}/ctl.sock"\n\n'
        f'[state]\ndirectory = "{directory}/state"\n'
    )
    timing = []
    if quiet_period is not None:
        timing.append(f"quiet_period = {quiet_period}")
    if max_delay is not None:
        timing.append(f"max_delay = {max_delay}")
    if timing:
        text += "\n[watcher]\n" + "\n".join(timing) + "\n"
    config.write_text(text)
    return config


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _wait_socket(path: Path, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("raidd serve exited during start-up")
        if path.exists():
            return
        time.sleep(0.05)
    raise SystemExit("raidd serve did not open its socket within 600 s")


def _last_commit(client: ControlClient) -> int:
    commit = client.call("status")["last_commit"]
    return commit["id"] if commit else 0


class CatalogProbe:
    """Read the daemon's catalog index read-only, for the mtime it records for a path."""

    def __init__(self, state: Path) -> None:
        (path,) = state.glob("catalog-*.db")
        self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)

    def committed_mtime(self, path: bytes) -> int | None:
        row = self._db.execute(
            "SELECT mtime_ns FROM versions WHERE root = ? AND path = ? AND last IS NULL",
            (ROOT_NAME, path),
        ).fetchone()
        return None if row is None else int(row[0])

    def close(self) -> None:
        self._db.close()


def _fill(data: Path, files: int) -> None:
    for index in range(files):
        sub = data / f"dir{index // FILES_PER_DIRECTORY}"
        sub.mkdir(exist_ok=True)
        (sub / f"file{index}.txt").write_text(f"customer {index}\n")


def _run_edits(data: Path, probe: CatalogProbe, args: argparse.Namespace) -> list[float]:
    """Make the edits, `args.streams` at a time; return each one's latency in seconds."""
    # stream -> (file name, mtime written, write time); None while idle.
    in_flight: dict[int, tuple[bytes, int, float] | None] = dict.fromkeys(range(args.streams))
    next_start = {stream: time.monotonic() + stream * args.spacing for stream in in_flight}
    latencies: list[float] = []
    started = 0
    deadline = time.monotonic() + args.edit_timeout
    while len(latencies) < args.edits:
        now = time.monotonic()
        if now > deadline:
            raise SystemExit(f"only {len(latencies)} edits committed in {args.edit_timeout} s")
        for stream, edit in in_flight.items():
            if edit is None:
                if started < args.edits and now >= next_start[stream]:
                    name = f"edit{stream}.txt"
                    written = time.monotonic()
                    (data / name).write_text(f"edit {started}\n")
                    mtime = os.stat(data / name).st_mtime_ns
                    in_flight[stream] = (name.encode(), mtime, written)
                    started += 1
                continue
            name, mtime, written = edit
            if probe.committed_mtime(name) == mtime:
                latencies.append(time.monotonic() - written)
                in_flight[stream] = None
                next_start[stream] = time.monotonic()
        time.sleep(args.poll)
    return latencies


def run(args: argparse.Namespace) -> dict[str, Any]:
    run_started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="raidd-latency-") as name:
        directory = Path(name)
        data = directory / "data"
        data.mkdir()
        _fill(data, args.files)
        env = {**os.environ, "RAIDD_LOCK_DIR": str(directory / "lock")}
        _create_array(directory, env)
        config = _write_config(directory, args.quiet_period, args.max_delay)
        started = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-m", "raidd.cli", "serve", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        try:
            _wait_socket(directory / "ctl.sock", process)
            start_seconds = time.monotonic() - started
            with ControlClient(directory / "ctl.sock", timeout=60) as client:
                start_cpu = _cpu_seconds(process.pid)
                time.sleep(args.idle_seconds)
                idle_cpu = (_cpu_seconds(process.pid) - start_cpu) / args.idle_seconds
                idle_commits = _last_commit(client)
                status = client.call("status")
                stripes_before = status["array"]["allocated_stripes"]
                probe = CatalogProbe(directory / "state")
                edits_started = time.monotonic()
                try:
                    latencies = _run_edits(data, probe, args)
                finally:
                    probe.close()
                edit_seconds = time.monotonic() - edits_started
                status = client.call("status")
                commits = _last_commit(client) - idle_commits
                stripes = status["array"]["allocated_stripes"] - stripes_before
                stripe_bytes = status["array"]["strip_size"] * 3
                rss = _rss_bytes(process.pid)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
    latencies.sort()
    return {
        "machine": machine_info(Path(tempfile.gettempdir())),
        "edits": args.edits,
        "files": args.files,
        "streams": args.streams,
        "quiet_period_s": args.quiet_period if args.quiet_period is not None else "default",
        "max_delay_s": args.max_delay if args.max_delay is not None else "default",
        "total_seconds": round(time.monotonic() - run_started, 1),
        "start_seconds": round(start_seconds, 1),
        "edit_seconds": round(edit_seconds, 1),
        "latency_p50_s": round(statistics.median(latencies), 3),
        "latency_p99_s": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 3),
        "latency_max_s": round(latencies[-1], 3),
        "idle_cpu_percent": round(idle_cpu * 100, 3),
        "idle_commits": idle_commits,
        "rss_mib": round(rss / 2**20, 1),
        "commits": commits,
        "stripes_per_commit": round(stripes / commits, 2) if commits else None,
        "bytes_per_commit": round(stripes * stripe_bytes / commits) if commits else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--edits", type=int, default=1000, help="small edits to time")
    parser.add_argument("--files", type=int, default=20_000, help="files in the watched root")
    parser.add_argument(
        "--quiet-period", type=float, help="[watcher] quiet_period in seconds (default: raidd's)"
    )
    parser.add_argument(
        "--max-delay", type=float, help="[watcher] max_delay in seconds (default: raidd's)"
    )
    parser.add_argument("--streams", type=int, default=2, help="edits in flight at a time")
    parser.add_argument(
        "--spacing", type=float, default=0.3, help="seconds between the streams' first edits"
    )
    parser.add_argument(
        "--poll", type=float, default=0.01, help="seconds between checks of the catalog"
    )
    parser.add_argument(
        "--idle-seconds", type=float, default=30.0, help="seconds of idle CPU measured"
    )
    parser.add_argument(
        "--edit-timeout", type=float, default=1800.0, help="seconds all edits may take"
    )
    print(json.dumps(run(parser.parse_args()), indent=2))


if __name__ == "__main__":
    main()
