"""Every output a command writes, written one way: checked first, built in a temporary sibling, renamed into place.

Kinds of output folder are recognised by their marker file (KINDS). Rules, each a RobertaInferError (one line,
exit 2) raised before anything is written:
- a file where a folder is expected, a folder where a file is expected, a path under a file: refused;
- an existing output of another kind (a prepared directory given as a bundle's --out, …), or a non-empty folder of
  no known kind: refused, whatever --force says;
- an existing output of the same kind: replaced only with `force` (the command's --force), and never when it holds
  another output somewhere inside (`enclosing_kind`);
- an output file that is the command's own input, or lies inside an output folder of any kind (a bundle's
  model.onnx, a prepared directory's labels.npy, …) other than the one the command itself adds it to (`own`), and
  an output folder inside another output: refused, whatever --force says. "Inside" is at any depth
  (`artifact_holding`): the folder a file goes in is judged by its marker, every folder above by its marker and a
  file such an output always holds (SIGNATURES); a run work directory holds outputs of its own.
- a symbolic link is written through, its target checked the same way; a FIFO or device is written into as it is
  (a terminal, /dev/null, a named pipe: nothing is replaced).
Work happens in a hidden sibling `.NAME.….tmp`, created with the user's umask (so a service account can read what
we write, unlike `tempfile`'s 0700), and is renamed over NAME only when complete; on any error it is removed, as
are parent folders created for it; a full disk or quota (ENOSPC, EDQUOT) is then one NoSpaceError naming the output
(exit 2), earlier outputs untouched. Nothing partial is ever left at NAME; a writer killed mid-write leaves its
sibling, which `remove_leftovers` clears (`classify --resume` does), and which the next writer of the same NAME
sweeps (`sweep_dead`: a sibling whose writing process is gone) with a warning. The CLI turns SIGTERM and SIGHUP into
the same exception as Ctrl-C, so those clean up as any error does.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import shutil
import stat
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import NoSpaceError, RobertaInferError

# kind → (marker file, how the kind is named in messages); the first marker found names a folder's kind.
KINDS = {
    "bundle": ("manifest.json", "a bundle (written by `export`/`quantize`)"),
    "prepared": ("meta.json", "a prepared directory (written by `prepare`)"),
    "results": ("summary.json", "infer results (written by `infer`)"),
    "bench": ("bench.json", "bench results (written by `bench`)"),
    "run": ("report.json", "a run work directory (written by `run`)"),
    "classify": ("_SUCCESS", "classify output"),
    "model": ("training.json", "a trained model (written by `train`)"),
    "checkpoint": ("config.json", "a checkpoint folder"),
}
# The weights files a checkpoint folder holds, named once: fairseq's checkpoint names (`checkpoint.load_classifier`
# takes the first found), Hugging Face's single-file weights (safetensors preferred); a folder with any is "checkpoint".
FAIRSEQ_CHECKPOINTS = ("checkpoint.pt", "model.pt", "checkpoint_best.pt", "checkpoint_last.pt")
HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
CHECKPOINT_FILES = FAIRSEQ_CHECKPOINTS + HF_WEIGHTS
# kind → the sets of files (any one set, all its files) that make a folder that output when it holds other paths
# (`enclosing_kind`): a marker with a file every such output holds, since names such as summary.json or config.json
# alone are too common to judge every folder up to the root by. A classify job counts from its first file, _JOB.json.
# A run work directory is left out: it holds outputs of other kinds by design (its parts).
SIGNATURES = {
    "bundle": (("manifest.json", "model.onnx"), ("manifest.json", "model.xml")),
    "prepared": (("meta.json", "src_tokens.npy"), ("meta.json", "src_tokens")),
    "results": (("summary.json", "logits.npy"), ("summary.json", "src_tokens_0_0.bin")),
    "bench": (("bench.json", "bench.md"),),
    "classify": (("_JOB.json",), ("_SUCCESS",)),
    "model": (("training.json", "config.json"),),
    "checkpoint": tuple((name,) for name in CHECKPOINT_FILES),
}
# `--input`/`--output` name for standard input and output, as Unix tools spell it.
STDIO = "-"


def kind_of(path: Path) -> str | None:
    """The kind (a key of KINDS) of the folder `path` by its marker file; "checkpoint" also for a folder holding a
    fairseq/HF weights file; None for anything else (a file, a missing path, an unknown folder)."""
    path = Path(path)
    if not path.is_dir():
        return None
    for kind, (marker, _) in KINDS.items():
        if (path / marker).is_file():
            return kind
    if any((path / name).is_file() for name in CHECKPOINT_FILES):
        return "checkpoint"
    return None


def enclosing_kind(path: Path) -> str | None:
    """The kind (a key of SIGNATURES) of the folder `path` as one that holds other paths: the first whose files it
    all holds for one of its signatures; None for anything else (a run work directory included)."""
    path = Path(path)
    for kind, signatures in SIGNATURES.items():
        if any(all((path / name).exists() for name in names) for names in signatures):
            return kind
    return None


def describe(kind: str) -> str:
    """How messages name `kind`."""
    return KINDS[kind][1]


def check_dir(path: Path, kind: str, *, force: bool = False, flag: str = "--out") -> Path:
    """Refuse (RobertaInferError) to write the folder `path` as output of `kind` unless it is new, empty, or (with
    `force`) an output of the same kind that holds no other output (`enclosing_kind`; a run work directory's parts
    are its own); and, whatever `force` says, inside another output (`artifact_holding`). Returns `path` as a Path."""
    path = Path(path)
    check_location(path, flag)
    if path.exists() and not path.is_dir():
        raise RobertaInferError(f"{flag} {path} is a file, but a folder is written there: give a new or empty folder")
    check_outside_outputs(path, flag)
    if path.is_dir() and any(path.iterdir()):
        found = kind_of(path)
        if found == kind:
            if not force:
                raise RobertaInferError(f"{flag} {path} already holds {describe(kind)}: add --force to replace it")
            inner = None if kind == "run" else next((p for p in sorted(path.rglob("*")) if p.is_dir() and enclosing_kind(p)),
                                                    None)
            if inner is not None:
                raise RobertaInferError(f"{flag} {path} holds {describe(enclosing_kind(inner))} in {inner}: refusing to "
                                        "replace it, even with --force; move that out first")
        elif found is not None:
            raise RobertaInferError(f"{flag} {path} is {describe(found)}, not {describe(kind)}: refusing to replace it; "
                                    "give a new or empty folder")
        else:
            raise RobertaInferError(f"{flag} {path} is a non-empty folder that is not {describe(kind)}: "
                                    "give a new or empty folder")
    return path


def check_outside_outputs(path: Path, flag: str = "--out") -> None:
    """Refuse (RobertaInferError, whatever --force says) an output folder `path` inside another output, at any depth
    (`artifact_holding`)."""
    holder = artifact_holding(path, folder=True)
    if holder is not None:
        raise RobertaInferError(f"{flag} {path} is inside {describe(holder[0])} in {holder[1]}: refusing to write there, "
                                "even with --force; give a path outside that folder")


def check_file(path: Path, *, force: bool = False, flag: str = "--out", inputs: Iterable[Path | str] = (),
               own: Path | None = None) -> Path:
    """Refuse (RobertaInferError) to write the file `path` if it is a folder, lies under a file, is one of the
    command's `inputs` (the same file, by any name), goes in an output folder (`artifact_holding`: its marker file
    included — replacing it would unmake that output) other than `own`, the folder the command adds this file to —
    these whatever `force` says —, or exists and `force` is not given. A symbolic link is checked as its target, the
    file written; a FIFO or device (`is_stream`) needs no `force`: writing into it replaces nothing. Returns `path`
    as a Path."""
    path = Path(path)
    check_location(path, flag)
    target = written_path(path)
    if target.is_dir():
        raise RobertaInferError(f"{flag} {path} is a folder, but a file is written there: give a file name")
    if is_stream(target):
        return path
    named = f"{path} (a link to {target})" if target != path else str(path)
    for source in inputs:
        if source != STDIO and target.exists() and Path(source).exists() and os.path.samefile(target, source):
            raise RobertaInferError(f"{flag} {named} is this command's input {source}: refusing to overwrite it, even "
                                    "with --force; give another file name")
    holder = artifact_holding(target, own)
    if holder is not None:
        kind, folder = holder
        what = f"the {target.name} of" if target.parent.resolve() == folder and target.name == KINDS[kind][0] else "inside"
        raise RobertaInferError(f"{flag} {named} is {what} {describe(kind)} in {folder}: refusing to "
                                f"{'replace' if target.exists() else 'write'} it, even with --force; "
                                "give a path outside that folder")
    if target.exists() and not force:
        raise RobertaInferError(f"{flag} {named} exists: add --force to replace it")
    return path


def written_path(path: Path) -> Path:
    """The file a write to `path` changes: `path` itself, or for a symbolic link (chains followed) its target."""
    return Path(os.path.realpath(path)) if Path(path).is_symlink() else Path(path)


def is_stream(path: Path) -> bool:
    """Whether `path` exists and is a FIFO or a character/block device (written into, never replaced)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode)


