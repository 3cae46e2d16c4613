"""The one exception type the CLI turns into a clean one-line error, and the "must be positive" check several stages share."""

from __future__ import annotations


class RobertaInferError(Exception):
    """Bad input or an unusable file: the message is shown to the user as is, without a traceback."""


class StdoutError(RobertaInferError):
    """Standard output refused a write (a full disk or device, an I/O error); not a closed pipe (BrokenPipeError),
    which ends a command quietly. The CLI points standard output at /dev/null after it, so nothing writes there again."""


class NoSpaceError(RobertaInferError):
    """The disk (or quota) filled up while an output was written (ENOSPC, EDQUOT): `outputs` raises it naming the
    output, its temporary file already removed; what was complete before (earlier outputs, a job's finished shards)
    is left intact, so the same command can be run again once space is freed."""


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP received (`signum`): raised by the CLI's handler where the signal arrives, so that the same
    clean-up as for Ctrl-C runs (every `outputs` writer removes its temporary sibling); exit status 128 + `signum`."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def check_positive(values: dict[str, float | None]) -> None:
    """Refuse (RobertaInferError "NAME must be positive, got V") the first value ≤ 0; None means "not given" and passes.
    Keys are the names messages use (a flag such as `--workers`, or words such as `batch size`)."""
    for name, value in values.items():
        if value is not None and value <= 0:
            raise RobertaInferError(f"{name} must be positive, got {value}")
