"""Every argument of every command, given each kind of bad value, gets one line on stderr, exit 2, nothing written.

The cases are generated from `build_parser()` itself: a numeric argument's bounds, a path argument's role (input
file / folder / either, bundle, output folder of a kind, output file) come from its argparse type, so an argument
added later is covered without touching this file; an argument whose type carries neither (a bare int, float or
Path) fails `test_every_argument_is_validated`. Argument-level cases fail in argparse before any model loads; the
output cases (another kind of artifact, same kind without --force, a path under a file) run the command with
otherwise valid arguments, an empty roberta-infer cache and no --model (the default model, where a command has one),
and must stop before any work: exporting, building or loading a model fails the test (`no_model_work`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import roberta_infer
from roberta_infer import cli
from roberta_infer.commands import args as cli_args
from roberta_infer.outputs import KINDS

PARSER = cli.build_parser()
COMMANDS = PARSER._subparsers._group_actions[0].choices


def arguments():
    """(command, action) for every argument but --help."""
    for command, sub in sorted(COMMANDS.items()):
        for action in sub._actions:
            if not isinstance(action, argparse._HelpAction):
                yield command, action


def flag(action: argparse.Action) -> str:
    return action.option_strings[-1] if action.option_strings else action.dest


def numeric_cases(bounds: tuple) -> list[tuple[str, str]]:
    """(class, value) out of the range `bounds` = (kind, low, high, low_open, high_open): negative, zero, below the
    lowest, huge, not a number."""
    kind, low, high, low_open, high_open = bounds
    cases = [("not a number", "x1")]
    if low > -1 or (low == -1 and low_open):
        cases.append(("negative", "-1"))
    if low > 0 or (low == 0 and low_open):
        cases.append(("zero", "0"))
    if low > 1:
        cases.append(("below the lowest", str(low - 1 if kind is int else low / 2)))
    cases.append(("huge", str(int(high) * 10 + 1) if kind is int else "1e300"))
    if kind is float:
        cases.append(("not finite", "nan"))
    return cases


def argument_cases():
    """(command, flag, class, value-maker) for each argument-level case; value-maker(tmp_path) -> str."""
    for command, action in arguments():
        kind = action.type
        if kind is cli_args.opset:
            from roberta_infer.export import supported_opsets

            supported = supported_opsets()
            for value in (-1, 0, supported.start - 1, supported.stop, 10**9):  # stop: just beyond this PyTorch + onnx
                yield command, flag(action), f"unsupported opset {value}", lambda tmp, v=value: str(v)
        bounds = getattr(kind, "bounds", None)
        if bounds is not None:
            for name, value in numeric_cases(bounds):
                if kind.__name__ == "comma-separated list":
                    value = f"1,{value}"
                yield command, flag(action), name, lambda tmp, v=value: v
        role = getattr(kind, "role", None)
        if role in ("file", "dir", "path", "bundle", "dir-or-new"):
            if not role.endswith("-or-new"):
                yield command, flag(action), "missing path", lambda tmp: str(tmp / "nope")
        if role in ("dir", "bundle", "dir-or-new"):
            yield command, flag(action), "file for a folder", lambda tmp: str(_file(tmp))
        if role == "file":
            yield command, flag(action), "folder for a file", lambda tmp: str(_folder(tmp))
        if role == "bundle":
            for other in ("prepared", "results", "checkpoint"):
                yield command, flag(action), f"{other} for a bundle", lambda tmp, o=other: str(_artifact(tmp, o))
        if kind is cli_args.url:
            yield command, flag(action), "not a URL", lambda tmp: "notaurl"


def output_cases():
    """(command, flag, class, value-maker) for each output argument: checked by the command before any work."""
    for command, action in arguments():
        role = getattr(action.type, "role", None)
        if role == "out-dir":
            kind = action.type.kind
            yield command, flag(action), "file for a folder", lambda tmp: str(_file(tmp))
            yield command, flag(action), "under a file (unwritable)", lambda tmp: str(_file(tmp) / "sub")
            other = "prepared" if kind != "prepared" else "bundle"
            yield command, flag(action), f"{other} for a {kind or 'cache'}", lambda tmp, o=other: str(_artifact(tmp, o))
            if kind is not None and "--force" in COMMANDS[command]._option_string_actions:
                yield command, flag(action), "same kind without --force", lambda tmp, k=kind: str(_artifact(tmp, k))
            yield command, flag(action), "inside a bundle, deeper (with --force)", lambda tmp: str(_nesting(tmp) / "new")
        elif role == "out-file":
            yield command, flag(action), "folder for a file", lambda tmp: str(_folder(tmp))
            yield command, flag(action), "under a file (unwritable)", lambda tmp: str(_file(tmp) / "sub.json")
            if "--force" in COMMANDS[command]._option_string_actions:
                yield command, flag(action), "existing file without --force", lambda tmp: str(_file(tmp))
            yield command, flag(action), "inside a bundle, deeper (with --force)", lambda tmp: str(_nesting(tmp) / "o.json")


def _file(tmp: Path) -> Path:
    path = tmp / "a-file.txt"
    path.write_text("a text\n")
    return path


def _folder(tmp: Path) -> Path:
    path = tmp / "a-folder"
    path.mkdir(exist_ok=True)
    return path


def _artifact(tmp: Path, kind: str) -> Path:
    """A folder recognised as `kind` by its marker file (see outputs.KINDS)."""
    path = tmp / f"a-{kind}"
    path.mkdir(exist_ok=True)
    marker = KINDS[kind][0]
    (path / marker).write_text(json.dumps({"format": f"roberta-infer/{kind}/1"}) + "\n")
    return path


def _nesting(tmp: Path) -> Path:
    """A folder two levels inside a bundle (its manifest.json and model.onnx: what recognises it above)."""
    bundle = tmp / "an-enclosing-bundle"
    (bundle / "notes" / "deeper").mkdir(parents=True, exist_ok=True)
    (bundle / "manifest.json").write_text("{}\n")
    (bundle / "model.onnx").write_bytes(b"graph")
    return bundle / "notes" / "deeper"


def baseline(command: str, tmp: Path) -> dict[str, str]:
    """A valid value for each required argument (and the positional) of `command`, by its type's role."""
    values = {}
    for action in COMMANDS[command]._actions:
        if not (action.required or not action.option_strings):
            continue
        role = getattr(action.type, "role", None)
        values[flag(action)] = {"bundle": lambda: _artifact(tmp, "bundle"), "dir": lambda: _folder(tmp),
                                "out-dir": lambda: tmp / "new-output", "out-file": lambda: tmp / "new-output.json",
                                }.get(role, lambda: _file(tmp))()
    return {name: str(value) for name, value in values.items()}


