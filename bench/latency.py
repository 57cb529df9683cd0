"""Change-to-commit latency of `raidd serve`, its idle CPU and RSS, and array space per commit.

Creates a RAID5 array of four image files in a temporary directory,
starts the daemon on it with the given watcher timing, then makes small
edits one at a time. Each edit's latency runs from the write to the
moment `status` reports a newer commit: the commit is durable by then,
because the store reports a commit only after the array committed it.

    python bench/latency.py --edits 200 --quiet-period 0.2 --files 2000

Prints one JSON object: p50 and p99 latency in seconds, idle CPU as a
percentage of one core over `--idle-seconds`, the daemon's RSS, and the
allocated stripes (and bytes) per small commit.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from raidd.control import ControlClient

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


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


def _write_config(directory: Path, quiet_period: float, max_delay: float) -> Path:
    config = directory / "raidd.toml"
    config.write_text(
        f'[array]\nmembers = ["{directory}/m*"]\nkeyfile = "{directory}/key"\n\n'
        f'[[watch]]\npath = "{directory}/data"\n\n'
        f'[control]\nsocket = "{directory}/ctl.sock"\n\n'
        f'[state]\ndirectory = "{directory}/state"\n\n'
        f"[watcher]\nquiet_period = {quiet_period}\nmax_delay = {max_delay}\n"
    )
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
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("raidd serve exited during start-up")
        if path.exists():
            return
        time.sleep(0.05)
    raise SystemExit("raidd serve did not open its socket within 120 s")


def _last_commit(client: ControlClient) -> int:
    commit = client.call("status")["last_commit"]
    return commit["id"] if commit else 0


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="raidd-latency-") as name:
        directory = Path(name)
        data = directory / "data"
        data.mkdir()
        for index in range(args.files):
            sub = data / f"dir{index // 500}"
            sub.mkdir(exist_ok=True)
            (sub / f"file{index}.txt").write_text(f"customer {index}\n")
        env = {**os.environ, "RAIDD_LOCK_DIR": str(directory / "lock")}
        _create_array(directory, env)
        config = _write_config(directory, args.quiet_period, args.max_delay)
        process = subprocess.Popen(
            [sys.executable, "-m", "raidd.cli", "serve", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        try:
            _wait_socket(directory / "ctl.sock", process)
            with ControlClient(directory / "ctl.sock", timeout=60) as client:
                start_cpu = _cpu_seconds(process.pid)
                time.sleep(args.idle_seconds)
                idle_cpu = (_cpu_seconds(process.pid) - start_cpu) / args.idle_seconds
                stripes_before = client.call("status")["array"]["allocated_stripes"]
                commits_before = _last_commit(client)
                latencies = []
                for edit in range(args.edits):
                    target = data / f"edit{edit % 10}.txt"
                    previous = _last_commit(client)
                    started = time.monotonic()
                    target.write_text(f"edit {edit}\n")
                    while _last_commit(client) <= previous:
                        time.sleep(0.01)
                    latencies.append(time.monotonic() - started)
                status = client.call("status")
                commits = _last_commit(client) - commits_before
                stripes = status["array"]["allocated_stripes"] - stripes_before
                stripe_bytes = status["array"]["strip_size"] * 3
                rss = _rss_bytes(process.pid)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
    latencies.sort()
    return {
        "edits": args.edits,
        "files": args.files,
        "quiet_period_s": args.quiet_period,
        "latency_p50_s": round(statistics.median(latencies), 3),
        "latency_p99_s": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 3),
        "idle_cpu_percent": round(idle_cpu * 100, 3),
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
        "--quiet-period", type=float, default=5.0, help="[watcher] quiet_period, seconds"
    )
    parser.add_argument("--max-delay", type=float, default=300.0, help="[watcher] max_delay")
    parser.add_argument(
        "--idle-seconds", type=float, default=30.0, help="seconds of idle CPU measured"
    )
    print(json.dumps(run(parser.parse_args()), indent=2))


if __name__ == "__main__":
    main()
