"""Accuracy over all N (not N−1), matched by class name; the reference's own output and label files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from roberta_infer.cli import main
from roberta_infer.errors import RobertaInferError
from roberta_infer.evaluate import accuracy


def test_accuracy_counts_every_sample_and_maps_class_order():
    logits = np.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0], [0.0, 1.0]])  # predicts 0, 1, 0, 1
    # labels in SST-2 order (0 = "0"), model in fairseq order (class 0 = "1")
    result = accuracy(logits, ["1", "0"], np.array([1, 0, 0, 0]), ["0", "1"])
    assert (result["accuracy"], result["correct"], result["samples"]) == (0.75, 3, 4)  # without the name mapping: 1 of 4
    assert result["confusion"] == [[1, 0], [1, 2]]  # gold "1" (model class 0) ×1, gold "0" ×3 of which one called "1"


def test_mismatched_inputs():
    with pytest.raises(RobertaInferError, match="3 results but 2 labels"):
        accuracy(np.zeros((3, 2)), ["a", "b"], np.array([0, 1]), ["a", "b"])
    with pytest.raises(RobertaInferError, match="does not have"):
        accuracy(np.zeros((2, 2)), ["a", "b"], np.array([0, 1]), ["a", "c"])


def test_scores_against_hand_counted_binary_case():
    # gold (model order: "neg", "pos"): 6 neg, 4 pos; predicted: neg→ 5 neg 1 pos; pos→ 2 neg 2 pos
    logits = np.array([[1.0, 0.0]] * 5 + [[0.0, 1.0]] + [[1.0, 0.0]] * 2 + [[0.0, 1.0]] * 2)
    result = accuracy(logits, ["neg", "pos"], np.array([0] * 6 + [1] * 4), ["neg", "pos"])
    assert result["confusion"] == [[5, 1], [2, 2]]
    tp, tn, fp, fn = 2, 5, 1, 2  # positive class "pos"
    assert result["per_class"]["pos"] == pytest.approx({"precision": tp / (tp + fp), "recall": tp / (tp + fn),
                                                        "f1": 2 * tp / (2 * tp + fp + fn), "support": 4})
    assert result["per_class"]["neg"] == pytest.approx({"precision": 5 / 7, "recall": 5 / 6, "f1": 10 / 13, "support": 6})
    assert result["macro_f1"] == pytest.approx((4 / 7 + 10 / 13) / 2)
    mcc = (tp * tn - fp * fn) / np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))  # the binary textbook form
    assert result["mcc"] == pytest.approx(mcc)
    assert result["accuracy"] == 0.7


def test_three_class_mcc_against_a_brute_force_correlation():
    """Multi-class MCC equals the Pearson correlation of one-hot gold and predicted matrices (Gorodkin's definition)."""
    rng = np.random.default_rng(3)
    gold, predicted = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    predicted[:120] = gold[:120]
    result = accuracy(np.eye(3)[predicted], ["a", "b", "c"], gold, ["a", "b", "c"])
    x, y = np.eye(3)[gold], np.eye(3)[predicted]
    xc, yc = x - x.mean(axis=0), y - y.mean(axis=0)
    assert result["mcc"] == pytest.approx((xc * yc).sum() / np.sqrt((xc**2).sum() * (yc**2).sum()))
    assert np.array(result["confusion"]).sum() == 200


def test_a_class_never_predicted_scores_zero_not_nan():
    result = accuracy(np.array([[1.0, 0.0]] * 3), ["a", "b"], np.array([0, 0, 1]), ["a", "b"])
    assert result["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert result["mcc"] == 0.0


# ---------------------------------------------------------------- the reference's own files

# fairseq's SST-2 label dictionary: label "1" is line 0 (it is the commoner one in train), "0" line 1.
LABEL_DICT = "1 36\n0 28\nmadeupword0000 0\nmadeupword0001 0\n"
# roberta_base.label: per row the label's line in LABEL_DICT, so 0 means label "1" (positive).
GOLD = [0, 1, 1, 0, 0, 1]
# logits in the label dictionary's class order (class 0 = label "1"): argmax 0, 1, 0, 0, 1, 1 → rows 0, 1, 3, 5 right.
LOGITS = np.array([[2.0, -1.0], [-0.5, 0.5], [3.0, 1.0], [1.0, 0.0], [0.0, 2.0], [-2.0, 2.0]], dtype=np.float32)


def _reference_files(tmp_path, *, tool: str, batch: int):
    (tmp_path / "label").mkdir(parents=True)
    (tmp_path / "label" / "dict.txt").write_text(LABEL_DICT)
    np.array(GOLD, dtype=np.int64).tofile(tmp_path / "roberta_base.label")
    out = tmp_path / "out"
    out.mkdir()
    name = {"ais_bench": "src_tokens_{}_0.bin", "ais_bench npy": "src_tokens_{}_0.npy",
            "msame": "src_tokens_{}_output_0.bin"}[tool]
    for i in range(len(GOLD) // batch):
        rows = LOGITS[i * batch : (i + 1) * batch]
        np.save(out / name.format(i), rows) if name.endswith(".npy") else rows.tofile(out / name.format(i))
    return out, tmp_path / "roberta_base.label", tmp_path / "label" / "dict.txt"


@pytest.mark.parametrize("tool,batch", [("ais_bench", 1), ("ais_bench", 3), ("ais_bench npy", 2), ("msame", 2), ("msame", 6)])
def test_reference_outputs_and_label_file(tmp_path, tool, batch):
    out, labels, label_dict = _reference_files(tmp_path, tool=tool, batch=batch)
    assert main(["evaluate", "--results", str(out), "--labels", str(labels), "--label-dict", str(label_dict),
                 "--json", str(tmp_path / "e.json")]) == 0
    # 4 of 6 right: the reference would report 1 - 2/((6/batch - 1) * batch), e.g. 0.6 at batch 1; we divide by N.
    result = json.loads((tmp_path / "e.json").read_text())
    assert (result["accuracy"], result["correct"], result["samples"]) == (4 / 6, 4, 6)


def test_reference_outputs_named_by_class_names(tmp_path):
    """Logits in negative/positive order, labels from the label dictionary ("1" first): matched by name."""
    out, labels, label_dict = _reference_files(tmp_path, tool="ais_bench", batch=2)
    for i in range(3):  # the same scores written in the other class order
        (out / f"src_tokens_{i}_0.bin").write_bytes(LOGITS[2 * i : 2 * i + 2, ::-1].copy().tobytes())
    assert main(["evaluate", "--results", str(out), "--labels", str(labels), "--label-dict", str(label_dict),
                 "--class-names", "negative,positive", "--json", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["correct"] == 4


def test_reference_files_bad_inputs(tmp_path, capsys):
    out, labels, label_dict = _reference_files(tmp_path, tool="ais_bench", batch=2)

    def error(*args: str) -> str:
        assert main(["evaluate", "--results", str(out), *args]) == 2
        return capsys.readouterr().err
    (tmp_path / "prep").mkdir()
    assert "class count is unknown: give --class-names" in error("--labels", str(tmp_path / "prep"))
    assert "needs --label-dict" in error("--labels", str(labels), "--class-names", "1,0")
    assert "not whole rows of 3 class logits" in error("--labels", str(labels), "--class-names", "a,b,c")
    (out / "src_tokens_1_0.bin").unlink()
    assert "has 2 numbered files but no src_tokens_1_0" in error("--labels", str(labels), "--label-dict", str(label_dict))
    labels.write_bytes(np.array([0, 7], dtype=np.int64).tobytes())
    out, _, _ = _reference_files(tmp_path / "again", tool="msame", batch=1)
    assert "label index 7, but" in error("--labels", str(labels), "--label-dict", str(label_dict))
    labels.write_bytes(b"\x00" * 12)
    assert "not whole int64 labels" in error("--labels", str(labels), "--label-dict", str(label_dict))


def test_evaluate_scores_and_errors_file_from_a_prepared_split(tmp_path, hf_model, capsys):
    """prepare → infer → evaluate --errors: the misclassified texts are those `predict` gets wrong on the same TSV."""
    from roberta_infer.bundle import build_bundle
    from roberta_infer.checkpoint import load_classifier
    from roberta_infer.data import read_sst2
    from roberta_infer.predict import predict

    data = tmp_path / "SST-2"
    data.mkdir()
    rows = ["a gorgeous , witty , seductive movie .\t1", "the plot is nothing but boilerplate clichés\t0",
            "it 's not a bad film\t1", "utterly dull\t0", "a masterpiece\t1", "bored for 120 minutes\t0"]
    (data / "dev.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n", encoding="utf-8")
    classifier = load_classifier(hf_model)
    build_bundle(classifier, tmp_path / "bundle", progress=lambda _: None)
    assert main(["prepare", "--data", str(data), "--model", str(hf_model), "--seq-len", "32", "--out",
                 str(tmp_path / "prep")]) == 0
    assert main(["infer", "--model", str(tmp_path / "bundle"), "--input", str(tmp_path / "prep"), "--out",
                 str(tmp_path / "res"), "--batch-size", "4"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--results", str(tmp_path / "res"), "--labels", str(tmp_path / "prep"),
                 "--errors", str(tmp_path / "errors.jsonl")]) == 0
    out = capsys.readouterr().out
    split = read_sst2(data / "dev.tsv")
    gold = {"0": "negative", "1": "positive"}
    expected = [(i, r["text"], gold[label], r["label"]) for i, (r, label) in
                enumerate(zip(predict(classifier, split.sentences), split.labels)) if r["label"] != gold[label]]
    errors = [json.loads(line) for line in (tmp_path / "errors.jsonl").read_text().splitlines()]
    assert [(e["index"], e["text"], e["gold"], e["predicted"]) for e in errors] == expected
    assert all(0.5 <= e["score"] <= 1 for e in errors)
    assert f"accuracy {100 * (6 - len(expected)) / 6:.2f} %" in out and "confusion matrix" in out and "MCC" in out
    (data / "dev.tsv").write_text("sentence\tlabel\nchanged\t1\n", encoding="utf-8")
    assert main(["evaluate", "--results", str(tmp_path / "res"), "--labels", str(tmp_path / "prep"),
                 "--errors", str(tmp_path / "e2.jsonl")]) == 2
    assert "is gone or changed" in capsys.readouterr().err and not (tmp_path / "e2.jsonl").exists()
    assert main(["evaluate", "--results", str(tmp_path / "res"), "--labels", str(tmp_path / "prep"),
                 "--class-names", "a,b,c", "--json", str(tmp_path / "e3.json")]) == 2
    assert "--class-names a,b,c differ from the classes" in capsys.readouterr().err and not (tmp_path / "e3.json").exists()
