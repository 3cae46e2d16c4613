"""Commands that need no model start without the heavy libraries: PyTorch, transformers, OpenVINO, NNCF, Ray, FastAPI,
uvicorn, matplotlib (each a second or more to import on a small machine). Which modules a command imports is
deterministic, unlike its time, so that is what is checked; the times are measured by hand (README)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "transformers", "openvino", "nncf", "ray", "fastapi", "uvicorn", "matplotlib")
# The command in a fresh interpreter: its exit status and the heavy top-level packages in sys.modules after it.
PROBE = ("import json, sys\nfrom roberta_infer import cli\nstatus = cli.main(sys.argv[1:])\n"
         f"print(json.dumps([status, sorted(m for m in {HEAVY!r} if m in sys.modules)]), file=sys.stderr)")


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory, hf_bundle, shared_data) -> dict[str, Path]:
    """A bundle, SST-2 dev prepared for it (seq 16) and its infer results."""
    from roberta_infer.bundle import load_bundle
    from roberta_infer.data import read_sst2
    from roberta_infer.infer import infer
    from roberta_infer.prepare import load_prepared, prepare

    root = tmp_path_factory.mktemp("startup")
    bundle = load_bundle(hf_bundle, threads=1)
    split = read_sst2(shared_data / "SST-2" / "dev.tsv")
    with pytest.warns(UserWarning, match="truncated"):
        prepare(split, bundle.encoder, seq_len=16, out=root / "prepared", layout="array", class_names=bundle.class_names,
                vocab={"model": str(hf_bundle)})
    infer(bundle, load_prepared(root / "prepared"), root / "results", batch_size=64, warmup=0, loop=1)
    return {"bundle": hf_bundle, "prepared": root / "prepared", "results": root / "results", "root": root}


CASES = {  # name → (argv from the artifacts, expected exit status)
    "help": (lambda a: ["--help"], 0),
    "every command's --help": (None, 0),
    "evaluate existing results": (lambda a: ["evaluate", "--results", str(a["results"]), "--labels", str(a["prepared"])], 0),
    "info on a bundle": (lambda a: ["info", str(a["bundle"])], 0),
    "prepare with a bad argument": (lambda a: ["prepare", "--out", str(a["root"] / "p"), "--seq-len", "0"], 2),
    "predict with a missing input": (lambda a: ["predict", "--input", str(a["root"] / "none.txt"), "--output", "-"], 2),
    "classify with a missing input": (lambda a: ["classify", "--input", str(a["root"] / "none"), "--output",
                                                 str(a["root"] / "c")], 2),
}


def probe(argv: list[str]) -> tuple[int, list[str]]:
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120)
    return tuple(json.loads(done.stderr.strip().splitlines()[-1]))


@pytest.mark.parametrize("case", CASES)
def test_commands_that_need_no_model_import_no_heavy_library(case, artifacts):
    make, status = CASES[case]
    if make is None:
        from roberta_infer.commands import COMMANDS

        runs = [[command.__name__.rsplit(".", 1)[-1], "--help"] for command in COMMANDS]
    else:
        runs = [make(artifacts)]
    for argv in runs:
        assert probe(argv) == (status, []), argv
