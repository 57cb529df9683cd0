"""The offline `raidd` commands, one module each, registered in raidd.cli.

Each module has `register(subparsers, common)` that adds its parser and
sets `run` to a function taking the parsed arguments and returning the exit
code. `common` is the parent parser of options every command accepts
(`--json`), so they work before or after the command name.
"""

__all__: list[str] = []
