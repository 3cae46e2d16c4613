"""`report.html`: one self-contained page (no network: styles inline, plots as PNG data URIs) beside a command's JSON.

`run`, `bench` and `compare` each describe their result as a list of sections — tables and figures — and
`write_report` lays them out with the machine and the versions that produced them. The figures are matplotlib's.
A small inline script records, once the page has loaded, how many of its images the browser decoded
(`<body data-images-rendered="N">`), so a headless browser can tell the page rendered whole.
"""

from __future__ import annotations

import base64
import html
import io
import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np

from .outputs import write_text
from .version import __version__

# Packages whose versions decide the figures; those not installed are left out.
PACKAGES = ("onnxruntime", "openvino", "nncf", "torch", "transformers", "tokenizers", "numpy")
STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { border: 1px solid #ccc; padding: .25em .6em; } th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; border: 1px solid #eee; } p.note { color: #555; }
"""
RENDER_CHECK = ("<script>addEventListener('load', () => { document.body.dataset.imagesRendered = "
                "[...document.images].filter(i => i.complete && i.naturalWidth > 0).length; });</script>")


@dataclass
class Table:
    """Rows of cells under a header; cells that read as numbers are right-aligned."""

    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""


@dataclass
class Figure:
    """A PNG image (see `figure_png`) with a title, and alt text for readers who cannot see it."""

    title: str
    png: bytes
    alt: str
    note: str = ""


@dataclass
class Report:
    title: str
    summary: str
    sections: list[Table | Figure] = field(default_factory=list)


def figure_png(fig) -> bytes:
    """A matplotlib figure as PNG bytes (the figure is closed)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def pyplot():
    """matplotlib.pyplot on the Agg backend (figures are only written to files, no display is needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def latency_histogram(latencies_ms: list[float] | np.ndarray, title: str) -> Figure:
    """A histogram of model-call latencies in ms, with p50 and p99 marked."""
    plt = pyplot()
    ms = np.asarray(latencies_ms, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.hist(ms, bins=min(50, max(5, len(ms) // 2)), color="#4a7ab5")
    for q, style in ((50, "--"), (99, ":")):
        value = float(np.percentile(ms, q))
        ax.axvline(value, color="black", linestyle=style, label=f"p{q} {value:.2f} ms")
    ax.set_xlabel("latency per model call (ms)")
    ax.set_ylabel("calls")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return Figure(title, figure_png(fig), f"histogram of {len(ms)} model-call latencies")


def score_tables(scores: dict) -> list[Table]:
    """`evaluate.accuracy`'s per-class scores and confusion matrix as two tables."""
    names = scores["class_names"]
    per_class = Table("Per class", ["class", "precision", "recall", "F1", "support"],
                      [[name, f"{v['precision']:.4f}", f"{v['recall']:.4f}", f"{v['f1']:.4f}", str(v["support"])]
                       for name, v in scores["per_class"].items()],
                      note=f"accuracy {100 * scores['accuracy']:.2f} % ({scores['correct']}/{scores['samples']}), "
                           f"macro-F1 {scores['macro_f1']:.4f}, MCC {scores['mcc']:.4f}")
    confusion = Table("Confusion matrix (rows: gold class, columns: predicted)", ["gold \\ predicted", *names],
                      [[name, *map(str, row)] for name, row in zip(names, scores["confusion"])])
    return [per_class, confusion]


def versions() -> dict[str, str]:
    found = {"roberta-infer": __version__, "python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def write_report(path: Path, report: Report, machine: dict, *, force: bool = False, own: Path | None = None) -> Path:
    """Write `report` as one HTML file at `path` through `outputs.write_text` (an existing file replaced only with
    `force`; `own`: the output folder it belongs to, see `outputs.check_file`); returns the path."""
    parts = [f"<h1>{html.escape(report.title)}</h1>", f"<p>{html.escape(report.summary)}</p>"]
    for section in report.sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        if isinstance(section, Table):
            parts.append(render_table(section))
        else:
            data = base64.b64encode(section.png).decode("ascii")
            parts.append(f'<img src="data:image/png;base64,{data}" alt="{html.escape(section.alt)}">')
        if section.note:
            parts.append(f'<p class="note">{html.escape(section.note)}</p>')
    facts = {**{k: ", ".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v) for k, v in machine.items()},
             **versions(),
             "written": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    parts += ["<h2>Machine and versions</h2>", render_table(Table("", ["", ""], [[k, v] for k, v in facts.items()]),
                                                           header=False)]
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(report.title)}</title>'
            f"<style>{STYLE}</style></head>\n<body>\n" + "\n".join(parts) + f"\n{RENDER_CHECK}\n</body></html>\n")
    write_text(Path(path), page, force=force, flag="--json", own=own)
    return Path(path)


def render_table(table: Table, *, header: bool = True) -> str:
    def cell(text: str, tag: str) -> str:
        numeric = tag == "td" and is_number(text)
        return f"<{tag}{' class=num' if numeric else ''}>{html.escape(str(text))}</{tag}>"

    rows = ([("<tr>" + "".join(cell(h, "th") for h in table.header) + "</tr>")] if header else [])
    rows += ["<tr>" + "".join(cell(c, "td") for c in row) + "</tr>" for row in table.rows]
    return "<table>" + "".join(rows) + "</table>"


def is_number(text: str) -> bool:
    """A cell such as 1234.5, 81.08 %, 2.00× or 4.8e-07."""
    try:
        float(str(text).replace("%", "").replace("×", "").replace(",", "").strip())
        return True
    except ValueError:
        return False
