"""The top-level error handler of the `raidd` and `raidctl` commands.

Every error ends as one line on stderr and an exit code from
raidd.errors. With `--json`, the same error is also printed to stdout as
`{"error": {"message": ..., "exit_code": ...}}`, so a script that parses
stdout sees it. An exception that raidd does not raise on purpose is a
bug: it is reported as an unexpected error in one line, and its traceback
is printed only when the environment sets RAIDD_DEBUG=1. Usage errors
that argparse finds take the same way (`CommandParser`, `report_arguments_error`).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import crypto
from raidd.errors import EXIT_INTERRUPTED, EXIT_USAGE, RaiddError, UsageError

__all__ = [
    "DEBUG_VARIABLE",
    "EXIT_BROKEN_PIPE",
    "ArgumentsError",
    "CommandParser",
    "report_arguments_error",
    "run_command",
]

DEBUG_VARIABLE = "RAIDD_DEBUG"
# What a shell reports for a program killed by SIGPIPE, as `cat big | head` does.
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE


class ArgumentsError(UsageError):
    """A command line that argparse rejected; `program` is the (sub)command's name."""

    def __init__(self, program: str, message: str) -> None:
        super().__init__(message)
        self.program = program


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser that raises ArgumentsError instead of exiting on a usage error.

    Its subparsers are CommandParsers too (argparse makes them of the
    parser's own class), so every usage error reaches the caller, which
    reports it with `report_arguments_error`.
    """

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        raise ArgumentsError(self.prog, message)


def report_arguments_error(error: ArgumentsError, argv: Sequence[str] | None) -> int:
    """Report a usage error as every other error: on stderr, and as JSON with `--json`.

    The arguments were not parsed, so `--json` counts wherever it appears
    before a `--`, as argparse would have taken it.
    """
    words = list(sys.argv[1:] if argv is None else argv)
    options = words[: words.index("--")] if "--" in words else words
    return _report(error.program, "--json" in options, str(error), error.exit_code, {})


def run_command(
    program: str,
    json_output: bool,
    run: Callable[[], int],
    *,
    reply_source: Callable[[], str | None] | None = None,
    always_traceback: bool = False,
) -> int:
    """Call `run` and turn the exceptions it raises into one line and an exit code.

    Args:
        program: the command as it prefixes messages (`raidctl status`).
        json_output: also print the error as a JSON object to stdout.
        run: the command itself; it returns its exit code.
        reply_source: for raidctl, returns the socket that sent a reply to
            `run`, or None before any reply. A KeyError, TypeError or
            IndexError raised after a reply is reported as an unexpected
            reply from that socket.
        always_traceback: print the traceback of an unexpected error even
            without RAIDD_DEBUG (the daemon, whose log is read afterwards).
    """
    debug = always_traceback or os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")
    try:
        return int(run())
    except BrokenPipeError:
        return _broken_pipe()
    except KeyboardInterrupt:
        print(f"{program}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except RaiddError as error:
        return _report(program, json_output, str(error), error.exit_code, _remote_fields(error))
    except crypto.CryptoError as error:
        return _report(program, json_output, str(error), EXIT_USAGE, {})
    except OSError as error:
        _debug_traceback(debug)
        return _report(program, json_output, _describe_os_error(error), EXIT_USAGE, {})
    except (KeyError, TypeError, IndexError) as error:
        source = reply_source() if reply_source is not None else None
        if source is None:
            return _unexpected(program, json_output, error, debug)
        _debug_traceback(debug)
        message = (
            f"unexpected reply from {source} ({type(error).__name__}: {error}); "
            "the daemon may run another version of raidd: compare `raidd --version`"
        )
        return _report(program, json_output, message, EXIT_USAGE, {})
    except Exception as error:
        return _unexpected(program, json_output, error, debug)


def _broken_pipe() -> int:
    # The reader of stdout went away (`raidd snapshots | head`). Later writes,
    # the interpreter's final flush included, go to /dev/null, so that Python
    # prints no second error.
    try:
        stdout = sys.stdout.fileno()
    except (OSError, ValueError):
        # A stdout without a descriptor (replaced by a test) needs no redirection.
        return EXIT_BROKEN_PIPE
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, stdout)
    os.close(devnull)
    return EXIT_BROKEN_PIPE


def _describe_os_error(error: OSError) -> str:
    text = error.strerror or str(error)
    if error.filename is not None:
        text = f"{os.fsdecode(error.filename)}: {text}"
    if error.filename2 is not None:
        text += f" (and {os.fsdecode(error.filename2)})"
    return text


def _unexpected(program: str, json_output: bool, error: BaseException, debug: bool) -> int:
    _debug_traceback(debug)
    hint = "" if debug else f"; set {DEBUG_VARIABLE}=1 to print the traceback"
    message = f"unexpected error, probably a bug in raidd: {type(error).__name__}: {error}{hint}"
    return _report(program, json_output, message, EXIT_USAGE, {})


def _remote_fields(error: RaiddError) -> dict[str, Any]:
    # A RemoteError (raidd.control.client) carries the daemon's JSON-RPC code and data.
    fields: dict[str, Any] = {}
    code = getattr(error, "code", None)
    if isinstance(code, int):
        fields["code"] = code
    data = getattr(error, "data", None)
    if data is not None:
        fields["data"] = data
    return fields


def _report(
    program: str, json_output: bool, message: str, exit_code: int, fields: dict[str, Any]
) -> int:
    print(f"{program}: {message}", file=sys.stderr)
    if json_output:
        document = {"error": {"message": message, "exit_code": exit_code, **fields}}
        try:
            print(json.dumps(document, indent=2), flush=True)
        except BrokenPipeError:
            _broken_pipe()
    return exit_code


def _debug_traceback(debug: bool) -> None:
    if debug:
        traceback.print_exc(file=sys.stderr)
