"""What the default model's full 50,265-row vocabulary buys over a table of the tokens SST-2 train holds.

A smaller embedding table (the tokens seen in training, the rest mapped to `<unk>`) would save about 24 MB of the
60.6 MB of fp16 weights, but every token training never saw loses its pretrained meaning. This scores SST-2 dev with
the shipped model twice — as shipped, and with every token unseen in SST-2 train mapped to `<unk>` (what the small
table would compute) — split into the sentences that hold an unseen token and the rest. Prints JSON.

    .venv/bin/python tools/default_model/unseen_words.py [--data DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np

from roberta_infer.checkpoint import load_classifier
from roberta_infer.data import read_sst2, sst2_file
from roberta_infer.default import default_model_dir
from roberta_infer.predict import classify
from roberta_infer.prepare import label_indices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="SST-2 folder (default: $ROBERTA_INFER_DATA or ./data)")
    args = parser.parse_args()
    classifier = load_classifier(default_model_dir())
    encoder = classifier.encoder
    train = read_sst2(sst2_file(args.data, "train"))
    dev = read_sst2(sst2_file(args.data, "dev"))
    seen = np.zeros(classifier.model.config.vocab_size, dtype=bool)
    for row in encoder.encode(train.sentences):
        seen[row] = True
    seen[[encoder.bos, encoder.pad, encoder.eos, encoder.unk]] = True
    rows = encoder.encode(dev.sentences)
    unseen = np.array([not seen[row].all() for row in rows])
    gold = label_indices(dev.labels, classifier.class_names)
    small = dataclasses.replace(encoder, id_map=np.where(seen[encoder.id_map], encoder.id_map, encoder.unk))
    result = {"dev_sentences": len(rows), "with_unseen_token": int(unseen.sum()),
              "tokens_seen_in_train": int(seen.sum()), "vocabulary": int(seen.size)}
    for name, enc in (("full_table", encoder), ("seen_tokens_only", small)):
        correct = classify(dataclasses.replace(classifier, encoder=enc), dev.sentences).argmax(1) == gold
        result[name] = {"accuracy": round(100 * float(correct.mean()), 2),
                        "with_unseen_token": round(100 * float(correct[unseen].mean()), 2),
                        "without": round(100 * float(correct[~unseen].mean()), 2)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
