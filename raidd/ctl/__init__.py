"""raidctl's subcommands, one module per group of control methods.

Nouns:

- subcommand: one `raidctl` verb (`status`, `fail`, `scrub`, ...), which
  calls one or a few control methods.
- context (`Context`): the parsed options, the connection and the output
  mode (human text or `--json`) a subcommand runs with.

Each module has `register(subparsers, common)` that adds its parsers and
sets `run` to a function `run(context) -> exit code`.
"""

from raidd.ctl.common import Context, follow_job

__all__ = ["Context", "follow_job"]
