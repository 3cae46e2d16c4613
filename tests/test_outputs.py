"""outputs: checked, built beside, renamed into place, the user's umask, nothing partial left on any error."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from roberta_infer.errors import RobertaInferError
from roberta_infer.outputs import check_dir, check_file, kind_of, output_dir, output_file, write_text
from roberta_infer.predict import write_jsonl


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_folders_and_files_get_the_users_umask(tmp_path, umask_022):
    with output_dir(tmp_path / "bundle", "bundle") as tmp:
        (tmp / "manifest.json").write_text("{}")
        (tmp / "sub").mkdir()
    assert stat.S_IMODE((tmp_path / "bundle").stat().st_mode) == 0o755  # tempfile's folders would be 0700
    assert stat.S_IMODE((tmp_path / "bundle" / "manifest.json").stat().st_mode) == 0o644
    write_text(tmp_path / "x.json", "{}")
    assert stat.S_IMODE((tmp_path / "x.json").stat().st_mode) == 0o644


def test_an_error_leaves_nothing_behind(tmp_path):
    target = tmp_path / "new" / "deeper" / "out"
    with pytest.raises(ValueError), output_dir(target, "results") as tmp:
        (tmp / "summary.json").write_text("{}")
        raise ValueError("half-way")
    assert list(tmp_path.iterdir()) == [], "neither the folder, its temporary sibling nor the parents made for it"
    with pytest.raises(ValueError), output_file(tmp_path / "a" / "o.jsonl") as tmp:
        tmp.write_text("partial")
        raise ValueError("half-way")
    assert list(tmp_path.iterdir()) == []


def dead_pid() -> int:
    """The id of a process that has ended (a child started and reaped here)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_next_writer_sweeps_what_a_killed_one_left(tmp_path):
    """A SIGKILLed writer leaves its hidden sibling; the next write to the same name removes it, with a warning, and
    leaves a live process's sibling (another writer at work) and other names' siblings alone."""
    dead, alive = dead_pid(), os.getpid()
    left_dir = tmp_path / f".bundle.{dead}-0123abcd.tmp"
    left_dir.mkdir()
    (left_dir / "raw.onnx").write_bytes(b"x" * 1000)
    left_file = tmp_path / f".out.jsonl.{dead}-89abcdef.tmp"
    left_file.write_text("partial")
    working = tmp_path / f".bundle.{alive}-00000000.tmp"
    working.mkdir()
    other = tmp_path / f".other.{dead}-00000000.tmp"
    other.mkdir()
    with pytest.warns(UserWarning, match=f"removed .*{left_dir.name}.*process {dead} is gone"):
        with output_dir(tmp_path / "bundle", "bundle") as tmp:
            (tmp / "manifest.json").write_text("{}")
    with pytest.warns(UserWarning, match=f"removed .*{left_file.name}"):
        write_text(tmp_path / "out.jsonl", "done\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["bundle", "out.jsonl", working.name, other.name])


def test_an_error_while_replacing_keeps_the_old_output(tmp_path):
    out = tmp_path / "bench"
    out.mkdir()
    (out / "bench.json").write_text("old")
    with pytest.raises(ValueError), output_dir(out, "bench", force=True) as tmp:
        (tmp / "bench.json").write_text("new")
        raise ValueError("interrupted")
    assert (out / "bench.json").read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["bench"]


@pytest.mark.parametrize(("marker", "kind"), [("manifest.json", "bundle"), ("meta.json", "prepared"), ("summary.json", "results"),
                                              ("bench.json", "bench"), ("training.json", "model"), ("config.json", "checkpoint"),
                                              ("checkpoint.pt", "checkpoint"), ("report.json", "run")])
def test_kinds_by_marker(tmp_path, marker, kind):
    (tmp_path / marker).write_text("{}")
    assert kind_of(tmp_path) == kind


def test_refusals(tmp_path):
    (tmp_path / "f").write_text("x")
    (tmp_path / "prep").mkdir()
    (tmp_path / "prep" / "meta.json").write_text("{}")
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("mine")
    cases = [(lambda: check_dir(tmp_path / "f", "bundle"), "is a file"),
             (lambda: check_dir(tmp_path / "f" / "sub", "bundle"), "is a file, not a folder"),
             (lambda: check_dir(tmp_path / "prep", "bundle", force=True), "is a prepared directory"),
             (lambda: check_dir(tmp_path / "prep", "prepared"), "add --force"),
             (lambda: check_dir(tmp_path / "stuff", "results", force=True), "non-empty folder"),
             (lambda: check_file(tmp_path / "prep"), "is a folder"),
             (lambda: check_file(tmp_path / "f"), "add --force")]
    for check, message in cases:
        with pytest.raises(RobertaInferError, match=message):
            check()
    check_dir(tmp_path / "prep", "prepared", force=True)
    check_file(tmp_path / "f", force=True)


@pytest.mark.parametrize("marker", ["summary.json", "meta.json", "manifest.json"])
def test_force_never_replaces_the_marker_file_of_an_output_folder(tmp_path, marker):
    """`evaluate --json res/summary.json --force`, `predict --output prep/meta.json --force`: the folder would stop
    being what it is, so --force does not cover it; another file there (evaluation.json) is still replaceable."""
    folder = tmp_path / "artifact"
    folder.mkdir()
    (folder / marker).write_text("{}")
    (folder / "evaluation.json").write_text("{}")
    with pytest.raises(RobertaInferError, match=f"is the {marker} of .*refusing to replace it"):
        write_text(folder / marker, "replaced", force=True)
    assert (folder / marker).read_text() == "{}"
    with pytest.raises(RobertaInferError, match="is inside .*refusing to replace it, even with --force"):
        write_text(folder / "evaluation.json", "replaced", force=True)
    write_text(folder / "evaluation.json", "replaced", force=True, own=folder)  # the command adding its own file there
    assert (folder / "evaluation.json").read_text() == "replaced"


@pytest.mark.parametrize("marker", ["manifest.json", "meta.json", "summary.json", "training.json", "_SUCCESS"])
def test_nothing_is_written_inside_another_output_folder(tmp_path, marker):
    """`--output BUNDLE/model.onnx --force`, `evaluate --errors PREPARED/labels.npy --force`, a new file there too."""
    folder = tmp_path / "artifact"
    folder.mkdir()
    (folder / marker).write_text("{}")
    (folder / "labels.npy").write_bytes(b"data")
    for name in ("labels.npy", "new.jsonl"):
        with pytest.raises(RobertaInferError, match=f"artifact/{name} is inside .* in {folder}: refusing to"):
            write_text(folder / name, "replaced", force=True)
    assert (folder / "labels.npy").read_bytes() == b"data" and not (folder / "new.jsonl").exists()


# One folder of each kind as written (its marker and a file each such output holds), and how messages name it.
WRITTEN = {"bundle": ("manifest.json", "model.xml"), "prepared": ("meta.json", "src_tokens.npy"),
           "results": ("summary.json", "logits.npy"), "bench": ("bench.json", "bench.md"), "classify": ("_JOB.json",),
           "model": ("training.json", "config.json"), "checkpoint": ("pytorch_model.bin",)}


@pytest.mark.parametrize("kind", WRITTEN)
def test_nothing_is_written_anywhere_inside_another_output(tmp_path, kind):
    """A file or a folder two levels down inside an output of any kind (a classify job from its _JOB.json on):
    refused with --force, naming that output, nothing written."""
    folder = tmp_path / "artifact"
    (folder / "a" / "b").mkdir(parents=True)
    for name in WRITTEN[kind]:
        (folder / name).write_text("{}")
    before = sorted(folder.rglob("*"))
    for check in (lambda: write_text(folder / "a" / "b" / "x.json", "{}", force=True),
                  lambda: check_dir(folder / "a" / "b" / "out", "bundle", force=True),
                  lambda: check_dir(folder / "a" / "out", "results", force=True)):
        with pytest.raises(RobertaInferError, match=f"is inside .* in {folder}: refusing to write .*even with --force"):
            check()
    with pytest.raises(RobertaInferError, match=f"in {folder}: refusing"), output_dir(folder / "a" / "new", "bench"):
        pass
    assert sorted(folder.rglob("*")) == before
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link").symlink_to(folder / "a")
    with pytest.raises(RobertaInferError, match=f"in {folder}: refusing"):  # by a link into it
        check_dir(tmp_path / "link" / "out", "bundle")
    check_dir(folder / ".." / "elsewhere" / "out", "bundle")  # `..` out of it: outside
    write_text(folder / "a" / ".." / ".." / "elsewhere" / "x.json", "{}")


def test_a_marker_name_alone_above_is_no_output(tmp_path):
    """A project folder that happens to hold a summary.json or config.json, with nothing else of such an output, does
    not stop writing in its subfolders (those names are too common); a run work directory holds outputs of its
    own, which are replaced there with --force."""
    (tmp_path / "summary.json").write_text("{}")
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "runs").mkdir()
    write_text(tmp_path / "runs" / "x.json", "{}")
    check_dir(tmp_path / "runs" / "bundle", "bundle")
    run = tmp_path / "runs" / "run"
    (run / "bundle").mkdir(parents=True)
    (run / "report.json").write_text("{}")
    for name in WRITTEN["bundle"]:
        (run / "bundle" / name).write_text("{}")
    check_dir(run / "bundle", "bundle", force=True)
    check_dir(run, "run", force=True)


