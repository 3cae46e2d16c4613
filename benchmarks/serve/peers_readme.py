"""README's serving-peers section from peers/*.json (peers.py, soak.py, faults.py): tables and the lines under them."""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent / "peers"
SERVERS = ("roberta-infer serve", "Triton (PyTriton)", "Ray Serve")
SHORTENED = " (shortened from the default 20: a shared 2-vCPU machine and a time-boxed session)"
SHAPES = (("default.json", "the default model"), ("roberta-base.json", "roberta-base's shape (synthetic weights, speed only)"))


def cell(level: dict | None, *keys: str) -> str:
    if level is None:
        return "–"
    return " / ".join(f"{level[k]:.0f}" if k == "sentences_per_s" else f"{level[k]:.1f}" for k in keys)


def shape_table(summary: dict) -> list[str]:
    """Closed-loop rows (sentences/s, p50 / p99 ms) and open-loop rows (p50 / p99 ms), one column per server."""
    c = summary["comparison"]
    head = "| load | " + " | ".join(SERVERS) + " |"
    rows = [head, "|---|" + "---:|" * len(SERVERS)]
    for clients in sorted(c["closed"][SERVERS[0]], key=int):
        rows.append(f"| closed, {clients} client{'s' if int(clients) > 1 else ''}: sentences/s · p50 / p99 ms | " + " | ".join(
            f"{cell(c['closed'][s].get(clients), 'sentences_per_s')} · {cell(c['closed'][s].get(clients), 'p50_ms', 'p99_ms')}"
            for s in SERVERS) + " |")
    for rate in sorted(c["open"][SERVERS[0]], key=float):
        rows.append(f"| open, {float(rate):.0f} requests/s: p50 / p99 ms | " + " | ".join(
            cell(c["open"][s].get(rate), "p50_ms", "p99_ms") for s in SERVERS) + " |")
    return rows


def verdicts(summary: dict) -> list[str]:
    c, eq = summary["comparison"], summary["comparison"]["equal_p99"]
    ratio = "–" if eq["ratio"] is None else f"{eq['ratio']:.2f}×"
    reached = eq["ratio"] is not None and eq["ratio"] >= eq["target"]
    lowest = [rate for rate, r in c["equal_rate"].items() if r["ours_lowest"]]
    per_pass = "; ".join(f"vs {peer}: " + ", ".join(f"{r:.2f}" for r in ratios)
                         for peer, ratios in c["ratio_at_most_clients_per_pass"].items())
    sweep = ", ".join(f"{s['max_queue_delay_us']} µs × {s['instances']}: {s['sentences_per_s']:.0f}/s"
                      for s in summary["triton_sweep"])
    chosen = summary["triton_chosen"]
    return [
        f"Throughput at equal p99 ({eq['clients']} clients; the best peer, {c['best_peer']}, has p99 {eq['p99_ms']:.0f} ms at "
        f"{eq['peer_sentences_per_s']:.0f} sentences/s): ours {eq['ours_sentences_per_s'] or 0:.0f} sentences/s ({eq['how']}): "
        f"**{ratio}** — target ≥ {eq['target']:g}×: **{'reached' if reached else 'not reached'}**. Ours / peer throughput at "
        f"{eq['clients']} clients, pass by pass: {per_pass}.",
        f"p99 at equal rate: ours lowest at {len(lowest)} of {len(c['equal_rate'])} rates "
        f"({', '.join(f'{float(r):.0f}/s' for r in lowest) or 'none'}) — target: all.",
        f"Triton's dynamic batcher, tried at 64 clients ({summary['settings']['seconds']:g} s runs are the main levels; "
        f"these are shorter): {sweep}; kept {chosen['max_queue_delay_us']} µs × {chosen['instances']} instance(s).",
    ]


