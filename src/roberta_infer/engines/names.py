"""The bundle's interface, defined once: `src_tokens` int64 [batch, seq] in, `output` float32 [batch, classes] out."""

from __future__ import annotations

from ..errors import RobertaInferError

INPUT_NAME = "src_tokens"
OUTPUT_NAME = "output"


def check_names(model, inputs: list[str], outputs: list[str]) -> None:
    """Refuse a graph whose inputs/outputs are not ours (RobertaInferError naming `model` and what it has):
    `src_tokens` in, `output` out."""
    if (inputs, outputs) != ([INPUT_NAME], [OUTPUT_NAME]):
        raise RobertaInferError(f"{model}: expected input {INPUT_NAME!r} and output {OUTPUT_NAME!r}, found {(inputs, outputs)}")
