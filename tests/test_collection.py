"""`classify` over mixed collections: a real 3-node Ray cluster on loopback, a killed actor, resume, bad input.

Expected rows come from `predict.predict` on the same texts (one call over all of them, batched differently from
the job's shards), ids from how the test wrote its files.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_hf_model

from roberta_infer import cli
from roberta_infer.bundle import build_bundle, load_bundle
from roberta_infer.checkpoint import load_classifier
from roberta_infer.classify import ShardWorker, classify_collection
from roberta_infer.classify import job as job_module
from roberta_infer.classify.local_engine import run_local
from roberta_infer.data import read_sst2
from roberta_infer.errors import RobertaInferError
from roberta_infer.predict import predict

SHARD = 500  # records per shard: ~10 shards over the mixed input
MB = 1 << 20


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, shared_data) -> Path:
    root = tmp_path_factory.mktemp("classify-model")
    model = make_hf_model(root / "hf", shared_data, seed=3)
    build_bundle(load_classifier(model), root / "bundle", progress=lambda message: None)
    return root / "bundle"


@pytest.fixture(scope="module")
def collection(tmp_path_factory, shared_data) -> tuple[Path, dict[str, str]]:
    """5,000 SST-2 train sentences as txt (with a BOM), jsonl, csv and parquet; returns the folder and id → text."""
    texts = read_sst2(shared_data / "SST-2" / "train.tsv").sentences[:5000]
    folder = tmp_path_factory.mktemp("collection") / "in"
    folder.mkdir()
    expected: dict[str, str] = {}
    part = {"txt": texts[:1500], "jsonl": texts[1500:2700], "csv": texts[2700:3900], "parquet": texts[3900:]}
    path = folder / "a.txt"
    path.write_bytes("\ufeff".encode() + "".join(t + "\n" for t in part["txt"]).encode())
    expected |= {f"{path}:{i + 1}": t for i, t in enumerate(part["txt"])}
    path = folder / "b.jsonl"
    path.write_text("".join(json.dumps({"text": t, "label": i % 2, "n": i}) + "\n" for i, t in enumerate(part["jsonl"])))
    expected |= {f"{path}:{i + 1}": t for i, t in enumerate(part["jsonl"])}
    path = folder / "sub" / "c.csv"
    path.parent.mkdir()
    with open(path, "w", newline="", encoding="utf-8") as f:  # the csv module quotes the sentences' commas and quotes
        writer = csv.writer(f)
        writer.writerow(["n", "text"])
        writer.writerows([i, t] for i, t in enumerate(part["csv"]))
    expected |= {f"{path}:{i + 2}": t for i, t in enumerate(part["csv"])}
    path = folder / "d.parquet"
    pq.write_table(pa.table({"text": part["parquet"], "n": list(range(len(part["parquet"])))}), path, row_group_size=300)
    expected |= {f"{path}:{i + 1}": t for i, t in enumerate(part["parquet"])}
    return folder, expected


@pytest.fixture(scope="module")
def reference(bundle, collection) -> dict[str, dict]:
    """id → predict's {"text", "label", "logits"} for every text of the collection."""
    _, expected = collection
    ids = list(expected)
    return dict(zip(ids, predict(load_bundle(bundle, threads=1), [expected[i] for i in ids], batch_size=64)))


