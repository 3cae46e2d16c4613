"""`compare`'s result as tables, a sentence and a figure: the README's markdown, the terminal table's cells and
report.html (sentences/s of every mode as bars, then the table with its caption and the ratios).

Every function takes the JSON-ready result `compare.compare` returns (or a saved `compare --json`).
"""

from __future__ import annotations

from .report import Figure, Report, Table, figure_png, pyplot


def rows(result: dict, *, described: bool = True) -> tuple[list[str], list[list[str]]]:
    """Header and cells shared by the README's markdown and (`described=False`: modes by key, no group or GOP/s
    column) the terminal table. "spread": the slowest–fastest pass in sentences/s; "of peak": GOP/s as a share of
    the fp32 or int8 GEMM peak (— for bf16)."""
    header = ["group", "mode", "engine", "precision", "sentences/s", "spread", "× baseline", "accuracy", "agreement", "p99 ms",
              "GOP/s", "of peak"]
    body = [[m["group"], m["name"], m["engine"], m["precision"], f"{m['sentences_per_s']:.1f}",
             f"{m['spread']['min']:.1f}–{m['spread']['max']:.1f}", f"{m['ratio_to_baseline']:.2f}×",
             "—" if m["accuracy"] is None else f"{100 * m['accuracy']:.2f} %", f"{100 * m['agreement_with_baseline']:.2f} %",
             f"{m['latency_ms']['p99']:.1f}", f"{m['gflops']:.0f}",
             "—" if m["peak"] is None else f"{100 * m['peak_fraction']:.0f} % {m['peak']}"]
            for m in result["modes"]]
    if described:
        return header, body
    keep = [i for i, name in enumerate(header) if name not in ("group", "mode", "GOP/s")]
    return (["mode", *(header[i] for i in keep)],
            [[m["mode"], *(cells[i] for i in keep)] for m, cells in zip(result["modes"], body)])


def caption(result: dict) -> str:
    """What the table measured: sentences, batch size, CPU and its instruction sets, threads, load, models, GEMM peak."""
    cpu = result["machine"]
    accuracy_from = result["accuracy_model"] or f"none ({result['accuracy_note']})"
    load = result["load_average"]["before"][0]
    isa = ", ".join(cpu["isa"]) or "no VNNI, AVX-512 BF16 or AMX"
    return (f"{result['sentences']} SST-2 dev sentences, text → label with tokenisation, batches of {result['batch_size']}, "
            f"on {cpu['cpu']} ({isa}; {cpu['physical_cores']} physical cores, {result['threads']} threads, load average "
            f"{load:.2f} at start, fastest of {result['repeats']} timed pass{'es' if result['repeats'] > 1 else ''} per mode; "
            f"spread: slowest–fastest pass). Speed: {result['speed_model']}; accuracy: {accuracy_from}; agreement: labels "
            f"equal to the baseline's, on the {result['agreement_on']}. p99: model-call latency. GOP/s: the matmuls' "
            f"multiply-adds ×2 per second, padding included. GEMM peaks measured: fp32 {result['peak_gflops']:.0f} GFLOP/s "
            f"(PyTorch), int8 {result['int8_peak_gops']:.0f} GOP/s (ONNX Runtime MatMulInteger u8×s8); of peak: fp32 modes "
            f"against the first, int8 modes against the second.")


def summary(result: dict) -> str:
    """The ratios, a line each: ours against the fastest peer, then against each engine given our batching, each with
    the range of pass-against-pass ratios and whether it lies outside the spreads (`compare.versus`); then the modes
    skipped here, each with its reason."""
    r = result["ratios"]
    if r["ours_vs_fastest_peer"] is None:
        return "\n".join([f"Fastest peer: {r['fastest_peer']}.", *skipped(result)])
    lines = [ratio_line(r["ours_vs_fastest_peer"], f"the fastest peer ({r['fastest_peer']})")]
    lines += [ratio_line(v, f"{mode} (the engine given our batching)") for mode, v in r["ours_vs_engine"].items()]
    return "\n".join(lines + skipped(result))


def skipped(result: dict) -> list[str]:
    """A line per mode asked for that could not run here, with the reason (results saved before "skipped" have none)."""
    return [f"Not run: {mode} ({why})." for mode, why in result.get("skipped", {}).items()]


def ratio_line(v: dict, other: str) -> str:
    """"Ours is 1.85× OTHER: passes 1.80–1.90×, outside the spread (faster).": one ratio of `compare.versus`."""
    return f"Ours is {v['ratio']:.2f}× {other}: passes {v['low']:.2f}–{v['high']:.2f}×, {v['verdict']}."


def markdown(result: dict) -> str:
    """The README's section: caption, the table of every mode, and the ratios' sentence."""
    header, body = rows(result)
    lines = [caption(result), "", "| " + " | ".join(header) + " |", "|---|---|---|---|" + "---:|" * (len(header) - 4)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join([*lines, "", *(f"- {line}" for line in summary(result).splitlines())]) + "\n"


def html_report(result: dict) -> Report:
    """report.html's content: sentences/s of every mode as bars, then the table with its caption and the ratios."""
    header, body = rows(result)
    return Report("roberta-infer compare — peers, engines and ours on SST-2 dev", summary(result), [
        Figure("Sentences per second, text → label", figure_png(throughput_bars(result)),
               "a bar per mode: sentences per second, coloured by group"),
        Table("Every mode", header, body, note=caption(result))])


def throughput_bars(result: dict):
    """A horizontal bar per mode (sentences/s), coloured by group, the baseline's rate marked."""
    plt = pyplot()
    modes = result["modes"]
    colours = {"peer": "#9aa5b1", "engine": "#4a7ab5", "ours": "#d9822b"}
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(modes) + 1.2))
    ax.barh(range(len(modes)), [m["sentences_per_s"] for m in modes], color=[colours[m["group"]] for m in modes])
    ax.set_yticks(range(len(modes)), [m["mode"] for m in modes], fontsize=8)
    ax.invert_yaxis()
    ax.axvline(modes[0]["sentences_per_s"], color="black", linestyle=":", linewidth=1)
    ax.set_xlabel("sentences / s (tokenisation included)")
    fig.tight_layout()
    return fig


def counted(count: int, noun: str) -> str:
    """"1 stream", "2 streams"."""
    return f"{count} {noun}{'s' if count != 1 else ''}"
