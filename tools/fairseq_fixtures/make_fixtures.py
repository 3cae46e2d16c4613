#!/usr/bin/env python
"""Build fairseq oracle fixtures for roberta-infer's tests.

Run this with the python of the *fairseq* virtual environment (see
``setup_venv.sh``); fairseq is never a dependency of roberta-infer itself::

    .venv-fairseq/bin/python tools/fairseq_fixtures/make_fixtures.py \
        --shared /work/shared/data

It uses the real fairseq command line tools and APIs:

* GPT-2 BPE with fairseq's ``examples/roberta/multiprocessing_bpe_encoder``
  (run as ``python -m ...``), falling back to ``fairseq.data.encoders.gpt2_bpe``;
* ``fairseq-preprocess --only-source`` exactly like
  ``examples/roberta/preprocess_GLUE_tasks.sh``;
* ``fairseq-train --task sentence_prediction --arch roberta`` (tiny dims, CPU);
* ``RobertaModel.from_pretrained`` / the hub interface for the expected outputs;
* ``fairseq.data.data_utils.load_indexed_dataset`` to read binarized ids back.

Outputs (under ``--out``, default ``tests/fixtures/fairseq``)::

    tiny/checkpoint.pt          fairseq 0.12 layout (cfg, encoder.sentence_encoder.*)
    tiny/checkpoint_2019.pt     2019 layout (args Namespace, decoder.sentence_encoder.*)
    tiny/data/input0/dict.txt   small source dictionary built from the tiny corpus
    tiny/data/label/dict.txt    label dictionary
    tiny/expected.json          hub-interface ids / logits / labels for a few texts
    sst2_ids_sha256.json        digests of the ids of all SST-2 dev/test sentences
                                (full gpt2_bpe/dict.txt)
    bin/SST-2/{train,dev,test}.tsv      made-up sentences in GLUE SST-2's TSV layout
    bin/SST-2-bin/{input0,label}/...    their fairseq-preprocess output (mmap .bin/.idx + dict.txt)
    bin/expected.json                   the rows fairseq's MMapIndexedDataset reads back from it
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections import OrderedDict
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_ROOT / "tests" / "fixtures" / "fairseq"

HEAD = "sentence_classification_head"
SEED = 1

# Tiny model / training hyper-parameters.
TINY = dict(
    encoder_layers=2,
    encoder_embed_dim=32,
    encoder_ffn_embed_dim=64,
    encoder_attention_heads=4,
    max_positions=64,
    num_classes=2,
)
MAX_UPDATE = 100

# Texts for expected.json. The encoded text is ``text.strip()``.
TEXTS = [
    "it 's a charming and often affecting journey .",
    "the worst movie i have seen in years .",
    "This movie was absolutely WONDERFUL!",
    "great movie 😀",
    "café crème brûlée",
    "日本語の映画はとても良かった。",
    "",
    "   ",
    "  leading and trailing spaces \t ",
    "multiple   internal   spaces",
    "I don't think it's worth $12.50 -- 100% overrated?!",
    "Numbers: 1, 22, 333, 4444, 3.14159 and 2024-01-01.",
    " ".join(["a truly great and moving film ."] * 16),  # > max_positions tokens
]
BATCH_INDICES = [0, 3, 6, 10, 2]  # texts of different lengths for the padded batch


def log(msg: str) -> None:
    print(f"[make_fixtures] {msg}", file=sys.stderr, flush=True)


def patch_torch_load() -> None:
    """fairseq 0.12 calls torch.load() without weights_only; torch>=2.6 defaults
    to weights_only=True, which cannot unpickle fairseq checkpoints."""
    import torch

    if getattr(torch.load, "_fixtures_patched", False):
        return
    orig = torch.load

    def load(*args, **kwargs):
        kwargs.setdefault("weights_only", False)
        return orig(*args, **kwargs)

    load._fixtures_patched = True  # type: ignore[attr-defined]
    torch.load = load


def child_env() -> dict:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0")
    return env


def run(cmd: list[str], cwd: Path, stdout=None) -> None:
    log("$ " + " ".join(shlex.quote(str(c)) for c in cmd))
    subprocess.run([str(c) for c in cmd], cwd=cwd, env=child_env(), check=True, stdout=stdout)


def fairseq_bin(name: str) -> str:
    exe = Path(sys.executable).parent / name
    return str(exe) if exe.exists() else name


# --------------------------------------------------------------------------- BPE


def bpe_module() -> str | None:
    """Name of fairseq's multiprocessing_bpe_encoder module, if importable."""
    for name in (
        "examples.roberta.multiprocessing_bpe_encoder",  # fairseq source checkout
        "fairseq.examples.roberta.multiprocessing_bpe_encoder",  # pip package
    ):
        try:
            if importlib.util.find_spec(name) is not None:
                return name
        except ModuleNotFoundError:
            continue
    return None