@pytest.fixture(scope="module")
def ray_cluster():
    """Head + 2 worker nodes (separate raylets), 1 CPU each, on loopback; shut down after the module."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                            "object_store_memory": 80 * MB})
    for _ in range(2):
        cluster.add_node(num_cpus=1, object_store_memory=80 * MB)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


@pytest.fixture(scope="module")
def ray_output(tmp_path_factory, bundle, collection, ray_cluster) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("ray") / "out"
    manifest = classify_collection(bundle, [str(collection[0])], out, engine="ray", ray_address=ray_cluster.address,
                                   shard_size=SHARD)
    return out, manifest


def read_rows(out: Path) -> list[dict]:
    rows = []
    for path in sorted(out.glob("part-*")):
        if path.suffix == ".parquet":
            rows += pq.read_table(path).to_pylist()
        else:
            rows += [json.loads(line) for line in path.read_text().splitlines()]
    return rows


def softmax(logits: list[float]) -> np.ndarray:
    wide = np.asarray(logits, dtype=np.float64)
    e = np.exp(wide - wide.max())
    return e / e.sum()


def assert_matches(rows: list[dict], expected: dict[str, str], reference: dict[str, dict]) -> None:
    """Every id exactly once; text, logits, label and score as predict gives them."""
    ids = [row["id"] for row in rows]
    assert len(ids) == len(set(ids))
    assert set(ids) == set(expected)
    for row in rows:
        want = reference[row["id"]]
        assert row["text"] == want["text"]
        np.testing.assert_allclose(row["logits"], want["logits"], atol=1e-5)
        margin = abs(want["logits"][0] - want["logits"][1])
        if margin > 1e-4:  # a near-tie may flip with batching noise; everything else must agree
            assert row["label"] == want["label"]
        assert row["score"] == pytest.approx(softmax(row["logits"]).max(), abs=1e-12)


@pytest.mark.ray
def test_ray_cluster_matches_predict(ray_output, collection, reference):
    out, manifest = ray_output
    rows = read_rows(out)
    assert_matches(rows, collection[1], reference)
    assert {row.get("input_label") for row in rows if row["id"].endswith(tuple(f"b.jsonl:{i}" for i in (1, 2)))} == {0, 1}
    assert manifest["records"] == manifest["records_this_run"] == 5000 and manifest["errors"] == 0
    assert manifest["engine"] == "ray" and manifest["workers"] == 3
    assert sum(worker["records"] for worker in manifest["per_worker"]) == 5000
    assert json.loads((out / "_SUCCESS").read_text()) == manifest
    assert not list(out.glob(".*"))


@pytest.mark.ray
def test_local_engine_equals_ray(tmp_path, bundle, collection, ray_output):
    out = tmp_path / "out"
    manifest = classify_collection(bundle, [str(collection[0])], out, shard_size=SHARD, threads=1)
    ray_out = ray_output[0]
    assert sorted(p.name for p in out.glob("part-*")) == sorted(p.name for p in ray_out.glob("part-*"))
    local, ray = read_rows(out), {row["id"]: row for row in read_rows(ray_out)}
    assert len(local) == len(ray) == 5000
    for row in local:
        other = ray[row["id"]]
        assert {k: v for k, v in row.items() if k != "logits"} == pytest.approx({k: v for k, v in other.items() if k != "logits"})
        np.testing.assert_allclose(row["logits"], other["logits"], atol=1e-6)
    assert manifest["engine"] == "local" and manifest["records"] == 5000


class DiesOnce(ShardWorker):
    """Kills its own process (no cleanup, as a crash or OOM kill would) on one shard, the first time it sees it."""

    def run(self, shard):
        if shard.name == "part-00001-000001":
            try:
                os.close(os.open(self.job.out + "/../died", os.O_CREAT | os.O_EXCL))
                os._exit(1)
            except FileExistsError:
                pass
        return super().run(shard)


@pytest.mark.ray
def test_killed_actor_is_replaced_and_its_shard_rerun(tmp_path, bundle, collection, reference, ray_cluster):
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's workers cannot import this test module
    try:
        manifest = classify_collection(bundle, [str(collection[0])], tmp_path / "out", engine="ray", workers=2,
                                       ray_address=ray_cluster.address, shard_size=SHARD, worker_class=DiesOnce)
    finally:
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert (tmp_path / "died").exists()  # the actor did die mid-job
    assert_matches(read_rows(tmp_path / "out"), collection[1], reference)
    assert manifest["records"] == 5000


def run_cli(*args: str, capsys) -> tuple[int, str]:
    status = cli.main(["classify", *args])
    return status, capsys.readouterr().err


def fingerprint(path: Path) -> tuple:
    stat = path.stat()
    return stat.st_ino, stat.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.ray
def test_resume_finishes_an_interrupted_job_on_either_engine(tmp_path, bundle, collection, reference, ray_cluster, capsys):
    out = tmp_path / "out"
    common = ["--model", str(bundle), "--input", str(collection[0]), "--output", str(out), "--shard-size", str(SHARD),
              "--threads-per-worker", "1"]
    assert run_cli(*common, capsys=capsys)[0] == 0
    shards = sorted(out.glob("part-*"))
    # The state a job killed after shard 6 leaves: no _SUCCESS, later shards absent, a writer's temporary file.
    (out / "_SUCCESS").unlink()
    for path in shards[6:]:
        path.unlink()
    (out / f".{shards[6].name}.0123.tmp").write_bytes(b"half a shard")
    kept = {path: fingerprint(path) for path in shards[:6]}

    status, err = run_cli(*common, capsys=capsys)
    assert status == 2 and err.count("\n") == 1 and "--resume" in err and "6 of 13 shards" in err

    status, err = run_cli(*common, "--resume", "--engine", "ray", "--ray-address", ray_cluster.address, capsys=capsys)
    assert status == 0, err
    assert {path: fingerprint(path) for path in shards[:6]} == kept
    assert_matches(read_rows(out), collection[1], reference)
    manifest = json.loads((out / "_SUCCESS").read_text())
    resumed = sum(pq.read_metadata(path).num_rows for path in shards[:6])
    assert manifest["shards_resumed"] == 6 and manifest["records_this_run"] == 5000 - resumed
    assert manifest["records"] == 5000 and not list(out.glob(".*"))

    status, err = run_cli(*common, capsys=capsys)  # a finished job is never overwritten
    assert status == 2 and "complete" in err
    before = {path: fingerprint(path) for path in out.iterdir()}
    assert run_cli(*common, "--resume", capsys=capsys)[0] == 0
    assert {path: fingerprint(path) for path in out.iterdir()} == before


def test_text_lines_as_predict_reads_them(tmp_path, bundle, capsys):
    """Line splitting over shard boundaries: CRLF, empty lines (errors: nothing to classify), a BOM, no final
    newline; JSON lines output."""
    source = tmp_path / "t.txt"
    source.write_bytes(b"\xef\xbb\xbfgood film\r\n\n  spaced  \nbad\r\n\r\nlast without newline")
    status, err = run_cli("--model", str(bundle), "--input", str(source), "--output", str(tmp_path / "fail"),
                          capsys=capsys)
    assert status == 2 and err.count("\n") == 1 and f"{source} line 2: empty text" in err
    out = tmp_path / "out"
    status, err = run_cli("--model", str(bundle), "--input", str(source), "--output", str(out), "--shard-size", "2",
                          "--format", "jsonl", "--on-error", "skip", capsys=capsys)
    assert status == 0, err
    rows = read_rows(out)
    assert [row["text"] for row in rows] == ["good film", "", "  spaced  ", "bad", "", "last without newline"]
    assert [row["id"] for row in rows] == [f"{source}:{i}" for i in range(1, 7)]
    assert [row["label"] is None for row in rows] == [False, True, False, False, True, False]
    assert [row["error"] for row in rows if row["error"]] == [
        f"{source} line {i}: empty text (nothing but whitespace): nothing to classify" for i in (2, 5)]
    assert len(list(out.glob("part-*.jsonl"))) == 3


def test_csv_records_spanning_lines_are_classified_in_any_shard(tmp_path, bundle, capsys):
    """RFC 4180: quoted fields holding newlines, commas and quotes are one record each; shards of one record cut
    between records (refused as "changed while the job ran" before, even with --on-error skip). Results as predict
    gives them for the same texts."""
    texts = ["a gorgeous film,\nwitty and \"seductive\"", "plain", "three\r\nlines\nhere", "last one"]
    source = tmp_path / "in.csv"
    with open(source, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["n", "text"], *enumerate(texts)])
    reference = predict(load_bundle(bundle, threads=1), texts)
    for shard_size, on_error in (("1", "fail"), ("3", "skip")):
        out = tmp_path / f"out-{shard_size}"
        status, err = run_cli("--model", str(bundle), "--input", str(source), "--output", str(out), "--shard-size",
                              shard_size, "--on-error", on_error, capsys=capsys)
        assert status == 0, err
        rows = read_rows(out)
        assert [row["text"] for row in rows] == texts
        assert [row["id"] for row in rows] == [f"{source}:{line}" for line in (2, 4, 5, 8)]
        for row, want in zip(rows, reference):
            np.testing.assert_allclose(row["logits"], want["logits"], atol=1e-5)


def test_a_folders_files_of_no_known_format_are_named_in_one_warning(tmp_path, bundle, capsys):
    """A folder's .json array is read; its compressed and unknown files are listed in one warning, not skipped
    silently."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.json").write_text(json.dumps(["good", "bad"]))
    (folder / "b.csv.gz").write_bytes(gzip.compress(b"text\nthree\n"))
    (folder / "notes.md").write_text("mine")
    status, err = run_cli("--model", str(bundle), "--input", str(folder), "--output", str(tmp_path / "out"),
                          capsys=capsys)
    assert status == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "2 files in the input folders are not read" in warnings[0]
    assert f"{folder / 'b.csv.gz'} (gzip-compressed: decompress it first)" in warnings[0]
    assert f"{folder / 'notes.md'} (unknown extension '.md')" in warnings[0]
    rows = read_rows(tmp_path / "out")
    assert [(row["id"], row["text"]) for row in rows] == [(f"{folder / 'a.json'}:1", "good"), (f"{folder / 'a.json'}:2", "bad")]