def command_line(command: str, values: dict[str, str]) -> list[str]:
    line = [command]
    for name, value in values.items():
        line += [name, value] if name.startswith("-") else [value]
    return line


def snapshot(tmp: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(tmp)): (p.read_bytes() if p.is_file() else None) for p in sorted(tmp.rglob("*"))}


# The expensive work a command may start only once its arguments and outputs have passed their checks.
MODEL_WORK = ("default_bundle", "build_bundle", "synthetic_classifier", "load_classifier", "load_bundle", "open_model")


@pytest.fixture
def no_model_work(monkeypatch):
    """Exporting, building or loading any model fails the test, wherever a module of roberta_infer holds the
    function (all are imported first, so none binds a stand-in after it is patched): a command that would do that
    work before refusing its arguments fails here, even where a warm cache would have made the work quick."""
    for info in pkgutil.walk_packages(roberta_infer.__path__, "roberta_infer."):
        module = importlib.import_module(info.name)
        for name in MODEL_WORK:
            if hasattr(module, name):
                monkeypatch.setattr(module, name, lambda *_, what=name, **__: pytest.fail(f"{what} ran before the checks"))


def run_failing(argv: list[str], capsys) -> str:
    assert cli.main(argv) == 2, argv
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in captured.err, (argv, captured.err)
    assert "internal" not in lines[0], lines[0]
    return lines[0]


def test_every_argument_is_validated():
    """No bare int/float/Path: every numeric argument has a range, every path argument a role."""
    bare = [f"{command} {flag(action)}" for command, action in arguments()
            if action.type in (int, float, Path) or (action.type is not None and action.type.__name__ == "<lambda>")]
    assert bare == []


def test_every_command_has_a_case():
    assert {command for command, *_ in [*argument_cases(), *output_cases()]} == set(COMMANDS)