def bpe_encode(inp: Path, out: Path, shared: Path, workdir: Path) -> str:
    """GPT-2 BPE-encode ``inp`` line by line (stripped, empty lines kept)."""
    enc_json = shared / "gpt2_bpe" / "encoder.json"
    vocab_bpe = shared / "gpt2_bpe" / "vocab.bpe"
    mod = bpe_module()
    if mod is not None:
        run(
            [sys.executable, "-m", mod, "--encoder-json", enc_json, "--vocab-bpe", vocab_bpe,
             "--inputs", inp, "--outputs", out, "--workers", "1", "--keep-empty"],
            cwd=workdir,
        )
        return f"python -m {mod} --keep-empty"
    # Fallback: fairseq's own GPT2BPE class (same encoder as the script above).
    from fairseq.data.encoders.gpt2_bpe import GPT2BPE, GPT2BPEConfig

    bpe = GPT2BPE(GPT2BPEConfig(gpt2_encoder_json=str(enc_json), gpt2_vocab_bpe=str(vocab_bpe)))
    with open(inp, encoding="utf-8") as fi, open(out, "w", encoding="utf-8") as fo:
        for line in fi:
            print(bpe.encode(line.strip()), file=fo)
    return "fairseq.data.encoders.gpt2_bpe.GPT2BPE"


def tsv_column(path: Path, column: int) -> list[str]:
    """``tail -n +2 path | cut -f<column>`` (1-based column)."""
    text = path.read_bytes().decode("utf-8")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.split("\t")[column - 1] for line in lines[1:]]


