"""Every output a command writes, written one way: checked first, built in a temporary sibling, renamed into place.

Kinds of output folder are recognised by their marker file (KINDS). Rules, each a RobertaInferError (one line,
exit 2) raised before anything is written:
- a file where a folder is expected, a folder where a file is expected, a path under a file: refused;
- an existing output of another kind (a prepared directory given as a bundle's --out, …), or a non-empty folder of
  no known kind: refused, whatever --force says;
- an existing output of the same kind: replaced only with `force` (the command's --force).
Work happens in a hidden sibling `.NAME.….tmp`, created with the user's umask (so a service account can read what
we write, unlike `tempfile`'s 0700), and is renamed over NAME only when complete; on any error it is removed, as
are parent folders created for it. Nothing partial is ever left at NAME; a writer killed mid-write leaves its
sibling, which `remove_leftovers` clears (`classify --resume` does).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import RobertaInferError

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


def describe(kind: str) -> str:
    """How messages name `kind`."""
    return KINDS[kind][1]


def check_dir(path: Path, kind: str, *, force: bool = False, flag: str = "--out") -> Path:
    """Refuse (RobertaInferError) to write the folder `path` as output of `kind` unless it is new, empty, or (with
    `force`) an output of the same kind; returns `path` as a Path."""
    path = Path(path)
    check_location(path, flag)
    if path.exists() and not path.is_dir():
        raise RobertaInferError(f"{flag} {path} is a file, but a folder is written there: give a new or empty folder")
    if path.is_dir() and any(path.iterdir()):
        found = kind_of(path)
        if found == kind:
            if not force:
                raise RobertaInferError(f"{flag} {path} already holds {describe(kind)}: add --force to replace it")
        elif found is not None:
            raise RobertaInferError(f"{flag} {path} is {describe(found)}, not {describe(kind)}: refusing to replace it; "
                                    "give a new or empty folder")
        else:
            raise RobertaInferError(f"{flag} {path} is a non-empty folder that is not {describe(kind)}: "
                                    "give a new or empty folder")
    return path


def check_file(path: Path, *, force: bool = False, flag: str = "--out") -> Path:
    """Refuse (RobertaInferError) to write the file `path` if it is a folder, lies under a file, is the marker file of
    an output folder (a bundle's manifest.json, …: replacing it would unmake that output, whatever `force` says), or
    exists and `force` is not given; returns `path` as a Path."""
    path = Path(path)
    check_location(path, flag)
    if path.is_dir():
        raise RobertaInferError(f"{flag} {path} is a folder, but a file is written there: give a file name")
    found = kind_of(path.parent)
    if path.is_file() and found is not None and path.name == KINDS[found][0]:
        raise RobertaInferError(f"{flag} {path} is the {path.name} of {describe(found)} in {path.parent}: refusing to "
                                "replace it; give another file name")
    if path.exists() and not force:
        raise RobertaInferError(f"{flag} {path} exists: add --force to replace it")
    return path


@contextmanager
def output_dir(path: Path, kind: str, *, force: bool = False, flag: str = "--out") -> Iterator[Path]:
    """Yield a new empty folder beside `path` to fill; on normal exit it replaces `path`, on an exception it and any
    parent folders made for it are removed and `path` is untouched. Checked first with `check_dir`."""
    path = check_dir(path, kind, force=force, flag=flag)
    made = _make_parents(path)
    tmp = _sibling(path, "tmp")
    try:
        os.mkdir(tmp)  # mode 0777 & ~umask, as any folder the user makes
        yield tmp
        _swap(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
        raise


@contextmanager
def output_file(path: Path, *, force: bool = False, flag: str = "--out") -> Iterator[Path]:
    """Yield a path beside `path` to write; on normal exit it is renamed over `path`, on an exception removed (with
    any parent folders made for it). Checked first with `check_file`."""
    path = check_file(path, force=force, flag=flag)
    made = _make_parents(path)
    tmp = _sibling(path, "tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
        raise


def write_text(path: Path, text: str, *, force: bool = False, flag: str = "--out") -> None:
    """`text` (UTF-8) into the file `path` through `output_file`."""
    with output_file(path, force=force, flag=flag) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(document: dict, path: Path, *, force: bool = False, flag: str = "--json") -> None:
    """`document` as indented JSON (2 spaces, a final newline) at `path`, through `write_text`."""
    write_text(path, json.dumps(document, indent=2) + "\n", force=force, flag=flag)


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