def machine_line(summary: dict) -> str:
    m, s = summary["machine"], summary["settings"]
    return (f"Machine: {m['cpu']}, {m['logical_cpus']} vCPUs, shared with other users' jobs (load average "
            f"{m['load_average_before'][0]:.2f} before, {m['load_average_after'][0]:.2f} after); client and all three servers "
            f"on it. Each server: the same bundle ({summary['model']['engine']} {summary['model']['precision']}, "
            f"{(summary['model'].get('architecture') or {}).get('layers')} layers), {s['threads']} engine threads, batches "
            f"≤ {s['max_batch_size']}; ours waits ≤ {s['roberta-infer serve']['max_wait_ms']:g} ms with "
            f"{s['roberta-infer serve']['parallel_calls']} model call{'s' if s['roberta-infer serve']['parallel_calls'] > 1 else ''} "
            f"at a time, Ray's `batch_wait_timeout_s` is "
            f"{s['Ray Serve']['batch_wait_timeout_ms']:g} ms (1 replica). {s['passes']} pass{'es' if s['passes'] > 1 else ''} "
            f"of {s['seconds']:g} s per level "
            f"and server, interleaved; medians shown. Texts: {summary['texts'].split(' (')[0]}, one per request "
            f"({summary['request']}).")


def soak_and_faults() -> list[str]:
    lines = []
    if (HERE / "soak.json").is_file():
        soak = json.loads((HERE / "soak.json").read_text())
        windows = soak["run"]["windows"]
        p99s = ", ".join(f"{w['latency_ms']['p99']:.0f}" for w in windows)
        rss = ", ".join(f"{w['server_rss_mb']:.0f}" for w in windows)
        calls = ", ".join(f"{w['model_call_ms_mean']:.0f}" for w in windows if w.get("model_call_ms_mean") is not None)
        steal = max((w["steal_percent"] for w in windows if "steal_percent" in w), default=None)
        capacity = soak["capacity"]["sentences_per_s"] if soak["capacity"] else float("nan")
        lines.append(
            f"Soak (`soak.py`, ours): {soak['rate']:.0f} requests/s ({100 * (soak['fraction'] or 0):.0f} % of the "
            f"{capacity:.0f}/s measured first) for {soak['minutes']:g} min"
            f"{SHORTENED if soak['minutes'] < 20 else ''}: "
            f"{soak['run']['errors']} errors in {soak['run']['requests']} requests; p99 per minute "
            f"{p99s} ms; RSS per minute {rss} MB ({soak['rss_growth_percent']:+.1f} % from minute "
            f"{soak.get('rss_growth_from_minute', 1)} to the last)"
            + (f"; mean model call per minute {calls} ms" if calls else "")
            + (f"; CPU stolen by the hypervisor ≤ {steal:.1f} % in any minute" if steal is not None else "") + ".")
    if (HERE / "faults.json").is_file():
        f = json.loads((HERE / "faults.json").read_text())
        lines.append(
            f"Faults (`faults.py`, ours): SIGKILL under {f['clients']} clients after {f['kill_after_s']:g} s, restarted at once: "
            f"{f['requests']} requests, {f['answered_correctly']} answered correctly, failures "
            f"{', '.join(f'{n} × {k}' for k, n in f['failures'].items()) or 'none'}; ready again "
            f"{f['ready_again_after_kill_s'] or 0:.1f} s after the kill; checks: "
            + "; ".join(f"{name}: {'pass' if ok else 'FAIL'}" for name, ok in f["checks"].items()) + ".")
    return lines


def peers_section() -> str:
    lines = []
    for name, title in SHAPES:
        if not (HERE / name).is_file():
            continue
        summary = json.loads((HERE / name).read_text())
        lines += [f"With {title}:", "", *shape_table(summary), "", *verdicts(summary), machine_line(summary),
                  f"Plot: `benchmarks/serve/peers/{name.replace('.json', '.png')}`.", ""]
    lines += [*soak_and_faults(), "Reproduce: `bash benchmarks/serve/run.sh peers` (the default model, soak and faults; makes the peers' "
              "venv first) and `bash benchmarks/serve/run.sh peers-roberta-base`.", ""]
    return "\n".join(lines)