BAD = {  # case → (file, content, its records, the error)
    "missing field": ("b.jsonl", b'{"text": "fine"}\n{"text": "also"}\n{"body": "no text"}\n', 3,
                      "b.jsonl line 3: no field 'text'"),
    "not json": ("b.jsonl", b'{"text": "fine"}\n{"text": oops}\n', 2, "b.jsonl line 2: not valid JSON"),
    "not utf-8": ("a.txt", b"fine\nbad \xff byte\nfine\n", 3, "a.txt line 2: not valid UTF-8"),
    "csv fields": ("c.csv", b"text,n\nfine,1\nextra,2,3\n", 2, "c.csv line 3: expected 2 fields, found 3"),
    "csv utf-8": ("c.tsv", b"n\ttext\n1\tfine\n2\tbad \xc3\n", 2, "c.tsv line 3: not valid UTF-8"),
    "blank text": ("a.txt", "fine\n \u3000\u2028 \nfine\n".encode(), 3, "a.txt line 2: empty text"),
    "empty csv text": ("c.csv", b'text,n\n"two\nlines",1\n"",2\n', 2, "c.csv line 4: empty text"),
    "blank json element": ("j.json", b'["fine", " ", {"text": "also"}]', 3, "j.json element 2: empty text"),
    "json element": ("j.json", b'["fine", 7]', 2, "j.json element 2: a JSON number, not a string or an object"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_record_fails_naming_file_and_line_or_is_kept_with_skip(tmp_path, bundle, capsys, case):
    name, content, count, message = BAD[case]
    (tmp_path / name).write_bytes(content)
    out = tmp_path / "out"
    status, err = run_cli("--model", str(bundle), "--input", str(tmp_path / name), "--output", str(out), capsys=capsys)
    assert status == 2 and err.startswith("error: ") and err.count("\n") == 1 and message in err
    assert not list(out.glob("part-*")) and not list(out.glob(".*"))  # nothing half-written

    status, err = run_cli("--model", str(bundle), "--input", str(tmp_path / name), "--output", str(tmp_path / "skip"),
                          "--on-error", "skip", capsys=capsys)
    assert status == 0, err
    rows = read_rows(tmp_path / "skip")
    bad = [row for row in rows if row["error"] is not None]
    assert len(bad) == 1 and message in bad[0]["error"]
    assert bad[0]["label"] is None and bad[0]["logits"] is None and bad[0]["id"].endswith(message.split(" ")[2].rstrip(":"))
    assert all(row["label"] is not None for row in rows if row["error"] is None) and len(rows) == count


@pytest.mark.parametrize("make, message", [
    (lambda d: (d / "x.xml").write_text("<a/>"), "unknown extension '.xml'"),
    (lambda d: (d / "c.csv").write_text("body,n\nhello,1\n"), "c.csv line 1: no column 'text' (columns: body, n)"),
    (lambda d: (d / "d.parquet").write_bytes(b"not parquet at all"), "d.parquet: not a readable Parquet file"),
    (lambda d: pq.write_table(pa.table({"text": [1, 2]}), d / "e.parquet"), "column 'text' holds int64, not text"),
    (lambda d: None, "nothing.txt not found"),
    (lambda d: (d / "u.txt").write_bytes("fine\nalso\n".encode("utf-16")), "u.txt is UTF-16 text, not UTF-8"),
    (lambda d: (d / "u.csv").write_bytes("text\nfine\n".encode("utf-16-le")), "u.csv is UTF-16 text, not UTF-8"),
    (lambda d: (d / "c.csv").write_text("text,n,text\nx,1,y\n"), "c.csv line 1: column 'text' named more than once"),
    (lambda d: (d / "g.csv.gz").write_bytes(gzip.compress(b"text\nx\n")), "g.csv.gz: gzip-compressed: decompress it first"),
    (lambda d: (d / "g.txt").write_bytes(gzip.compress(b"x\n")), "g.txt is gzip-compressed, not text"),
    (lambda d: (d / "o.json").write_text('{"texts": []}'), "o.json holds a JSON object, not an array"),
    (lambda d: (d / "r.txt").write_bytes(bytes(range(256)) * 8), "r.txt is binary data, not text"),
    (lambda d: (d / "n.jsonl").write_bytes(b'{"text": "a"}\n{"text": "\x00"}\n'), "n.jsonl line 2 holds a NUL byte"),
])
def test_bad_file_is_refused_before_anything_is_written(tmp_path, bundle, capsys, make, message):
    make(tmp_path)
    name = next((p.name for p in tmp_path.iterdir()), "nothing.txt")
    status, err = run_cli("--model", str(bundle), "--input", str(tmp_path / name), "--output", str(tmp_path / "out"),
                          capsys=capsys)
    assert status == 2 and err.count("\n") == 1 and message in err
    assert not (tmp_path / "out").exists()


def test_output_holding_something_else_is_refused(tmp_path, bundle, collection, capsys):
    source = tmp_path / "t.txt"
    source.write_text("one\ntwo\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.md").write_text("mine")
    status, err = run_cli("--model", str(bundle), "--input", str(source), "--output", str(out), "--resume", capsys=capsys)
    assert status == 2 and "holds no classify job" in err and (out / "notes.md").read_text() == "mine"

    other = tmp_path / "other"
    assert run_cli("--model", str(bundle), "--input", str(source), "--output", str(other), capsys=capsys)[0] == 0
    status, err = run_cli("--model", str(bundle), "--input", str(source), "--output", str(other), "--resume",
                          "--shard-size", "1", capsys=capsys)
    assert status == 2 and "different classify job (shard_size differ)" in err
    with pytest.raises(RobertaInferError, match="need --engine ray"):
        classify_collection(bundle, [str(source)], tmp_path / "x", workers=2)


def test_output_inside_an_input_folder_is_not_read_back(tmp_path, bundle, capsys):
    (tmp_path / "a.txt").write_text("one\ntwo\n")
    out = tmp_path / "results"
    assert run_cli("--model", str(bundle), "--input", str(tmp_path), "--output", str(out), "--format", "jsonl",
                   capsys=capsys)[0] == 0
    (out / "_SUCCESS").unlink()
    status, err = run_cli("--model", str(bundle), "--input", str(tmp_path), "--output", str(out), "--format", "jsonl",
                          "--resume", capsys=capsys)
    assert status == 0, err
    assert [row["id"] for row in read_rows(out)] == [f"{tmp_path / 'a.txt'}:1", f"{tmp_path / 'a.txt'}:2"]


def test_parquet_null_or_binary_text(tmp_path, bundle, capsys):
    """A binary text column is decoded; a null or non-UTF-8 value is a bad row (named by its row number)."""
    source = tmp_path / "p.parquet"
    pq.write_table(pa.table({"text": pa.array([b"fine", None, b"bad \xff", b"also fine"], pa.binary())}), source)
    status, err = run_cli("--model", str(bundle), "--input", str(source), "--output", str(tmp_path / "a"), capsys=capsys)
    assert status == 2 and "p.parquet row 2: no text (null 'text')" in err
    status, err = run_cli("--model", str(bundle), "--input", str(source), "--output", str(tmp_path / "b"),
                          "--on-error", "skip", capsys=capsys)
    assert status == 0, err
    rows = read_rows(tmp_path / "b")
    assert [row["label"] is None for row in rows] == [False, True, True, False]
    assert "p.parquet row 3: not valid UTF-8" in rows[2]["error"]
    assert rows[3]["text"] == b"also fine"  # the input column kept as it was (binary)


def test_a_bad_record_after_good_shards_leaves_nothing_behind(tmp_path, bundle, capsys):
    """The job stops at c.jsonl line 2 after a.txt's shard was written: a fresh --output is removed again (it could
    never be resumed: the input must change), so the same command works once the file is fixed."""
    (tmp_path / "a.txt").write_text("fine\nalso fine\n")
    bad = tmp_path / "c.jsonl"
    bad.write_bytes(b'{"text": "fine"}\n{"text": oops}\n')
    out = tmp_path / "out"
    args = ("--model", str(bundle), "--input", str(tmp_path / "a.txt"), str(bad), "--output", str(out), "--shard-size", "1")
    status, err = run_cli(*args, capsys=capsys)
    assert status == 2 and "c.jsonl line 2: not valid JSON" in err
    assert not out.exists()

    out.mkdir()  # an empty folder the user made stays, emptied of the job's files
    assert run_cli(*args, capsys=capsys)[0] == 2
    assert out.is_dir() and not any(out.iterdir())

    bad.write_bytes(b'{"text": "fine"}\n{"text": "fixed"}\n')
    status, err = run_cli(*args, capsys=capsys)
    assert status == 0, err
    assert [row["text"] for row in read_rows(out)] == ["fine", "also fine", "fine", "fixed"]


@pytest.fixture()
def small_job(tmp_path, bundle):
    """A finished local job over 30 lines in 3 shards; returns its CLI arguments, output folder and expected rows."""
    texts = [f"sentence number {i} is {'good' if i % 2 else 'bad'}" for i in range(30)]
    source = tmp_path / "t.txt"
    source.write_text("".join(t + "\n" for t in texts))
    out = tmp_path / "out"
    args = ("--model", str(bundle), "--input", str(source), "--output", str(out), "--shard-size", "10")
    expected = dict(zip([f"{source}:{i + 1}" for i in range(30)], predict(load_bundle(bundle, threads=1), texts)))
    assert cli.main(["classify", *args]) == 0
    return args, out, expected


def test_an_interrupted_job_says_how_to_finish_it(tmp_path, bundle, monkeypatch, capsys):
    """Ctrl-C (or SIGTERM) after the first of 3 shards: exit 130, one line that mentions --resume; --resume then
    writes the other two and the rows are all there."""
    texts = [f"sentence number {i}" for i in range(30)]
    (tmp_path / "t.txt").write_text("".join(t + "\n" for t in texts))
    out = tmp_path / "out"
    args = ["classify", "--model", str(bundle), "--input", str(tmp_path / "t.txt"), "--output", str(out),
            "--shard-size", "10"]

    def interrupted(classifier, pending, job, **options):
        run_local(classifier, pending[:1], job, **options)
        raise KeyboardInterrupt

    monkeypatch.setattr(job_module, "run_local", interrupted)
    capsys.readouterr()
    assert cli.main(args) == 130
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("error: interrupted (SIGINT)") and "run the same command with --resume" in err[-1]
    assert len(list(out.glob("part-*"))) == 1
    monkeypatch.setattr(job_module, "run_local", run_local)
    assert cli.main([*args, "--resume"]) == 0
    assert len(read_rows(out)) == 30


def assert_complete(out: Path, expected: dict[str, dict]) -> None:
    rows = read_rows(out)
    assert sorted(row["id"] for row in rows) == sorted(expected)
    for row in rows:
        np.testing.assert_allclose(row["logits"], expected[row["id"]]["logits"], atol=1e-5)
    manifest = json.loads((out / "_SUCCESS").read_text())
    assert manifest["records"] == 30 and not (out / "_LOCK").exists()
    assert manifest["shard_files"]["part-00000-000001"]["sha256"] == hashlib.sha256(
        (out / "part-00000-000001.parquet").read_bytes()).hexdigest()


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.unlink(), "part-00000-000001.parquet is missing (listed in _SUCCESS): redoing it"),
    (lambda p: p.write_bytes(p.read_bytes()[:-40]), "part-00000-000001.parquet has"),
    (lambda p: p.write_bytes(p.read_bytes()[:-40] + bytes(40)), "does not match its sha256 in _SUCCESS: redoing it"),
], ids=["deleted", "truncated", "overwritten"])
def test_resume_redoes_a_shard_that_no_longer_matches_success(small_job, capsys, damage, message):
    args, out, expected = small_job
    capsys.readouterr()
    damage(out / "part-00000-000001.parquet")
    status = cli.main(["classify", *args, "--resume"])
    captured = capsys.readouterr()
    assert status == 0 and message in captured.err and "_SUCCESS no longer describes" in captured.err
    assert "(2 resumed)" in captured.out
    assert_complete(out, expected)
    assert json.loads((out / "_SUCCESS").read_text())["shards_resumed"] == 2