def artifact_holding(path: Path, own: Path | None = None, *, folder: bool = False) -> tuple[str, Path] | None:
    """(kind, folder) of the output folder `path` would go inside, at any depth: for a file, the folder it goes in
    by its marker (`kind_of`), for a `folder` output by `enclosing_kind` (a run work directory's parts are outputs of
    their own); every folder above by `enclosing_kind`. None when there is none below `own` (the folder the command
    adds this file to) or one being built (`output_dir`'s hidden sibling), or none at all."""
    parent = Path(path).absolute().parent.resolve()  # where it really goes: `..` and links followed
    for ancestor in (parent, *parent.parents):
        building = ancestor.name.startswith(".") and ancestor.name.endswith(".tmp")  # `output_dir`'s sibling
        if building or (own is not None and ancestor.resolve() == Path(own).resolve()):
            return None
        kind = kind_of(ancestor) if ancestor == parent and not folder else enclosing_kind(ancestor)
        if kind is not None:
            return kind, ancestor
    return None


@contextmanager
def output_dir(path: Path, kind: str, *, force: bool = False, flag: str = "--out") -> Iterator[Path]:
    """Yield a new empty folder beside `path` to fill; on normal exit it replaces `path`, on an exception it and any
    parent folders made for it are removed and `path` is untouched. Checked first with `check_dir`."""
    path = check_dir(path, kind, force=force, flag=flag)
    sweep_dead(path)
    made = _make_parents(path)
    tmp = _sibling(path, "tmp")
    try:
        os.mkdir(tmp)  # mode 0777 & ~umask, as any folder the user makes
        yield tmp
        _swap(tmp, path)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
        _raise_if_full(e, path, flag)
        raise


