"""The reference's published figures, written down once: Huawei Ascend ModelZoo's RoBERTa inference guide (fairseq
roberta-base fine-tuned on SST-2), static batch × sequence-length models on an Ascend 310P3, timed with ais_bench.

`bench` sets them beside a roberta-base-shaped bundle's cells, `run` beside its two tables (by batch size at seq 70,
by sequence length). Throughputs are sentences/s, accuracies fractions of SST-2 dev (the guide prints percentages).
"""

from __future__ import annotations

DEVICE = "310P3"  # how table headers name it
NAME = f"Ascend {DEVICE} (reference guide)"
MODEL = "roberta-base"
# The guide's grid: its table 1's batch sizes, its table 2's sequence lengths and table 1's length (70).
DEFAULT_BATCH_SIZES = [1, 4, 8, 16, 32, 64]
DEFAULT_SEQ_LENS = [16, 32, 64, 70, 128]

# The one table. "by_batch_size": the guide's table 1 (seq 70): sentences/s per batch size, and accuracy (fp32
# baseline, and the NPU's). "by_seq_len": its table 2, one row per sequence length: accuracy at batch 1 (baseline,
# NPU), sentences/s at batch 1 and at the best batch size (which batch that was, it does not say). Table 2 has no
# row for 70.
FIGURES = {
    "by_batch_size": {
        "seq_len": 70,
        "accuracy": {"baseline": 0.948, "npu": 0.940},
        "sentences_per_s": {1: 205.0, 4: 817.0, 8: 1244.0, 16: 1463.0, 32: 1473.0, 64: 1206.0},
    },
    "by_seq_len": {
        16: {"accuracy": {"baseline": 0.867, "npu": 0.866}, "batch_1_sentences_per_s": 602.0, "best_sentences_per_s": 8649.0},
        32: {"accuracy": {"baseline": 0.938, "npu": 0.932}, "batch_1_sentences_per_s": 508.0, "best_sentences_per_s": 4718.0},
        64: {"accuracy": {"baseline": 0.947, "npu": 0.941}, "batch_1_sentences_per_s": 405.0, "best_sentences_per_s": 2413.0},
        128: {"accuracy": {"baseline": 0.947, "npu": 0.941}, "batch_1_sentences_per_s": 418.0, "best_sentences_per_s": 1100.0},
    },
}


def cell_sentences_per_s(batch_size: int, seq_len: int) -> float | None:
    """The guide's sentences/s at exactly `batch_size` × `seq_len` (table 1's row, or table 2's batch-1 cell), or None
    where it published none."""
    table_1 = FIGURES["by_batch_size"]
    if seq_len == table_1["seq_len"] and batch_size in table_1["sentences_per_s"]:
        return table_1["sentences_per_s"][batch_size]
    row = FIGURES["by_seq_len"].get(seq_len)
    return row["batch_1_sentences_per_s"] if row is not None and batch_size == 1 else None


def cells() -> dict[tuple[int, int], float]:
    """Every (batch size, seq len) → sentences/s the guide published at that exact shape."""
    shapes = [(b, FIGURES["by_batch_size"]["seq_len"]) for b in FIGURES["by_batch_size"]["sentences_per_s"]]
    shapes += [(1, seq) for seq in FIGURES["by_seq_len"]]
    return {shape: cell_sentences_per_s(*shape) for shape in shapes}
