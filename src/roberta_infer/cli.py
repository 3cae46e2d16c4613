"""`roberta-infer`: a thin command line over the pipeline's stages (one module each in `commands/`); every failure is
one line on stderr and exit status 2 (1 for a bug, with ROBERTA_INFER_DEBUG=1 for its traceback); a closed output pipe
ends it silently with 141, as SIGPIPE ends other Unix tools. Ctrl-C (SIGINT), SIGTERM (what `timeout` and `kill`
send) and SIGHUP (a closed terminal) stop it the same way: temporary outputs removed, one line on stderr, exit status
128 + the signal's number (130, 143, 129)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import traceback
import warnings

from .commands import COMMANDS
from .commands.args import formatter
from .errors import RobertaInferError, StdoutError, Terminated
from .version import __version__

REFERENCE = "Reproduces Huawei's Ascend ModelZoo RoBERTa/SST-2 inference guide on ONNX Runtime."


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error on one line (it prints the whole usage block otherwise); still exit status 2."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="roberta-infer",
        description=f"RoBERTa sentence classification on SST-2, from checkpoint to fast inference.\n{REFERENCE}",
        formatter_class=formatter,
    )
    parser.add_argument("--version", action="version", version=f"roberta-infer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one `warning: …` line on stderr, without the source location (installed for main's run only)."""
    print(f"warning: {message}", file=sys.stderr if file is None else file)


# Signals that end the command as Ctrl-C does (their handlers installed for main's run only).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _terminate(signum, frame) -> None:
    """Stop as Ctrl-C does; a second SIGTERM/SIGHUP (`timeout` or a supervisor insisting) must not cut the clean-up
    short, so both are ignored from here on (main restores the caller's handlers)."""
    for stop in STOP_SIGNALS:
        signal.signal(stop, signal.SIG_IGN)
    raise Terminated(signum)


def main(argv: list[str] | None = None) -> int:
    with warnings.catch_warnings():  # restores the caller's warnings.showwarning afterwards
        warnings.showwarning = _show_warning
        if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
            return _main(argv)
        previous = {signum: signal.signal(signum, _terminate) for signum in STOP_SIGNALS}
        try:
            return _main(argv)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def _main(argv: list[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # a usage error (2, its one line printed), --help or --version (0)
        return e.code if isinstance(e.code, int) else 2
    try:
        args.func(args)
        sys.stdout.flush()  # a reader that went away shows here, inside the try, not at interpreter exit
    except BrokenPipeError:  # `… --output - | head`: the reader has what it wanted; stop quietly, as SIGPIPE would
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's own exit-time flush must not fail again
        return 128 + 13
    except RobertaInferError as e:
        if isinstance(e, StdoutError):  # a full disk under `> file`: Python's exit-time flush must not fail again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM / SIGHUP (`Terminated`); a command may add a hint as a note
        signum = e.signum if isinstance(e, Terminated) else signal.SIGINT
        hint = "".join(f"; {note}" for note in getattr(e, "__notes__", ()))
        print(f"error: {'interrupted' if signum == signal.SIGINT else 'terminated'} "
              f"({signal.Signals(signum).name}){hint}", file=sys.stderr)
        return 128 + signum
    except Exception as e:  # an unforeseen failure still gets one line unless asked for the traceback
        if os.environ.get("ROBERTA_INFER_DEBUG"):
            traceback.print_exc()
        print(f"error: internal {type(e).__name__}: {e} (set ROBERTA_INFER_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