def write_lines(path: Path, lines: list[str]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(line + "\n")


# ------------------------------------------------------------------ tiny model


def train_cmd(data_bin: Path, save_dir: Path) -> list[str]:
    return [
        str(data_bin),
        "--task", "sentence_prediction",
        "--arch", "roberta",
        "--encoder-layers", str(TINY["encoder_layers"]),
        "--encoder-embed-dim", str(TINY["encoder_embed_dim"]),
        "--encoder-ffn-embed-dim", str(TINY["encoder_ffn_embed_dim"]),
        "--encoder-attention-heads", str(TINY["encoder_attention_heads"]),
        "--max-positions", str(TINY["max_positions"]),
        "--shorten-method", "truncate",
        "--num-classes", str(TINY["num_classes"]),
        "--init-token", "0", "--separator-token", "2",
        "--criterion", "sentence_prediction",
        "--classification-head-name", HEAD,
        "--batch-size", "16", "--required-batch-size-multiple", "1",
        "--max-update", str(MAX_UPDATE), "--max-epoch", "50",
        "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--adam-eps", "1e-06",
        "--weight-decay", "0.1", "--clip-norm", "0.0",
        "--lr-scheduler", "polynomial_decay", "--lr", "0.002",
        "--total-num-update", str(MAX_UPDATE), "--warmup-updates", "5",
        "--dropout", "0.1", "--attention-dropout", "0.1",
        "--seed", str(SEED), "--cpu", "--num-workers", "0",
        "--save-dir", str(save_dir), "--no-epoch-checkpoints",
        "--best-checkpoint-metric", "accuracy", "--maximize-best-checkpoint-metric",
        "--log-format", "simple", "--log-interval", "10",
    ]


def build_tiny(shared: Path, work: Path, out_tiny: Path, n_train: int, n_valid: int) -> dict:
    raw = work / "tiny_raw"
    raw.mkdir()
    sst = shared / "SST-2"
    splits = {
        "train": (sst / "train.tsv", slice(0, n_train)),
        "dev": (sst / "dev.tsv", slice(0, n_valid)),
    }
    bpe_used = None
    for split, (path, sl) in splits.items():
        # SST-2 (GLUE recipe): INPUT_COLUMNS=(1), LABEL_COLUMN=2.
        write_lines(raw / f"{split}.raw.input0", tsv_column(path, 1)[sl])
        write_lines(raw / f"{split}.label", tsv_column(path, 2)[sl])
        bpe_used = bpe_encode(raw / f"{split}.raw.input0", raw / f"{split}.input0", shared, work)

    data_bin = work / "tiny-bin"
    # input0: small dictionary built from the tiny training corpus (no --srcdict).
    run([fairseq_bin("fairseq-preprocess"), "--only-source",
         "--trainpref", raw / "train.input0", "--validpref", raw / "dev.input0",
         "--destdir", data_bin / "input0", "--workers", "1"], cwd=work)
    run([fairseq_bin("fairseq-preprocess"), "--only-source",
         "--trainpref", raw / "train.label", "--validpref", raw / "dev.label",
         "--destdir", data_bin / "label", "--workers", "1"], cwd=work)

    save_dir = work / "tiny-ckpt"
    # Relative paths (cwd=work) so no temp-dir path ends up in the checkpoint's cfg.
    targs = train_cmd(Path(data_bin.name), Path(save_dir.name))
    with open(work / "train.log", "w") as logf:
        run([fairseq_bin("fairseq-train"), *targs], cwd=work, stdout=logf)
    log("training log tail:\n" + "".join(open(work / "train.log").readlines()[-6:]))

    (out_tiny / "data" / "input0").mkdir(parents=True, exist_ok=True)
    (out_tiny / "data" / "label").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(data_bin / "input0" / "dict.txt", out_tiny / "data" / "input0" / "dict.txt")
    shutil.copyfile(data_bin / "label" / "dict.txt", out_tiny / "data" / "label" / "dict.txt")
    shutil.copyfile(save_dir / "checkpoint_last.pt", out_tiny / "checkpoint.pt")
    return {"bpe": bpe_used, "train_args": targs, "data_bin": data_bin, "save_dir": save_dir}


# ------------------------------------------------------- binarised SST-2 layout

# Made-up sentences (not SST-2's), in GLUE SST-2's TSV layout; label 1 is the commoner one, as in SST-2's
# train split, so fairseq's label dictionary lists "1" first. Valid/test hold words train lacks (<unk>).
BIN_SENTENCES = {
    "train": [
        ("a warm , funny and clever film .", "1"), ("the cast is wonderful and the story sings .", "1"),
        ("great movie 😀", "1"), ("café crème brûlée , naïve and sweet", "1"),
        ("i loved every minute of it !", "1"), ("北京 is lovely in this film", "1"),
        ("a joyous , moving ride", "1"), ("it 's a charming and often affecting journey .", "1"),
        ("the plot is dull and the jokes fall flat .", "0"), ("a tedious mess 😴", "0"),
        ("i want my 2 hours back -- 100 % overrated", "0"), ("bleak , slow and pointless", "0"),
    ],
    "dev": [
        ("a funny , clever and moving film .", "1"), ("wonderful 😀 😀", "1"),
        ("the jokes are dull", "0"), ("an utterly unwatchable catastrophe , zürich-style", "0"),
        ("", "1"), ("   leading and trailing spaces   ", "0"),
        (" ".join(["a truly great and moving film ."] * 12), "1"),
    ],
    "test": ["a charming ride", "naïve , dull and slow 😴", "日本語の映画はとても良かった。"],
}


def build_binarised(shared: Path, work: Path, out_bin: Path) -> dict:
    """Made-up TSVs → BPE → fairseq-preprocess (as preprocess_GLUE_tasks.sh) → what fairseq reads back."""
    from fairseq.data import Dictionary, data_utils
    from fairseq.data.indexed_dataset import MMapIndexedDataset

    tsv_dir, raw, data_bin = out_bin / "SST-2", work / "bin_raw", out_bin / "SST-2-bin"
    for d in (tsv_dir, raw):
        d.mkdir(parents=True)
    for split, rows in BIN_SENTENCES.items():
        if split == "test":
            write_lines(tsv_dir / "test.tsv", ["index\tsentence", *(f"{i}\t{t}" for i, t in enumerate(rows))])
        else:
            write_lines(tsv_dir / f"{split}.tsv", ["sentence\tlabel", *(f"{t}\t{label}" for t, label in rows)])
        column = 2 if split == "test" else 1
        write_lines(raw / f"{split}.raw.input0", [line.strip() for line in tsv_column(tsv_dir / f"{split}.tsv", column)])
        bpe_encode(raw / f"{split}.raw.input0", raw / f"{split}.input0", shared, work)
        if split != "test":
            write_lines(raw / f"{split}.label", tsv_column(tsv_dir / f"{split}.tsv", 2))
    run([fairseq_bin("fairseq-preprocess"), "--only-source", "--trainpref", raw / "train.input0",
         "--validpref", raw / "dev.input0", "--testpref", raw / "test.input0",
         "--destdir", data_bin / "input0", "--workers", "1"], cwd=work)
    run([fairseq_bin("fairseq-preprocess"), "--only-source", "--trainpref", raw / "train.label",
         "--validpref", raw / "dev.label", "--destdir", data_bin / "label", "--workers", "1"], cwd=work)
    for junk in data_bin.rglob("preprocess.log"):
        junk.unlink()

    source, labels = (Dictionary.load(str(data_bin / d / "dict.txt")) for d in ("input0", "label"))
    expected = {"impl": "mmap", "input0": {}, "label": {},
                "label_symbols": [labels[i] for i in range(labels.nspecial, len(labels))]}
    for split in ("train", "valid", "test"):
        mmap = MMapIndexedDataset(str(data_bin / "input0" / split))
        loaded = data_utils.load_indexed_dataset(str(data_bin / "input0" / split), source)
        rows = [[int(x) for x in mmap[i].tolist()] for i in range(len(mmap))]
        assert rows == [[int(x) for x in loaded[i].tolist()] for i in range(len(loaded))]
        expected["input0"][split] = {"dtype": str(mmap._index.dtype.__name__), "rows": rows}
        if split != "test":
            mmap = MMapIndexedDataset(str(data_bin / "label" / split))
            expected["label"][split] = [[int(x) for x in mmap[i].tolist()] for i in range(len(mmap))]
    with open(out_bin / "expected.json", "w", encoding="utf-8") as f:
        json.dump(expected, f, indent=1, ensure_ascii=False)
        f.write("\n")
    return expected


# ------------------------------------------------------------ 2019 layout


def legacy_args(train_args: list[str]) -> argparse.Namespace:
    """The flat argparse.Namespace fairseq-train would have stored in 2019."""
    from fairseq import options

    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, input_args=train_args)
    # Keep only builtin-typed values (so the pickle holds Namespace + builtins).
    for k, v in list(vars(args).items()):
        if v is None or isinstance(v, (bool, int, float, str)):
            continue
        if isinstance(v, (list, tuple)) and all(
            x is None or isinstance(x, (bool, int, float, str)) for x in v
        ):
            setattr(args, k, list(v))
            continue
        if hasattr(v, "value") and isinstance(v.value, str):  # enum-like
            setattr(args, k, v.value)
            continue
        raise TypeError(f"unexpected arg type {k}={v!r} ({type(v)})")
    return args


