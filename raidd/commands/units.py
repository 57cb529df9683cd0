"""Parsing of sizes given on the command line: 65536, 64KiB, 64K, 16MiB, 1.5GiB, 1G, 1TB."""

from __future__ import annotations

import argparse
import re

_UNITS = {
    "": 1,
    "B": 1,
    "K": 1024,
    "KIB": 1024,
    "KB": 1000,
    "M": 1024**2,
    "MIB": 1024**2,
    "MB": 1000**2,
    "G": 1024**3,
    "GIB": 1024**3,
    "GB": 1000**3,
    "T": 1024**4,
    "TIB": 1024**4,
    "TB": 1000**4,
}


def parse_size(text: str) -> int:
    """Parse a byte count with an optional unit (K, KiB and M, MiB are powers of 1024).

    Raises:
        argparse.ArgumentTypeError: not a number with a known unit.
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    if match is None or match.group(2).upper() not in _UNITS:
        raise argparse.ArgumentTypeError(
            f"invalid size {text!r}: expected a number with an optional unit such as "
            "64KiB, 16MiB, 1.5GiB or 2GiB"
        )
    # fractions imports decimal (1.7 MB of extension module); only a size to parse needs it.
    from fractions import Fraction

    value = Fraction(match.group(1)) * _UNITS[match.group(2).upper()]
    if value.denominator != 1:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: not a whole number of bytes")
    return int(value)


def format_size(size: int) -> str:
    for unit, factor in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} bytes"
