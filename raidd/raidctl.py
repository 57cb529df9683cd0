"""The `raidctl` command: a client of the raidd control socket."""

import argparse
import sys
from collections.abc import Sequence

from raidd import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raidctl",
        description="Query and administer a running raidd daemon through its control socket.",
    )
    parser.add_argument("--version", action="version", version=f"raidctl {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    parser.parse_args(argv)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