def write_2019(ckpt_new: Path, ckpt_old: Path, train_args: list[str]) -> None:
    import torch

    state = torch.load(ckpt_new, map_location="cpu", weights_only=False)
    model = OrderedDict()
    for k, v in state["model"].items():
        if k == "encoder.sentence_encoder.version":
            continue  # 2019 TransformerSentenceEncoder had no version buffer
        nk = "decoder." + k[len("encoder."):] if k.startswith("encoder.") else k
        nk = nk.replace(".layernorm_embedding.", ".emb_layer_norm.")
        model[nk] = v
    hist = state["optimizer_history"][-1]
    extra = state["extra_state"]
    it = extra["train_iterator"]
    old = {
        "args": legacy_args(train_args),
        "model": model,
        "optimizer_history": [
            {
                "criterion_name": str(hist["criterion_name"]),
                "optimizer_name": str(hist["optimizer_name"]),
                "lr_scheduler_state": {"best": float(hist["lr_scheduler_state"]["best"])},
                "num_updates": int(hist["num_updates"]),
            }
        ],
        "extra_state": {
            "epoch": int(it["epoch"]),
            "train_iterator": {
                "epoch": int(it["epoch"]),
                "iterations_in_epoch": int(it["iterations_in_epoch"]),
                "shuffle": bool(it.get("shuffle", True)),
            },
            "val_loss": float(extra["val_loss"]),
        },
        "last_optimizer_state": None,  # optimizer state dropped (as in released models)
    }
    torch.save(old, ckpt_old)


