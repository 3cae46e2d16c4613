"""The command line as a user meets it: --help everywhere, results on disk, and one-line errors with exit 2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SAVED_ENV

from roberta_infer.cli import build_parser, main
from roberta_infer.default import cache_root

COMMANDS = sorted(build_parser()._subparsers._group_actions[0].choices)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_explains_itself(command, capsys):
    assert main([command, "--help"]) == 0
    assert len(capsys.readouterr().out.splitlines()) > 5


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "roberta_infer.cli", "--help"], capture_output=True, text=True, check=True)
    assert "prepare" in out.stdout and "predict" in out.stdout


def test_the_suite_has_a_home_and_cache_of_its_own(pytestconfig):
    """conftest's home: this process and the ones it starts find the roberta-infer cache in it, not the user's."""
    home, saved = pytestconfig.stash[SAVED_ENV]
    assert Path(os.environ["HOME"]) == home and saved["HOME"] != str(home)
    child = subprocess.run([sys.executable, "-c", "from roberta_infer.default import cache_root; print(cache_root())"],
                           capture_output=True, text=True, check=True)
    assert Path(child.stdout.strip()) == cache_root() == home / ".cache" / "roberta-infer"


def test_prepare_and_predict(tmp_path, shared_data, hf_model, capsys):
    assert main(["prepare", "--data", str(shared_data), "--split", "dev", "--seq-len", "32",
                 "--model", str(hf_model), "--out", str(tmp_path / "prep"), "--layout", "per-sample"]) == 0
    meta = json.loads((tmp_path / "prep" / "meta.json").read_text())
    assert meta["n"] == 872 and meta["label_names"] == ["negative", "positive"] and meta["truncated"] > 0
    texts = tmp_path / "texts.txt"
    texts.write_text("a gorgeous film\n\nutterly dull\n", encoding="utf-8")
    assert main(["predict", "--model", str(hf_model), "--input", str(texts), "--output", str(tmp_path / "o.jsonl")]) == 2
    assert f"{texts} line 2: empty text" in capsys.readouterr().err  # nothing to classify: no made-up label
    texts.write_text("a gorgeous film\n!\nutterly dull\n", encoding="utf-8")
    assert main(["predict", "--model", str(hf_model), "--input", str(texts), "--output", str(tmp_path / "o.jsonl")]) == 0
    records = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert [r["text"] for r in records] == ["a gorgeous film", "!", "utterly dull"]


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_bad_inputs_give_one_line_errors(tmp_path, shared_data, hf_model, capsys):
    texts = tmp_path / "t.txt"
    texts.write_bytes(b"ok\n\xff not utf-8\n")
    assert main(["predict", "--model", str(hf_model), "--input", str(texts), "--output", str(tmp_path / "o.jsonl")]) == 2
    assert "line 2: not valid UTF-8" in _error_line(capsys)
    assert not (tmp_path / "o.jsonl").exists()
    for encoding in ("utf-16", "utf-16-be", "utf-16-le"):  # with a byte-order mark FF FE / FE FF, and without (NULs)
        texts.write_text("a gorgeous film\n", encoding=encoding)
        assert main(["predict", "--model", str(hf_model), "--input", str(texts), "--output", str(tmp_path / "o.jsonl")]) == 2
        assert "is UTF-16 text, not UTF-8: convert it to UTF-8" in _error_line(capsys)
        assert not (tmp_path / "o.jsonl").exists()
    texts.write_text("fine\n")
    assert main(["predict", "--model", str(tmp_path / "missing"), "--input", str(texts), "--output", str(tmp_path / "o")]) == 2
    assert "not found" in _error_line(capsys)
    args = ["prepare", "--data", str(shared_data), "--dict", str(shared_data / "gpt2_bpe" / "dict.txt"), "--out",
            str(tmp_path / "p")]
    assert main([*args, "--seq-len", "1"]) == 2
    assert "argument --seq-len: must be in [2, 65536], got 1" in _error_line(capsys)
    assert main(["prepare", "--data", str(shared_data), "--model", str(hf_model), "--seq-len", "500", "--out",
                 str(tmp_path / "p2")]) == 2
    assert "exceeds the model's 64 positions" in _error_line(capsys)
    assert main(["prepare", "--data", str(tmp_path), "--dict", str(shared_data / "gpt2_bpe" / "dict.txt"), "--out",
                 str(tmp_path / "p3")]) == 2
    assert "dev.tsv not found" in _error_line(capsys)


def test_windows_byte_order_mark_is_not_part_of_the_first_text(tmp_path, hf_model):
    plain, marked = tmp_path / "plain.txt", tmp_path / "bom.txt"
    plain.write_bytes(b"a gorgeous film\r\nutterly dull\r\n")
    marked.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    for path in (plain, marked):
        assert main(["predict", "--model", str(hf_model), "--input", str(path), "--output", str(path.with_suffix(".jsonl"))]) == 0
    without, with_bom = ([json.loads(line) for line in p.with_suffix(".jsonl").read_text().splitlines()] for p in (plain, marked))
    assert with_bom[0]["text"] == "a gorgeous film"
    assert with_bom == without  # same texts, same logits


def test_a_reader_that_stops_early_ends_it_quietly(tmp_path, hf_model):
    """`predict --output - | head -1`: no error line and no traceback once the reader has gone, exit 141 as SIGPIPE gives."""
    texts = tmp_path / "texts.txt"
    texts.write_text("a gorgeous film\n" * 20000)
    proc = subprocess.Popen([sys.executable, "-m", "roberta_infer.cli", "predict", "--model", str(hf_model),
                             "--input", str(texts), "--output", "-"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait() == 141
    assert json.loads(first)["text"] == "a gorgeous film"
    assert "error" not in stderr and "Traceback" not in stderr and "Exception" not in stderr


def test_a_full_standard_output_is_one_line(tmp_path, hf_model):
    """`predict --output - > /dev/full`: the write error named as such in one line, exit 2, not "internal"."""
    texts = tmp_path / "texts.txt"
    texts.write_text("a gorgeous film\nawful\n")
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "roberta_infer.cli", "predict", "--model", str(hf_model),
                               "--input", str(texts), "--output", "-"], stdout=full, stderr=subprocess.PIPE, text=True)
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == "error: cannot write to standard output: No space left on device"
    assert "internal" not in done.stderr and "Traceback" not in done.stderr and "Exception" not in done.stderr


def test_a_killed_writers_leftover_is_swept_by_the_next_run(tmp_path, shared_data, hf_model, capsys):
    """What a SIGKILLed `prepare --out prep` left (its hidden sibling, its process gone) is removed by the next
    `prepare --out prep`, which says so on stderr."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # its id now names no process
    leftover = tmp_path / f".prep.{child.pid}-0123abcd.tmp"
    (leftover / "src_tokens").mkdir(parents=True)
    (leftover / "src_tokens" / "src_tokens_0.bin").write_bytes(b"partial")
    capsys.readouterr()
    assert main(["prepare", "--data", str(shared_data), "--split", "dev", "--seq-len", "32", "--model", str(hf_model),
                 "--out", str(tmp_path / "prep")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prep"]
    assert f"warning: removed {leftover}, left by an earlier run" in capsys.readouterr().err


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_clean_up_as_ctrl_c_does(tmp_path, hf_model, signum):
    """`timeout` (SIGTERM) or a closed terminal (SIGHUP) stopping `export` mid-build: the hidden `.bundle.….tmp`
    being filled is removed, nothing is left at --out, one line on stderr, exit 128 + the signal's number."""
    err = tmp_path / "stderr.txt"
    with open(err, "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "roberta_infer.cli", "export", "--model", str(hf_model),
                                 "--out", str(tmp_path / "out" / "bundle")], stdout=subprocess.DEVNULL, stderr=stderr)
    building = []
    while not building and proc.poll() is None:  # until the export is writing its temporary sibling
        building = list((tmp_path / "out").glob(".bundle.*.tmp")) if (tmp_path / "out").is_dir() else []
        time.sleep(0.01)
    assert building, f"the export ended ({proc.returncode}) before its temporary folder was seen"
    proc.send_signal(signum)
    assert proc.wait() == 128 + signum
    assert list(tmp_path.iterdir()) == [err], "no temporary sibling, no bundle, no parent folder made for it"
    lines = err.read_text().splitlines()
    assert lines[-1] == f"error: terminated ({signal.Signals(signum).name})"
    assert not any("Traceback" in line for line in lines)


def test_a_table_into_a_closed_pipe_ends_it_quietly(tmp_path, hf_model, shared_data):
    """evaluate's Rich tables into a reader that has already gone: the same quiet 141, not Rich's silent exit 1."""
    assert main(["prepare", "--data", str(shared_data), "--split", "dev", "--seq-len", "32",
                 "--model", str(hf_model), "--out", str(tmp_path / "prep")]) == 0
    assert main(["export", "--model", str(hf_model), "--out", str(tmp_path / "bundle")]) == 0
    assert main(["infer", "--model", str(tmp_path / "bundle"), "--input", str(tmp_path / "prep"), "--out",
                 str(tmp_path / "res")]) == 0
    proc = subprocess.Popen([sys.executable, "-m", "roberta_infer.cli", "evaluate", "--results", str(tmp_path / "res"),
                             "--labels", str(tmp_path / "prep")], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # before it writes anything: its first write meets a closed pipe
    stderr = proc.stderr.read().decode()
    assert proc.wait() == 141
    assert "error" not in stderr and "Traceback" not in stderr
