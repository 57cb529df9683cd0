"""Measure crypto.seal and crypto.open throughput beside OpenSSL's AES-256-GCM.

Usage: .venv/bin/python bench/crypto.py [--seconds S] [--repeat R]

For each block size (64 KiB, 256 KiB, 1 MiB) it measures, in GB/s of
plaintext (10^9 bytes per second of wall-clock time):
- `openssl speed -elapsed -evp aes-256-gcm -bytes N`, one process, and with
  `-multi 2` for reference;
- crypto.seal and crypto.open on one thread and on two threads, sealing
  under one subkey, and crypto.seal in two forked processes for reference.
  Every seal includes its per-block key derivation (HKDF-SHA256 over a
  fresh salt) and AES-GCM setup.
`openssl speed` runs for 1 s, each crypto measurement for S seconds. Each
figure is the best of R rounds, the rounds interleaved, because other
processes on a shared machine slow some rounds down and the best round is
the one closest to an idle machine. The run ends with the targets:
one-thread sealing at 256 KiB at least 0.2 x OpenSSL, and two threads at
least 1.4 x one thread.
"""

import argparse
import os
import platform
import re
import subprocess
import sys
import threading
import time
import timeit
from collections.abc import Callable
from pathlib import Path

# NOTE: Python puts this script's directory first on sys.path, where this
# file's own name would shadow the crypto package; the repository root goes
# in front of it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import Crypto
from Crypto.Cipher import AES

import crypto

SIZES = [64 * 1024, 256 * 1024, 1024 * 1024]
ASSOCIATED_DATA = b"array 6f1c2d7e-0000-4000-8000-00000000000a|object 0000000000000001"
SEAL_RATIO_TARGET = 0.2
THREAD_SCALING_TARGET = 1.4
TARGET_SIZE = 256 * 1024


def openssl_speed(size: int, processes: int) -> float:
    """Run `openssl speed` for AES-256-GCM at one block size for 1 s; return bytes per second."""
    command = ["openssl", "speed", "-elapsed", "-mr", "-seconds", "1"]
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


def throughput_in_processes(
    operation: Callable[[], object], size: int, seconds: float, processes: int
) -> float:
    """Run ``operation`` in ``processes`` forked children for ``seconds``; return bytes per second.

    Each child has its own GIL, so this shows what the threads would reach
    without one.
    """
    start_read, start_write = os.pipe()
    children: list[tuple[int, int]] = []
    for _ in range(processes):
        result_read, result_write = os.pipe()
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                os.read(start_read, 1)
                begin = time.perf_counter()
                deadline = begin + seconds
                count = 0
                while time.perf_counter() < deadline:
                    operation()
                    count += 1
                elapsed = time.perf_counter() - begin
                os.write(result_write, f"{count} {elapsed}".encode())
                status = 0
            finally:
                os._exit(status)
        os.close(result_write)
        children.append((pid, result_read))
    os.write(start_write, b"g" * processes)
    total_count, longest = 0, 0.0
    for pid, result_read in children:
        count_text, elapsed_text = os.read(result_read, 100).decode().split()
        os.close(result_read)
        os.waitpid(pid, 0)
        total_count += int(count_text)
        longest = max(longest, float(elapsed_text))
    os.close(start_read)
    os.close(start_write)
    return total_count * size / longest


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
                "openssl 1": openssl_speed(size, 1),
                "openssl 2": openssl_speed(size, 2),
                "seal 1": throughput(seal_one, size, seconds, 1),
                "seal 2": throughput(seal_one, size, seconds, 2),
                "seal 2 procs": throughput_in_processes(seal_one, size, seconds, 2),
                "open 1": throughput(open_one, size, seconds, 1),
                "open 2": throughput(open_one, size, seconds, 2),
            }
            for name, value in figures.items():
                best[name, size] = max(best.get((name, size), 0.0), value)
    return best


def fixed_costs() -> dict[str, float]:
    """Measure per-call times in microseconds, best of 30 repeats: fixed costs and a seal."""
    key = crypto.derive_subkeys(crypto.MasterKey.generate()).chunk
    raw_key, nonce = os.urandom(32), os.urandom(12)
    block = os.urandom(TARGET_SIZE)

    def gcm_setup() -> None:
        cipher = AES.new(raw_key, AES.MODE_GCM, nonce=nonce, mac_len=16)
        cipher.update(ASSOCIATED_DATA)
        cipher.encrypt_and_digest(b"")

    cases: dict[str, Callable[[], object]] = {
        "pycryptodome AES-GCM object, update and digest of 0 bytes": gcm_setup,
        "crypto.seal of 0 bytes": lambda: crypto.seal(key, b"", ASSOCIATED_DATA),
        f"crypto.seal of {TARGET_SIZE // 1024} KiB": lambda: crypto.seal(
            key, block, ASSOCIATED_DATA
        ),
    }
    return {
        name: min(timeit.repeat(case, number=20, repeat=30)) / 20 * 1e6
        for name, case in cases.items()
    }


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
        "| open 2 threads | open 2/1 | seal 2 procs | procs 2/1 |"
    )
    print("| ---: " * 13 + "|")
    for size in SIZES:
        openssl_one = best["openssl 1", size]
        seal_one, open_one = best["seal 1", size], best["open 1", size]
        seal_two, open_two = best["seal 2", size], best["open 2", size]
        seal_procs = best["seal 2 procs", size]
        print(
            f"| {size // 1024} KiB | {openssl_one / gb:.2f} | {best['openssl 2', size] / gb:.2f} "
            f"| {seal_one / gb:.2f} | {seal_one / openssl_one:.2f} x "
            f"| {open_one / gb:.2f} | {open_one / openssl_one:.2f} x "
            f"| {seal_two / gb:.2f} | {seal_two / seal_one:.2f} x "
            f"| {open_two / gb:.2f} | {open_two / open_one:.2f} x "
            f"| {seal_procs / gb:.2f} | {seal_procs / seal_one:.2f} x |"
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
    parser.add_argument(
        "--seconds", type=float, default=0.25, help="seconds per crypto measurement"
    )
    parser.add_argument("--repeat", type=int, default=8, help="rounds; the best round counts")
    args = parser.parse_args()
    print(machine_description())
    print(f"command: {' '.join(sys.argv)} (seconds {args.seconds}, repeat {args.repeat})")
    print("figures in GB/s (10^9 bytes of plaintext per second, wall clock), best of the rounds")
    print()
    for name, microseconds in fixed_costs().items():
        print(f"{name}: {microseconds:.0f} us per call")
    print()
    best = measure(args.seconds, args.repeat)
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"load average after the run: {load}")
    print()
    report(best)


if __name__ == "__main__":
    main()
