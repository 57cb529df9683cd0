"""`raidd serve`: run the daemon for one array until SIGTERM."""

from __future__ import annotations

import argparse
from pathlib import Path

import structlog

from raidd import logsetup
from raidd.config import DEFAULT_CONFIG_PATH, load_config
from raidd.errors import RaiddError

log = structlog.get_logger(__name__)


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "serve",
        parents=[common],
        help="run the daemon: watch, back up, serve the control socket",
        description="Assemble the configured array, watch its roots and serve the control "
        "socket until SIGTERM. SIGHUP reloads the configuration.",
    )
    parser.add_argument("--socket", type=Path, help="control socket path; wins over [control]")
    parser.add_argument(
        "--state-dir", type=Path, help="state directory; wins over [state] directory"
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=sorted(logsetup.LEVELS, key=logsetup.LEVELS.__getitem__),
        help="lowest level logged (default info)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # Imported here, so that the offline commands do not load the daemon (watchdog, pyudev).
    from raidd.daemon.service import Daemon, Overrides

    logsetup.configure(level=args.log_level)
    # --config comes from the options every raidd command shares.
    config_path = Path(getattr(args, "config", DEFAULT_CONFIG_PATH))
    log.info("daemon_starting", config=str(config_path))
    try:
        config = load_config(config_path)
        daemon = Daemon(config, overrides=Overrides(args.socket, args.state_dir))
        daemon.start()
    except RaiddError as error:
        log.error("daemon_start_failed", error=str(error), exit_code=error.exit_code)
        raise
    return daemon.run()
