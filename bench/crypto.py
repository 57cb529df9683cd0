"""Measure crypto.seal and crypto.open throughput beside OpenSSL's AES-256-GCM.

Usage: .venv/bin/python bench/crypto.py [--seconds S] [--repeat R]

For each block size (64 KiB, 256 KiB, 1 MiB) it measures, in GB/s of
plaintext (10^9 bytes per second of wall-clock time):
- `openssl speed -elapsed -evp aes-256-gcm -bytes N`, one process, and with
  `-multi 2` for reference;
- crypto.seal and crypto.open on one thread and on two threads, sealing
  under one subkey. Every seal includes its per-block key derivation
  (HKDF-SHA256 over a fresh salt) and AES-GCM setup.
Each figure is the best of R rounds, the rounds interleaved so that load
from other processes spreads over all figures alike. The run ends with the
targets: one-thread sealing at 256 KiB at least 0.2 x OpenSSL, and two
threads at least 1.4 x one thread.
"""

import argparse
import os
import platform
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

# NOTE: Python puts this script's directory first on sys.path, where this
# file's own name would shadow the crypto package; the repository root goes
# in front of it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import Crypto

import crypto

SIZES = [64 * 1024, 256 * 1024, 1024 * 1024]
ASSOCIATED_DATA = b"array 6f1c2d7e-0000-4000-8000-00000000000a|object 0000000000000001"
SEAL_RATIO_TARGET = 0.2
THREAD_SCALING_TARGET = 1.4
TARGET_SIZE = 256 * 1024


def openssl_speed(size: int, seconds: float, processes: int) -> float:
    """Run `openssl speed` for AES-256-GCM at one block size; return bytes per second."""
    command = ["openssl", "speed", "-elapsed", "-mr", "-seconds", str(max(1, round(seconds)))]
    if processes > 1:
        command += ["-multi", str(processes)]
    command += ["-evp", "aes-256-gcm", "-bytes", str(size)]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    # The machine-readable summary line is "+F:<n>:AES-256-GCM:<bytes per second>";
    # with -multi, the last one is the sum over all processes.
    totals = re.findall(r"^\+F:\d+:AES-256-GCM:([0-9.]+)$", output, re.MULTILINE)
    if not totals:
        raise RuntimeError(f"no +F line in the output of {' '.join(command)}:\n{output}")
    return float(totals[-1])


def throughput(operation: Callable[[], object], size: int, seconds: float, threads: int) -> float:
    """Run ``operation`` on ``threads`` threads for ``seconds``; return bytes per second."""
    counts = [0] * threads
    barrier = threading.Barrier(threads + 1)
    finished = [0.0] * threads

    def loop(index: int) -> None:
        barrier.wait()
        deadline = time.perf_counter() + seconds
        count = 0
        while True:
            operation()
            count += 1
            now = time.perf_counter()
            if now >= deadline:
                break
        counts[index] = count
        finished[index] = now

    workers = [threading.Thread(target=loop, args=(index,)) for index in range(threads)]
    for worker in workers:
        worker.start()
    start = time.perf_counter()
    barrier.wait()
    for worker in workers:
        worker.join()
    return sum(counts) * size / (max(finished) - start)


def measure(seconds: float, repeat: int) -> dict[tuple[str, int], float]:
    """Return the best throughput per (measurement, block size), in bytes per second."""
    subkeys = crypto.derive_subkeys(crypto.MasterKey.generate())
    key = subkeys.chunk
    best: dict[tuple[str, int], float] = {}
    for _ in range(repeat):
        for size in SIZES:
            plaintext = os.urandom(size)
            sealed = crypto.seal(key, plaintext, ASSOCIATED_DATA)

            def seal_one(plaintext: bytes = plaintext) -> bytes:
                return crypto.seal(key, plaintext, ASSOCIATED_DATA)

            def open_one(sealed: bytes = sealed) -> bytes:
                return crypto.open(key, sealed, ASSOCIATED_DATA)

            figures = {
                "openssl 1": openssl_speed(size, seconds, 1),
                "openssl 2": openssl_speed(size, seconds, 2),
                "seal 1": throughput(seal_one, size, seconds, 1),
                "seal 2": throughput(seal_one, size, seconds, 2),
                "open 1": throughput(open_one, size, seconds, 1),
                "open 2": throughput(open_one, size, seconds, 2),
            }
            for name, value in figures.items():
                best[name, size] = max(best.get((name, size), 0.0), value)
    return best


def machine_description() -> str:
    model = "unknown"
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        found = re.search(r"^Model name:\s*(.+)$", lscpu, re.MULTILINE)
        model = found.group(1).strip() if found else model
    except (OSError, subprocess.CalledProcessError) as error:
        model = f"unknown (lscpu failed: {error})"
    openssl = subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.strip()
    return (
        f"machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {model}\n"
        f"Python {platform.python_version()}, pycryptodome {Crypto.__version__}, {openssl}\n"
        f"load average before the run: {' '.join(f'{value:.2f}' for value in os.getloadavg())}"
    )


def report(best: dict[tuple[str, int], float]) -> list[str]:
    """Print the table and the target checks; return the targets missed."""
    gb = 1e9
    print(
        "| block | OpenSSL 1 proc | OpenSSL 2 procs | seal 1 thread | seal / OpenSSL "
        "| open 1 thread | open / OpenSSL | seal 2 threads | seal 2/1 "
        "| open 2 threads | open 2/1 |"
    )
    print("| ---: " * 11 + "|")
    for size in SIZES:
        openssl_one = best["openssl 1", size]
        seal_one, open_one = best["seal 1", size], best["open 1", size]
        seal_two, open_two = best["seal 2", size], best["open 2", size]
        print(
            f"| {size // 1024} KiB | {openssl_one / gb:.2f} | {best['openssl 2', size] / gb:.2f} "
            f"| {seal_one / gb:.2f} | {seal_one / openssl_one:.2f} x "
            f"| {open_one / gb:.2f} | {open_one / openssl_one:.2f} x "
            f"| {seal_two / gb:.2f} | {seal_two / seal_one:.2f} x "
            f"| {open_two / gb:.2f} | {open_two / open_one:.2f} x |"
        )
    missed: list[str] = []
    checks = [
        (
            "one thread, 256 KiB, seal / OpenSSL",
            best["seal 1", TARGET_SIZE] / best["openssl 1", TARGET_SIZE],
            SEAL_RATIO_TARGET,
        ),
        (
            "256 KiB, seal two threads / one thread",
            best["seal 2", TARGET_SIZE] / best["seal 1", TARGET_SIZE],
            THREAD_SCALING_TARGET,
        ),
        (
            "256 KiB, open two threads / one thread",
            best["open 2", TARGET_SIZE] / best["open 1", TARGET_SIZE],
            THREAD_SCALING_TARGET,
        ),
    ]
    print()
    for name, ratio, target in checks:
        verdict = "met" if ratio >= target else "MISSED"
        print(f"target {name}: {ratio:.2f} x (target {target} x) {verdict}")
        if ratio < target:
            missed.append(name)
    return missed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds per measurement")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the best round counts")
    args = parser.parse_args()
    print(machine_description())
    print(f"command: {' '.join(sys.argv)} (seconds {args.seconds}, repeat {args.repeat})")
    print("figures in GB/s (10^9 bytes of plaintext per second, wall clock), best of the rounds")
    print()
    report(measure(args.seconds, args.repeat))


if __name__ == "__main__":
    main()
