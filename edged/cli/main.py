"""`edged` entry point: builds the parser from the subcommand modules and runs the chosen one."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Sequence

from edged import __version__

# One OpenBLAS thread, set before anything imports numpy: llama.cpp's threads need every core, an idle OpenBLAS
# worker still spins now and then (measured: ~2.5% of a decode), and spaCy's NER is faster on one thread
# (docs/sovereignty.md). An operator's own setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# Each module has `register(subparsers)`, which adds its parser and sets `func(args) -> int`.
COMMAND_MODULES = (
    "edged.cli.serve",
    "edged.cli.ask",
    "edged.cli.status",
    "edged.cli.models",
    "edged.cli.check_config",
    "edged.cli.audit",
    "edged.cli.eval",
    "edged.cli.calibrate",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edged", description="Edge hybrid inference daemon.")
    parser.add_argument("--version", action="version", version=f"edged {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        sys.stdout.flush()  # here, where a closed pipe can be handled, not at interpreter exit
    except BrokenPipeError:
        # the reader left (`edged status | head`): say nothing more; stdout goes to /dev/null so the flush at
        # exit does not raise again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        # Die of SIGINT rather than exit 130, so a shell script running this command stops too (bash only acts
        # on Ctrl-C itself when its foreground child was killed by the signal).
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
