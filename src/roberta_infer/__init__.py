"""roberta-infer: RoBERTa sentence classification from checkpoint to fused ONNX Runtime, on SST-2."""

__version__ = "0.1.0"
