"""The `raidd` command: the daemon and the offline commands."""

import argparse
import sys
from collections.abc import Sequence

from raidd import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raidd",
        description="Keep encrypted, versioned, redundant copies of data directories "
        "on a software RAID of block devices or image files.",
    )
    parser.add_argument("--version", action="version", version=f"raidd {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    parser.parse_args(argv)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