def test_resume_without_success_redoes_a_damaged_shard(small_job, capsys):
    args, out, expected = small_job
    (out / "_SUCCESS").unlink()
    shard = out / "part-00000-000002.parquet"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    status, err = run_cli(*args, "--resume", capsys=capsys)
    assert status == 0, err
    assert "part-00000-000002.parquet is damaged (ArrowInvalid" in err and "internal" not in err
    assert_complete(out, expected)


def test_a_second_live_run_is_refused_and_a_stale_lock_taken_over(small_job, capsys):
    import subprocess

    args, out, expected = small_job
    (out / "_SUCCESS").unlink()
    (out / "part-00000-000002.parquet").unlink()
    live = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        (out / "_LOCK").write_text(f"{live.pid} {os.uname().nodename}\n")
        status, err = run_cli(*args, "--resume", capsys=capsys)
        assert status == 2 and err.count("\n") == 1 and f"being written by another classify run (process {live.pid}" in err
        assert not (out / "part-00000-000002.parquet").exists()
    finally:
        live.communicate(b"")
    status, err = run_cli(*args, "--resume", capsys=capsys)  # that process is gone now: its lock is stale
    assert status == 0 and f"taking over {out / '_LOCK'}: its process {live.pid} is no longer running" in err
    assert_complete(out, expected)
