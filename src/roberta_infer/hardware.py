"""The machine the numbers come from: its cores, its CPU's int8/bf16 instruction sets, and which fast bundles suit it.

Everything here reads /proc/cpuinfo (ONNX Runtime is imported for its version only). `candidates` is the one
rule for which gated int8/bf16 bundles are worth building here: `run`'s fast row and `compare`'s "ours" both ask it.
"""

from __future__ import annotations

import importlib.util
import os
import platform
from pathlib import Path

import onnxruntime as ort

# Instruction sets that decide int8 and bf16 speed (VNNI: int8 dot products; AMX: int8/bf16 tile matrix multiply).
ISA_FLAGS = ("avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
# Without one of these, OpenVINO's int8 kernels have no int8 dot product and are no faster than its f32 ones.
INT8_DOT_PRODUCT = {"avx512_vnni", "avx_vnni", "amx_int8"}
# Either of these runs bf16 matrix multiplies natively; without them OpenVINO runs a bf16 bundle in f32.
BF16_MATMUL = {"avx512_bf16", "amx_bf16"}
CPUINFO = Path("/proc/cpuinfo")


def physical_cores() -> int:
    """Physical cores (hyper-threads share one core's units, so more threads than this only slow GEMMs down);
    `os.cpu_count()` (logical CPUs, at least 1) where /proc/cpuinfo does not say."""
    try:
        pairs = set()
        block: dict[str, str] = {}
        for line in CPUINFO.read_text().splitlines() + [""]:
            if ":" in line:
                key, value = (part.strip() for part in line.split(":", 1))
                block[key] = value
            elif block:
                pairs.add((block.get("physical id"), block.get("core id")))
                block = {}
        if None not in {p[1] for p in pairs} and pairs:
            return len(pairs)
    except OSError:
        pass
    return os.cpu_count() or 1


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo ("model name"), else what `platform` knows (the processor, or the
    architecture such as "x86_64")."""
    try:
        for line in CPUINFO.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_isa() -> list[str]:
    """The int8/bf16 instruction sets this CPU has, of ISA_FLAGS in their order (from /proc/cpuinfo's flags; empty
    where unreadable)."""
    try:
        flags = next(line.split(":", 1)[1].split() for line in CPUINFO.read_text().splitlines()
                     if line.startswith("flags"))
    except (OSError, StopIteration):
        return []
    return [flag for flag in ISA_FLAGS if flag in flags]


def machine() -> dict:
    """What ran the numbers, for every summary: cpu (name), logical_cpus, physical_cores, platform, isa
    (`cpu_isa()`) and the onnxruntime version."""
    return {"cpu": cpu_name(), "logical_cpus": os.cpu_count(), "physical_cores": physical_cores(),
            "platform": platform.platform(), "isa": cpu_isa(), "onnxruntime": ort.__version__}


def candidates(isa: list[str] | None = None, *, bf16: bool = False) -> list[str]:
    """The gated fast bundles worth building on a CPU with `isa` (default: this one's, `cpu_isa()`), in this order:

    - "ort-int8" (ONNX Runtime dynamic int8) always;
    - "ov-int8" (OpenVINO + NNCF static int8) where openvino is installed and the CPU has int8 dot products
      (INT8_DOT_PRODUCT: VNNI or AMX), which its int8 kernels need to be fast;
    - with `bf16` (compare's "ours" may be bf16; run's fast row is int8 only), "ov-bf16" where openvino is
      installed and the CPU has bf16 matrix multiplies (BF16_MATMUL: AVX-512 BF16 or AMX).
    """
    isa = set(cpu_isa() if isa is None else isa)
    openvino = importlib.util.find_spec("openvino") is not None
    return ["ort-int8", *(["ov-int8"] if openvino and INT8_DOT_PRODUCT & isa else []),
            *(["ov-bf16"] if bf16 and openvino and BF16_MATMUL & isa else [])]