# ------------------------------------------------------------ expected.json


def load_hub(tiny: Path, checkpoint_file: str, shared: Path):
    from fairseq.models.roberta import RobertaModel

    roberta = RobertaModel.from_pretrained(
        str(tiny),
        checkpoint_file=checkpoint_file,
        data_name_or_path="./data",
        bpe="gpt2",
        gpt2_encoder_json=str(shared / "gpt2_bpe" / "encoder.json"),
        gpt2_vocab_bpe=str(shared / "gpt2_bpe" / "vocab.bpe"),
    )
    roberta.eval()
    return roberta


def hub_results(roberta, full_dict=None) -> list[dict]:
    import torch

    max_positions = int(roberta.model.max_positions())
    ld = roberta.task.label_dictionary
    n_cls = roberta.model.classification_heads[HEAD].out_proj.out_features
    class_names = [ld.string([k + ld.nspecial]) for k in range(n_cls)]
    rows = []
    with torch.no_grad():
        for text in TEXTS:
            tokens = roberta.encode(text.strip())
            truncated = tokens.numel() > max_positions
            if truncated:
                tokens = torch.cat([tokens[: max_positions - 1], torch.tensor([2])])
            logits = roberta.predict(HEAD, tokens, return_logits=True)[0]
            row = {
                "text": text,
                "ids": [int(i) for i in tokens.tolist()],
                "truncated": bool(truncated),
                "logits": [float(x) for x in logits.tolist()],
                "label": class_names[int(logits.argmax())],
            }
            if full_dict is not None:
                # Extra tokeniser oracles: raw GPT-2 BPE ids (before any dictionary)
                # and the ids with the full RoBERTa dict.txt (not truncated).
                bpe = roberta.bpe.encode(text.strip())
                row["gpt2_bpe"] = [int(t) for t in bpe.split()]
                row["ids_full_dict"] = [int(i) for i in full_dict.encode_line(
                    "<s> " + bpe + " </s>", append_eos=False, add_if_not_exist=False
                ).tolist()]
            rows.append(row)
    return rows


def batch_results(roberta, rows: list[dict]) -> dict:
    import torch

    seqs = [rows[i]["ids"] for i in BATCH_INDICES]
    width = max(len(s) for s in seqs)
    pad = roberta.task.source_dictionary.pad()
    batch = torch.full((len(seqs), width), pad, dtype=torch.long)
    for r, s in enumerate(seqs):
        batch[r, : len(s)] = torch.tensor(s)
    with torch.no_grad():
        logits, _ = roberta.model(batch, features_only=False, classification_head_name=HEAD)
    single = torch.tensor([rows[i]["logits"] for i in BATCH_INDICES])
    diff = float((logits - single).abs().max())
    assert diff < 1e-5, f"padded batch differs from single predictions by {diff}"
    return {
        "indices": BATCH_INDICES,
        "pad_id": int(pad),
        "ids": batch.tolist(),
        "logits": [[float(x) for x in row] for row in logits.tolist()],
        "max_abs_diff_vs_single": diff,
    }


