"""A full disk while writing: one line naming the output (exit 2), nothing partial left, earlier outputs and a job's
finished shards intact, and `classify --resume` finishing once space is freed.

The disk is a small tmpfs mounted for each test (root only: where mounting is not allowed the tests are skipped,
saying why), filled with a filler file to leave a chosen number of bytes free; the filler is deleted to free space.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from roberta_infer import cli

PAGE = os.sysconf("SC_PAGE_SIZE")  # tmpfs allocates whole pages


@pytest.fixture()
def small_disk(tmp_path) -> Path:
    """An empty 4 MiB tmpfs mounted at tmp_path/disk for the test (unmounted after)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (a full disk cannot be made otherwise)")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"this machine does not allow mounting a tmpfs: {mounted.stderr.strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


def fill(disk: Path, free: int = 0) -> Path:
    """A filler file leaving about `free` bytes (whole pages) of `disk` free; returns it."""
    filler = disk / "filler"
    stats = os.statvfs(disk)
    size = stats.f_bavail * stats.f_frsize - free
    with open(filler, "wb") as f:
        f.truncate(0)
        f.write(b"\0" * max(size, 0))
    return filler


def pages(size: int) -> int:
    return -(-size // PAGE) * PAGE


def one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith(("warning:", "·"))]
    assert len(err) == 1, err
    return err[0]


def texts_file(tmp_path: Path, count: int) -> Path:
    source = tmp_path / "texts.txt"
    source.write_text("".join(f"sentence number {i} is {'good' if i % 2 else 'bad'} and rather long too\n"
                              for i in range(count)))
    return source


def test_predict_output_on_a_full_disk(small_disk, hf_bundle, tmp_path, capsys):
    """predict --output: exit 2, one line naming the file; no file or temporary left; with --force the earlier
    output stays as it was."""
    source = texts_file(tmp_path, 200)
    out = small_disk / "predictions.jsonl"
    args = ["predict", "--model", str(hf_bundle), "--input", str(source), "--output", str(out), "--threads", "1"]
    fill(small_disk)
    assert cli.main(args) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"error: --output {out}: no space left on device")
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]
    (small_disk / "filler").unlink()
    out.write_text("earlier\n")
    fill(small_disk)
    assert cli.main([*args, "--force"]) == 2
    assert str(out) in one_error_line(capsys)
    assert out.read_text() == "earlier\n"
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "predictions.jsonl"]


def test_export_out_on_a_full_disk(small_disk, hf_model, capsys):
    """export --out: exit 2, one line naming the bundle folder; neither it nor its temporary sibling left."""
    out = small_disk / "bundle"
    fill(small_disk, free=64 * 1024)
    assert cli.main(["export", "--model", str(hf_model), "--out", str(out), "--threads", "1"]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"error: --out {out}: no space left on device"), line
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]


def shard_rows(out: Path) -> dict[str, dict]:
    return {row["id"]: row for path in sorted(out.glob("part-*.jsonl")) for row in map(json.loads, path.open())}


def test_classify_on_a_full_disk_keeps_its_shards_and_resumes(small_disk, hf_bundle, tmp_path, capsys):
    """classify --output on a disk with room for the first of 3 shards: exit 2, one line naming the second shard and
    saying --resume; the first shard byte for byte as a run with room writes it, no temporary left; once the filler
    is deleted --resume writes the rest and every row matches the run with room."""
    source = texts_file(tmp_path, 600)
    options = ["--model", str(hf_bundle), "--input", str(source), "--shard-size", "200", "--format", "jsonl",
               "--threads-per-worker", "1"]
    roomy = tmp_path / "roomy"
    assert cli.main(["classify", *options, "--output", str(roomy)]) == 0
    first = (roomy / "part-00000-000000.jsonl").read_bytes()
    second = (roomy / "part-00000-000001.jsonl").stat().st_size
    job = (roomy / "_JOB.json").stat().st_size
    assert second > 4 * PAGE, "the shards must be bigger than the slack below"
    out = small_disk / "out"
    # room for _JOB.json, _LOCK, the first shard and half the second (and a folder's page or two)
    filler = fill(small_disk, free=pages(job) + PAGE + pages(len(first)) + 2 * PAGE + second // 2)
    capsys.readouterr()
    assert cli.main(["classify", *options, "--output", str(out)]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"error: --output {out / 'part-00000-000001.jsonl'}: no space left on device"), line
    assert "--resume" in line
    assert sorted(p.name for p in out.iterdir()) == ["_JOB.json", "part-00000-000000.jsonl"]
    assert (out / "part-00000-000000.jsonl").read_bytes() == first
    filler.unlink()
    assert cli.main(["classify", *options, "--output", str(out), "--resume"]) == 0
    rows, expected = shard_rows(out), shard_rows(roomy)
    assert sorted(rows) == sorted(expected) and len(rows) == 600
    for key, row in rows.items():
        assert row["label"] == expected[key]["label"]
        np.testing.assert_allclose(row["logits"], expected[key]["logits"], atol=1e-5)
    assert json.loads((out / "_SUCCESS").read_text())["records"] == 600


def test_a_full_device_as_output_is_named(hf_bundle, tmp_path, capsys):
    """--output /dev/full (a device: written into, every write ENOSPC): one line naming it, exit 2."""
    if not Path("/dev/full").exists():
        pytest.skip("this machine has no /dev/full")
    source = texts_file(tmp_path, 5)
    assert cli.main(["predict", "--model", str(hf_bundle), "--input", str(source), "--output", "/dev/full"]) == 2
    assert one_error_line(capsys).startswith("error: --output /dev/full: no space left on device")