def test_force_does_not_replace_an_output_holding_another(tmp_path):
    """`export --out B --force` where B, a bundle, holds a prepared directory somewhere inside: refused, naming it."""
    bundle = tmp_path / "bundle"
    (bundle / "extra" / "prep").mkdir(parents=True)
    for name in WRITTEN["bundle"]:
        (bundle / name).write_text("{}")
    for name in WRITTEN["prepared"]:
        (bundle / "extra" / "prep" / name).write_text("{}")
    with pytest.raises(RobertaInferError, match=f"holds a prepared directory .* in {bundle / 'extra' / 'prep'}: refusing"):
        check_dir(bundle, "bundle", force=True)
    (bundle / "extra" / "prep" / "meta.json").unlink()  # no longer prepared data: replaceable
    check_dir(bundle, "bundle", force=True)


def test_an_output_never_replaces_the_commands_input(tmp_path):
    source = tmp_path / "texts.txt"
    source.write_text("mine\n")
    (tmp_path / "alias.txt").symlink_to(source)
    for name in ("texts.txt", "alias.txt"):
        with pytest.raises(RobertaInferError, match="is this command's input .*even with --force"):
            check_file(tmp_path / name, force=True, inputs=[source])
    assert source.read_text() == "mine\n"


def test_fifos_and_devices_are_written_into_and_links_through(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader waiting, as `cat pipe` would be
    try:
        write_text(fifo, "through the pipe\n")  # no --force needed: nothing is replaced
        assert os.read(reader, 100) == b"through the pipe\n"
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode), "still a FIFO, not replaced by a regular file"
    write_text("/dev/null", "discarded")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)

    target, link = tmp_path / "real.json", tmp_path / "link.json"
    target.write_text("old")
    link.symlink_to(target)
    with pytest.raises(RobertaInferError, match="link.json \\(a link to .*real.json\\) exists: add --force"):
        write_text(link, "new")
    write_text(link, "new", force=True)
    assert link.is_symlink() and target.read_text() == "new"
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "manifest.json").write_text("{}")
    (bundle / "model.onnx").write_bytes(b"graph")
    (tmp_path / "innocent.onnx").symlink_to(bundle / "model.onnx")
    with pytest.raises(RobertaInferError, match="a link to .*bundle/model.onnx\\) is inside a bundle"):
        write_text(tmp_path / "innocent.onnx", "x", force=True)
    assert (bundle / "model.onnx").read_bytes() == b"graph"


def test_jsonl_lines_escape_the_line_breaks_json_leaves_raw(tmp_path):
    """U+2028, U+2029 and U+0085 are valid raw in JSON, yet line splitters (str.splitlines, JavaScript) break on them."""
    records = [{"text": "one\u2028two\u2029three\u0085four é 😀", "label": "positive"}, {"text": "plain"}]
    write_jsonl(records, tmp_path / "out.jsonl")
    written = (tmp_path / "out.jsonl").read_text(encoding="utf-8")
    assert written.splitlines() == [
        '{"text": "one\\u2028two\\u2029three\\u0085four é 😀", "label": "positive"}', '{"text": "plain"}']
    assert [json.loads(line) for line in written.splitlines()] == records