def model_hparams(roberta) -> dict:
    m = roberta.cfg.model
    keys = [
        "_name", "arch", "encoder_layers", "encoder_embed_dim", "encoder_ffn_embed_dim",
        "encoder_attention_heads", "max_positions", "activation_fn", "pooler_activation_fn",
        "encoder_normalize_before", "layernorm_embedding", "no_scale_embedding",
        "encoder_learned_pos", "no_token_positional_embeddings", "untie_weights_roberta",
        "pooler_dropout", "dropout", "attention_dropout", "activation_dropout",
        "spectral_norm_classification_head", "load_checkpoint_heads",
    ]
    out = {}
    for k in keys:
        v = m.get(k, None) if hasattr(m, "get") else getattr(m, k, None)
        if v is not None:
            out[k] = v if isinstance(v, (bool, int, float, str)) else str(v)
    return out


def check_same_models(a, b) -> None:
    import torch

    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys(), sorted(set(sa) ^ set(sb))
    for k in sa:
        if k.endswith(".version"):  # bookkeeping buffer, set by upgrade_state_dict
            continue
        assert torch.equal(sa[k], sb[k]), f"parameter {k} differs between layouts"


# ------------------------------------------------------------ SST-2 ids oracle


def sst2_ids(shared: Path, work: Path, full_dict: Path) -> tuple[dict, str]:
    from fairseq.data import Dictionary, data_utils

    d = work / "sst2"
    d.mkdir()
    sst = shared / "SST-2"
    # GLUE recipe for SST-2: INPUT_COLUMNS=(1) for train/dev, TEST_INPUT_COLUMNS=(2).
    write_lines(d / "dev.raw.input0", tsv_column(sst / "dev.tsv", 1))
    write_lines(d / "test.raw.input0", tsv_column(sst / "test.tsv", 2))
    bpe_used = None
    for split in ("dev", "test"):
        bpe_used = bpe_encode(d / f"{split}.raw.input0", d / f"{split}.input0", shared, work)
    run([fairseq_bin("fairseq-preprocess"), "--only-source",
         "--validpref", d / "dev.input0", "--testpref", d / "test.input0",
         "--destdir", d / "bin", "--workers", "1", "--srcdict", full_dict], cwd=work)

    dictionary = Dictionary.load(str(d / "bin" / "dict.txt"))
    result = {}
    for split, fs_split in (("dev", "valid"), ("test", "test")):
        ds = data_utils.load_indexed_dataset(str(d / "bin" / fs_split), dictionary)
        assert ds is not None, f"could not load {fs_split}"
        lines = []
        for i in range(len(ds)):
            ids = [dictionary.bos()] + [int(x) for x in ds[i].tolist()]
            assert ids[-1] == dictionary.eos()
            lines.append(" ".join(map(str, ids)) + "\n")
        if split == "dev":
            assert lines[0] == "0 405 128 29 10 18452 8 747 7920 3251 479 2\n", lines[0]
        blob = "".join(lines).encode("utf-8")
        result[split] = {"n": len(lines), "sha256": hashlib.sha256(blob).hexdigest()}
        log(f"SST-2 {split}: n={len(lines)} sha256={result[split]['sha256']}")
    assert result["dev"]["n"] == 872 and result["test"]["n"] == 1821, result
    return result, bpe_used