@contextmanager
def output_file(path: Path, *, force: bool = False, flag: str = "--out", inputs: Iterable[Path | str] = (),
                own: Path | None = None) -> Iterator[Path]:
    """Yield a path beside `path` to write; on normal exit it is renamed over `path` (over a symbolic link's target,
    the link kept), on an exception removed (with any parent folders made for it). A FIFO or device is yielded
    itself, to write into. Checked first with `check_file` (`inputs`, `own`: see there)."""
    path = written_path(check_file(path, force=force, flag=flag, inputs=inputs, own=own))
    if is_stream(path):
        try:
            yield path
        except OSError as e:
            _raise_if_full(e, path, flag, streamed=True)
            raise
        return
    sweep_dead(path)
    made = _make_parents(path)
    tmp = _sibling(path, "tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
        _raise_if_full(e, path, flag)
        raise


def _raise_if_full(error: BaseException, path: Path, flag: str, *, streamed: bool = False) -> None:
    """Raise NoSpaceError naming the output `path` (`flag` as the user gave it) for an `error` that is a full disk or
    quota (OSError ENOSPC / EDQUOT: Python's and pyarrow's); return for any other error, which the caller re-raises.
    Called once the temporary sibling is removed, so the message can say nothing was left (not for a `streamed`
    output, a FIFO or device such as /dev/full, written into directly)."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        left = "" if streamed else "nothing partial left there; "
        raise NoSpaceError(f"{flag} {path}: no space left on device while writing it ({left}free some space and run "
                           "the command again)") from error


def write_text(path: Path, text: str, *, force: bool = False, flag: str = "--out", own: Path | None = None) -> None:
    """`text` (UTF-8) into the file `path` through `output_file` (`own`: see `check_file`)."""
    with output_file(path, force=force, flag=flag, own=own) as tmp:
        tmp.write_text(text, encoding="utf-8")


# JSON leaves these raw in ensure_ascii=False output, yet str.splitlines() and JavaScript's line readers break on them
LINE_BREAKS_IN_JSON = str.maketrans({"\u2028": "\\u2028", "\u2029": "\\u2029", "\u0085": "\\u0085"})


def jsonl_line(record: dict, **options) -> str:
    """`record` as one JSON Lines line (UTF-8 text kept as it is, newline-terminated) that every line splitter reads
    as one line: U+2028, U+2029 and U+0085, which JSON allows raw, written as escapes (JSON Lines, jsonlines.org).
    `options` go to `json.dumps` (e.g. `default=str`)."""
    return json.dumps(record, ensure_ascii=False, **options).translate(LINE_BREAKS_IN_JSON) + "\n"


def write_json(document: dict, path: Path, *, force: bool = False, flag: str = "--json", own: Path | None = None) -> None:
    """`document` as indented JSON (2 spaces, a final newline) at `path`, through `write_text`."""
    write_text(path, json.dumps(document, indent=2) + "\n", force=force, flag=flag, own=own)


def check_location(path: Path, flag: str = "--out") -> None:
    """Refuse (RobertaInferError) a `path` that cannot be created: its nearest existing ancestor is a file, or a
    folder we may not write in."""
    ancestor = path.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise RobertaInferError(f"{flag} {path}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise RobertaInferError(f"{flag} {path}: no permission to write in {ancestor}")


def _make_parents(path: Path) -> Path | None:
    """Create `path`'s missing parent folders; returns the topmost one created (None if all existed)."""
    missing = [p for p in path.absolute().parents if not p.exists()]
    if not missing:
        return None
    path.parent.mkdir(parents=True)
    return missing[-1]


def remove_leftovers(folder: Path) -> None:
    """Remove the temporary files (`.NAME.….tmp`) that writers killed before renaming them left in `folder`."""
    for leftover in Path(folder).glob(".*.tmp"):
        leftover.unlink()


def sweep_dead(path: Path) -> list[Path]:
    """Remove the temporary siblings of `path` (`.NAME.PID-….tmp`, file or folder) whose writing process PID no
    longer runs (a writer SIGKILLed or lost with its machine), each with a warning naming it; returns those removed.
    A sibling of a live process (another writer at work) is left alone."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    pattern = re.compile(re.escape(f".{path.name}.") + r"(\d+)-[0-9a-f]+\.tmp")
    removed = []
    for leftover in sorted(path.parent.iterdir()):
        match = pattern.fullmatch(leftover.name)
        if match is None or _alive(int(match.group(1))):
            continue
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
        warnings.warn(f"removed {leftover}, left by an earlier run writing {path} that was killed "
                      f"(process {match.group(1)} is gone)", stacklevel=2)
        removed.append(leftover)
    return removed


def _alive(pid: int) -> bool:
    """Whether process `pid` exists on this machine (one of another user's counts: signal 0 is refused, not absent)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sibling(path: Path, what: str) -> Path:
    """A hidden, unused name beside `path`, ending in `.what`."""
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.{what}")


def _swap(tmp: Path, path: Path) -> None:
    """Put the folder `tmp` at `path`, the folder there before (if any) removed only once the new one is in place."""
    if not path.exists():
        os.rename(tmp, path)
        return
    old = _sibling(path, "old")
    os.rename(path, old)
    try:
        os.rename(tmp, path)
    except BaseException:
        os.rename(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)