@pytest.mark.parametrize(("command", "option", "case", "make"), list(argument_cases()),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_bad_argument(command, option, case, make, tmp_path, capsys):
    value = make(tmp_path)
    values = baseline(command, tmp_path)
    values[option] = value
    before = snapshot(tmp_path)
    line = run_failing(command_line(command, values), capsys)
    assert option.lstrip("-") in line or value in line, line  # it names what is wrong
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(("command", "option", "case", "make"), list(output_cases()),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_bad_output(command, option, case, make, tmp_path, capsys, monkeypatch, no_model_work):
    """With an empty cache (an export would fill it, which the snapshot shows) and no model work allowed: commands
    that run the default model without --model get no further than their checks, as on a fresh machine."""
    monkeypatch.chdir(tmp_path)  # a default output (runs/…) lands here, never in the checkout
    monkeypatch.setenv("ROBERTA_INFER_CACHE", str(tmp_path / "cache"))
    value = make(tmp_path)
    values = baseline(command, tmp_path)
    values[option] = value
    if command == "export":
        values["--synthetic"] = "roberta-base"  # no checkpoint to load: the output is checked before building
    argv = command_line(command, values)
    if "with --force" in case and "--force" in COMMANDS[command]._option_string_actions:
        argv.append("--force")
    before = snapshot(tmp_path)
    line = run_failing(argv, capsys)
    assert value in line, line
    assert snapshot(tmp_path) == before, "something was written"
    if case.startswith("same kind"):
        assert "--force" in line
    if case.startswith("inside a bundle"):
        assert f"is inside a bundle (written by `export`/`quantize`) in {tmp_path / 'an-enclosing-bundle'}" in line, line


def test_a_fresh_machine_refuses_a_bad_output_before_exporting_the_default_model(tmp_path):
    """The real CLI in a subprocess on a new machine: an empty home and an empty ROBERTA_INFER_CACHE. `classify`
    without --model, given a file as --output, says so in one line (exit 2) at once: it does not export the default
    model into the cache first (which printed 5 lines of progress before the error)."""
    home, cache, texts = tmp_path / "home", tmp_path / "cache", tmp_path / "texts.txt"
    home.mkdir()
    cache.mkdir()
    texts.write_text("a charming and often affecting journey\n")
    argv = command_line("classify", {"--input": str(texts), "--output": str(_file(tmp_path))})
    done = subprocess.run([sys.executable, "-m", "roberta_infer.cli", *argv], cwd=tmp_path, capture_output=True, text=True,
                          env=os.environ | {"HOME": str(home), "ROBERTA_INFER_CACHE": str(cache)}, timeout=300)
    assert done.returncode == 2 and done.stderr.startswith("error: --output ") and done.stderr.count("\n") == 1, done.stderr
    assert list(cache.iterdir()) == [] and not (home / ".cache" / "roberta-infer").exists()


def _compare_beside_an_earlier_report(tmp: Path) -> list[str]:
    (tmp / "r.html").write_text("an earlier report")
    return ["compare", "--json", str(tmp / "r.json")]


SETTINGS_CASES = {  # name: (the command line, given tmp_path; a part of its one error line)
    "export: a static shape needs both sizes": (lambda tmp: ["export", "--out", str(tmp / "b"), "--batch-size", "4"],
                                                "give both --batch-size and --seq-len"),
    "export: int8 is not ONNX Runtime's": (lambda tmp: ["export", "--out", str(tmp / "b"), "--precision", "int8"],
                                           "ONNX Runtime bundles are exported fp32"),
    "export: int8 needs SST-2": (lambda tmp: ["export", "--out", str(tmp / "b"), "--engine", "openvino", "--precision", "int8",
                                              "--data", str(_folder(tmp))], "train.tsv not found"),
    "run: no SST-2 dev": (lambda tmp: ["run", "--work-dir", str(tmp / "w"), "--data", str(_folder(tmp))], "dev.tsv not found"),
    "quantize: no SST-2 dev": (lambda tmp: ["quantize", "--model", str(_artifact(tmp, "bundle")), "--out", str(tmp / "q"),
                                            "--source", str(_file(tmp)), "--data", str(_folder(tmp))], "dev.tsv not found"),
    "compare: no SST-2 dev": (lambda tmp: ["compare", "--work-dir", str(tmp / "w"), "--data", str(_folder(tmp))],
                              "dev.tsv not found"),
    "compare: an unknown candidate": (lambda tmp: ["compare", "--work-dir", str(tmp / "w"), "--ours-from", "ort-int4"],
                                      "candidates for ours ['ort-int4']"),
    "compare: the report would replace the JSON": (lambda tmp: ["compare", "--json", str(tmp / "r.html")],
                                                   "the HTML report is written beside the JSON"),
    "compare: the report beside the JSON exists": (_compare_beside_an_earlier_report, "r.html exists: add --force"),
}


@pytest.mark.parametrize("case", SETTINGS_CASES)
def test_settings_are_checked_before_any_model_is_built_or_loaded(case, tmp_path, capsys, monkeypatch, no_model_work):
    monkeypatch.chdir(tmp_path)  # compare's default work dir lands here
    make, message = SETTINGS_CASES[case]
    argv = make(tmp_path)
    before = snapshot(tmp_path)
    assert message in run_failing(argv, capsys)
    assert snapshot(tmp_path) == before


def test_numeric_cases_cover_each_class():
    """The generator itself: a positive-integer argument gets negative, zero and huge values, each out of range."""
    cases = dict(numeric_cases(cli_args.positive_int.bounds))
    assert {"negative", "zero", "huge", "not a number"} <= set(cases)
    assert int(cases["huge"]) > 2**31 and math.isnan(float(dict(numeric_cases(cli_args.DROP_PP.bounds))["not finite"]))


# ---------------------------------------------------------------- where two artifacts meet


@pytest.fixture(scope="module")
def pairs(tmp_path_factory, shared_data, hf_model):
    """The shipped default model's bundle and data prepared for it, and the same for the roberta-vocabulary test
    model: two vocabularies that must not be mixed."""
    from roberta_infer.bundle import build_bundle
    from roberta_infer.checkpoint import load_classifier

    root = tmp_path_factory.mktemp("pairs")
    data = root / "SST-2"
    data.mkdir()
    rows = ["a gorgeous , witty , seductive movie .\t1", "utterly dull\t0", "a masterpiece\t1", "bored for 120 minutes\t0"]
    (data / "dev.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n", encoding="utf-8")
    (root / "other").mkdir()
    (root / "other" / "dev.tsv").write_text("sentence\tlabel\n" + "\n".join(reversed(rows)) + "\n", encoding="utf-8")
    assert cli.main(["export", "--out", str(root / "default-bundle")]) == 0
    build_bundle(load_classifier(hf_model), root / "hf-bundle", progress=lambda _: None)
    for name, model in (("default", []), ("hf", ["--model", str(hf_model)])):
        assert cli.main(["prepare", "--data", str(data), *model, "--seq-len", "32", "--out", str(root / f"{name}-prepared")]) == 0
    assert cli.main(["prepare", "--data", str(root / "other"), "--seq-len", "32", "--out", str(root / "other-prepared")]) == 0
    return root


def test_data_prepared_for_another_vocabulary_is_refused_naming_both(pairs, hf_model, capsys):
    capsys.readouterr()
    out = pairs / "results"
    line = run_failing(["infer", "--model", str(pairs / "hf-bundle"), "--input", str(pairs / "default-prepared"),
                        "--out", str(out)], capsys)
    assert "prepared with the vocabulary of" in line and str(hf_model) in line and "default_model" in line
    assert not out.exists()


def test_ids_beyond_the_models_vocabulary_are_refused_before_the_engine_sees_them(pairs, tmp_path, capsys):
    """A prepared folder from before vocabularies were recorded: its ids alone show it is not the bundle's model's
    (one id past the model's vocabulary, as a larger model's data would hold)."""
    import shutil

    old = tmp_path / "old-prepared"
    shutil.copytree(pairs / "hf-prepared", old)
    meta = json.loads((old / "meta.json").read_text())
    del meta["vocab"]["vocab_sha256"]
    (old / "meta.json").write_text(json.dumps(meta))
    size = json.loads((pairs / "default-bundle" / "manifest.json").read_text())["architecture"]["vocab"]
    tokens = np.load(old / "src_tokens.npy")
    tokens[2, 1] = size + 7
    np.save(old / "src_tokens.npy", tokens)
    capsys.readouterr()
    line = run_failing(["infer", "--model", str(pairs / "default-bundle"), "--input", str(old), "--out", str(tmp_path / "r")],
                       capsys)
    assert f"beyond the {size} tokens of the bundle's model" in line and not (tmp_path / "r").exists()


def test_results_and_labels_of_different_data_are_refused(pairs, tmp_path, capsys):
    results = tmp_path / "results"
    assert cli.main(["infer", "--model", str(pairs / "default-bundle"), "--input", str(pairs / "default-prepared"),
                     "--out", str(results), "--warmup", "0"]) == 0
    capsys.readouterr()
    line = run_failing(["evaluate", "--results", str(results), "--labels", str(pairs / "other-prepared")], capsys)
    assert "were inferred on" in line and str(pairs / "other" / "dev.tsv") in line
    assert not (results / "evaluation.json").exists()


def test_a_checkpoint_or_a_missing_folder_where_a_bundle_belongs(hf_model, shared_data, tmp_path, capsys):
    line = run_failing(["infer", "--model", str(hf_model), "--input", str(tmp_path), "--out", str(tmp_path / "r")], capsys)
    assert "is a checkpoint, not a bundle: run `roberta-infer export" in line
    line = run_failing(["bench", "--model", str(tmp_path / "gone"), "--out", str(tmp_path / "b")], capsys)
    assert "gone not found" in line
    line = run_failing(["prepare", "--data", str(shared_data), "--model", str(shared_data / "SST-2" / "dev.tsv"),
                        "--out", str(tmp_path / "p")], capsys)
    assert "dev.tsv is not a checkpoint" in line and not (tmp_path / "p").exists()


def test_a_bundle_or_prepared_data_where_a_checkpoint_belongs(pairs, tmp_path, capsys):
    line = run_failing(["export", "--model", str(pairs / "hf-bundle"), "--out", str(tmp_path / "b")], capsys)
    assert "hf-bundle is a bundle (written by `export`/`quantize`), not a checkpoint" in line
    line = run_failing(["prepare", "--data", str(pairs / "other"), "--model", str(pairs / "default-prepared"),
                        "--out", str(tmp_path / "p")], capsys)
    assert "default-prepared is a prepared directory (written by `prepare`), not a checkpoint" in line
    assert not (tmp_path / "b").exists() and not (tmp_path / "p").exists()


def test_replacing_needs_force_and_never_crosses_kinds(pairs, tmp_path, capsys):
    out = tmp_path / "prep"
    args = ["prepare", "--data", str(pairs / "other"), "--out", str(out)]
    assert cli.main(args) == 0
    first = (out / "meta.json").read_bytes()
    assert "add --force to replace it" in run_failing(args, capsys)
    assert cli.main([*args, "--force", "--seq-len", "16"]) == 0
    assert json.loads((out / "meta.json").read_text())["seq_len"] == 16 and (out / "meta.json").read_bytes() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prep"], "no temporary or old sibling left"
    line = run_failing(["export", "--out", str(out), "--force"], capsys)
    assert "is a prepared directory (written by `prepare`), not a bundle" in line


def test_every_option_states_its_default():
    """An option a user may leave out says in --help what happens then."""
    silent = [f"{command} {flag(action)}" for command, action in arguments()
              if action.option_strings and not action.required and action.nargs != 0
              and "default" not in (action.help or "").lower()]
    assert silent == []


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_onnxruntime_precision_names_the_way_to_it(precision, tmp_path, capsys):
    line = run_failing(["export", "--precision", precision, "--out", str(tmp_path / "b")], capsys)
    assert f"export with --engine openvino --precision {precision}" in line
    assert ("quantize" in line) == (precision == "int8")  # ONNX Runtime has an int8 path (quantize), no bf16 one
    assert not (tmp_path / "b").exists()


def test_an_output_file_never_replaces_the_input_nor_lands_in_another_output(tmp_path, capsys, monkeypatch, no_model_work):
    """With --force too: `predict --input X --output X`, `--output BUNDLE/model.onnx`, `evaluate --errors
    PREPARED/labels.npy` each stop with one line before any model work, nothing written."""
    monkeypatch.setenv("ROBERTA_INFER_CACHE", str(tmp_path / "cache"))
    texts = _file(tmp_path)
    bundle, prepared, results = (_artifact(tmp_path, kind) for kind in ("bundle", "prepared", "results"))
    (bundle / "model.onnx").write_bytes(b"graph")
    (prepared / "labels.npy").write_bytes(b"labels")
    (tmp_path / "alias.txt").symlink_to(texts)
    before = snapshot(tmp_path)
    for argv, expected in [
        (["predict", "--input", str(texts), "--output", str(texts), "--force"], "is this command's input"),
        (["predict", "--input", str(texts), "--output", str(tmp_path / "alias.txt"), "--force"], "is this command's input"),
        (["predict", "--input", str(texts), "--output", str(bundle / "model.onnx"), "--force"], "is inside a bundle"),
        (["evaluate", "--results", str(results), "--labels", str(prepared), "--errors", str(prepared / "labels.npy"),
          "--force"], "is inside a prepared directory"),
        (["evaluate", "--results", str(results), "--labels", str(prepared), "--json", str(bundle / "eval.json")],
         "is inside a bundle"),
    ]:
        line = run_failing(argv, capsys)
        assert expected in line and "even with --force" in line, line
    assert snapshot(tmp_path) == before