# ------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", type=Path, default=Path("/work/shared/data"),
                    help="reference data dir with SST-2/ and gpt2_bpe/")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help="fixture output dir (default: tests/fixtures/fairseq)")
    ap.add_argument("--n-train", type=int, default=400,
                    help="first N SST-2 train sentences for the tiny corpus")
    ap.add_argument("--n-valid", type=int, default=100,
                    help="first N SST-2 dev sentences as the tiny valid split")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="keep intermediate files here (default: a temp dir, removed)")
    ap.add_argument("--skip-tiny", action="store_true", help="only build sst2_ids_sha256.json")
    ap.add_argument("--skip-sst2", action="store_true", help="only build the tiny model fixtures")
    ap.add_argument("--skip-bin", action="store_true", help="do not build the binarised fixture (bin/)")
    args = ap.parse_args(argv)

    patch_torch_load()
    import fairseq
    import torch

    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    shared = args.shared.resolve()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="fairseq_fixtures_")
        work = Path(tmp.name)
    else:
        work = args.workdir.resolve()
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)

    try:
        if not args.skip_tiny:
            tiny = out / "tiny"
            if tiny.exists():
                shutil.rmtree(tiny)
            tiny.mkdir(parents=True)
            info = build_tiny(shared, work, tiny, args.n_train, args.n_valid)
            write_2019(tiny / "checkpoint.pt", tiny / "checkpoint_2019.pt", info["train_args"])

            roberta = load_hub(tiny, "checkpoint.pt", shared)
            roberta_2019 = load_hub(tiny, "checkpoint_2019.pt", shared)
            check_same_models(roberta, roberta_2019)
            from fairseq.data import Dictionary

            full_dict = Dictionary.load(str(shared / "gpt2_bpe" / "dict.txt"))
            full_dict.add_symbol("<mask>")
            rows = hub_results(roberta, full_dict)
            rows_2019 = hub_results(roberta_2019)
            for r, r19 in zip(rows, rows_2019):
                assert r["ids"] == r19["ids"], (r, r19)
                assert r["logits"] == r19["logits"], (r, r19)
            assert any(r["truncated"] for r in rows)

            ld = roberta.task.label_dictionary
            n_cls = roberta.model.classification_heads[HEAD].out_proj.out_features
            expected = {
                "fairseq_version": fairseq.__version__,
                "torch_version": torch.__version__,
                "bpe_encoder": info["bpe"],
                "checkpoints": ["checkpoint.pt", "checkpoint_2019.pt"],
                "data_dir": "data",
                "head": HEAD,
                "text_is_stripped": True,
                "max_positions": int(roberta.model.max_positions()),
                "class_names": [ld.string([k + ld.nspecial]) for k in range(n_cls)],
                "dictionary_size": len(roberta.task.source_dictionary),
                "full_dictionary_size": len(full_dict),
                "label_dictionary_size": len(ld),
                "hparams": model_hparams(roberta),
                "fairseq_train_args": info["train_args"],
                "texts": rows,
                "batch": batch_results(roberta, rows),
            }
            with open(tiny / "expected.json", "w", encoding="utf-8") as f:
                json.dump(expected, f, indent=1, ensure_ascii=False)
                f.write("\n")
            log(f"wrote {tiny}")

        if not args.skip_sst2:
            res, bpe_used = sst2_ids(shared, work, shared / "gpt2_bpe" / "dict.txt")
            doc = {
                "dev": res["dev"],
                "test": res["test"],
                "digest": (
                    "sha256 of the UTF-8 bytes of one line per sentence in file order "
                    "(dev.tsv column 1, test.tsv column 2, header skipped, sentence stripped), "
                    "each line the fairseq RoBERTa ids (<s>=0 first, </s>=2 last) separated by "
                    "single spaces and terminated by \"\\n\""
                ),
                "bpe_encoder": bpe_used,
                "dictionary": "gpt2_bpe/dict.txt (fairseq RoBERTa dictionary)",
            }
            with open(out / "sst2_ids_sha256.json", "w", encoding="utf-8") as f:
                json.dump(doc, f, indent=1)
                f.write("\n")
            log(f"wrote {out / 'sst2_ids_sha256.json'}")
        if not args.skip_bin:
            if (out / "bin").exists():
                shutil.rmtree(out / "bin")
            build_binarised(shared, work, out / "bin")
            log(f"wrote {out / 'bin'}")
    finally:
        if tmp is not None:
            tmp.cleanup()

    total = 0
    for p in sorted(out.rglob("*")):
        if p.is_file():
            size = p.stat().st_size
            total += size
            assert size < 2 * 1024 * 1024, f"{p} is too large ({size} bytes)"
            log(f"{size:>9}  {p.relative_to(out)}")
    assert total < 5 * 1024 * 1024, f"fixtures too large ({total} bytes)"
    log(f"total {total} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
