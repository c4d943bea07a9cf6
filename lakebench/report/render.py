"""A run's report, from its result file alone: Markdown, and one self-contained HTML page.

The HTML page needs nothing beyond itself (no script, no stylesheet or font from elsewhere): its
charts are SVG drawn by matplotlib and inlined. It holds, per profile, the decision and why; a
latency CDF per option (every raw sample of the lookup workloads); p95 against monthly cost; and
per-query tables. Every figure is recomputed from ``samples_ms`` by the same function the run used.
"""

from __future__ import annotations

import html
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lakebench.benchmark.results import Benchmark, RunResult, statistics_of

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


@dataclass(frozen=True, slots=True)
class ReportFiles:
    html: Path
    markdown: Path


def _svg(figure: object) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")  # type: ignore[attr-defined]
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "none"  # text stays text: smaller, and searchable
    return plt


def cdf_chart(result: RunResult, profile: str, prefix: str) -> str:
    """Latency CDF of every option's samples of the workloads named ``prefix*`` under ``profile``."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7.5, 3.6))
    options = [o.option for o in result.options if o.profile == profile]
    drew = False
    for i, option in enumerate(options):
        samples = [
            s
            for b in result.benchmarks
            if b.profile == profile and b.engine == option and b.name.startswith(prefix)
            for s in b.samples_ms
        ]
        if not samples:
            continue
        data = np.sort(np.asarray(samples))
        axes.step(data, np.arange(1, len(data) + 1) / len(data), where="post", label=option, color=PALETTE[i % 6])
        drew = True
    threshold = result.method.get("thresholds_ms", {}).get("lookup" if prefix == "lookup" else "search")
    if threshold:
        axes.axvline(threshold, color="#555", linestyle="--", linewidth=1, label=f"threshold {threshold:,.0f} ms")
    axes.set_xscale("log")
    axes.set_xlabel("latency (ms, log scale)")
    axes.set_ylabel("fraction of queries")
    axes.set_title(f"{prefix} latency CDF, profile {profile}")
    axes.grid(True, which="both", alpha=0.3)
    if drew:
        axes.legend(loc="lower right", fontsize=8)
    svg = _svg(figure)
    plt.close(figure)
    return svg


def cost_chart(result: RunResult, profile: str) -> str:
    """Each option's worst lookup p95 against its monthly cost."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7.5, 3.6))
    judge = result.method.get("judged_by", "p95")
    for i, o in enumerate(o for o in result.options if o.profile == profile):
        marks = [b for b in result.benchmarks if b.profile == profile and b.engine == o.option and b.threshold_ms]
        if not marks or o.monthly_usd is None:
            continue
        worst = max(float(getattr(b, f"{judge}_ms")) for b in marks)
        axes.scatter(
            [o.monthly_usd], [worst], s=60, color=PALETTE[i % 6], label=o.option, marker="o" if o.passed else "x"
        )
        axes.annotate(o.option, (o.monthly_usd, worst), textcoords="offset points", xytext=(6, 4), fontsize=8)
    axes.set_yscale("log")
    axes.set_xlabel("monthly cost (USD, 1x volume)")
    axes.set_ylabel(f"worst judged {judge} (ms, log)")
    axes.set_title(f"latency against cost, profile {profile} (x: misses a threshold)")
    axes.grid(True, which="both", alpha=0.3)
    svg = _svg(figure)
    plt.close(figure)
    return svg


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _row(b: Benchmark) -> list[str]:
    figures = statistics_of(b.samples_ms)
    gets = "n/a" if b.requests_per_query is None else f"{b.requests_per_query.get('GET', 0.0):.2f}"
    kb = "n/a" if b.bytes_per_query is None else f"{b.bytes_per_query / 1e3:,.1f}"
    hits = "-" if b.cache_hit_ratio is None else f"{b.cache_hit_ratio:.0%}"
    verdict = "-" if b.passed is None else ("pass" if b.passed else "FAIL")
    return [
        b.name,
        b.engine,
        str(len(b.samples_ms)),
        f"{figures['p50']:,.2f}",
        f"{figures['p95']:,.2f}",
        f"{figures['p99']:,.2f}",
        f"{figures['mean']:,.2f}",
        "yes" if b.noisy else "",
        gets,
        kb,
        hits,
        str(b.errors),
        verdict,
    ]


HEAD = [
    "workload",
    "option",
    "n",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "mean ms",
    "noisy",
    "GET/q",
    "KB/q",
    "hits",
    "wrong",
    "judged",
]


def _md(text: str) -> str:
    """Text safe in a Markdown table cell or line: pipes and markup characters escaped."""
    return "".join("\\" + c if c in "|*_`[]<>\\" else c for c in text)


def markdown(result: RunResult) -> str:
    lines = [f"# lakebench run {result.run_id}", ""]
    d = result.dataset
    lines += [
        f"{result.started_at:%Y-%m-%d %H:%M} UTC · dataset {_md(d.source)}: {d.events:,} events, "
        f"{d.entities:,} entities, "
        f"{d.parquet_bytes / 1e6:,.1f} MB of Parquet in {d.files} files · {result.environment.cpu_count} CPUs",
        "",
    ]
    for profile, decision in result.decisions.items():
        lines += [f"## Profile `{profile}`", "", f"**Decision: {decision.name}** — {_md(decision.reason)}", ""]
        lines += ["| option | first answer | $/month (1x) | 10x | 100x | result |", "|---|---:|---:|---:|---:|---|"]
        for o in (o for o in result.options if o.profile == profile):
            totals = [next(iter(o.cost[s].values()))["total_usd"] for s in ("1x", "10x", "100x")] if o.cost else []
            money = " | ".join(f"{t:,.2f}" for t in totals) if totals else "- | - | -"
            lines.append(f"| {o.option} | {seconds(o.first_answer_s)} | {money} | {'pass' if o.passed else 'FAIL'} |")
        lines += ["", "| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
        for b in (b for b in result.benchmarks if b.profile == profile):
            lines.append("| " + " | ".join(_row(b)) + " |")
        lines.append("")
    lines += ["## Method", ""]
    lines += [f"- **{k}**: {v}" for k, v in result.method.items() if not isinstance(v, dict)]
    lines.append("")
    return "\n".join(lines)


STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:8px 0 20px;font-size:12px}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#f2f2f2}
td:first-child,td:nth-child(2),th:first-child{text-align:left}
.decision{background:#eef6ee;border-left:4px solid #2ca02c;padding:8px 12px}
.none{background:#fbeeee;border-left-color:#d62728}.charts{display:flex;flex-wrap:wrap;gap:8px}
.chart svg{max-width:540px;height:auto}
"""


def page(result: RunResult) -> str:
    esc = html.escape
    d = result.dataset
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>lakebench run {esc(result.run_id)}</title><style>{STYLE}</style></head><body>",
        f"<h1>lakebench run {esc(result.run_id)}</h1>",
        f"<p>{result.started_at:%Y-%m-%d %H:%M} UTC · dataset {esc(d.source)}: {d.events:,} events, "
        f"{d.entities:,} entities, {d.parquet_bytes / 1e6:,.1f} MB Parquet in {d.files} files</p>",
    ]
    for profile, decision in result.decisions.items():
        css = "decision none" if decision.option == 0 else "decision"
        parts += [
            f"<h2>Profile {esc(profile)}</h2>",
            f"<p class='{css}'><b>Decision: {esc(decision.name)}</b> — {esc(decision.reason)}</p>",
            "<div class=charts>",
        ]
        if any(b.profile == profile and b.name.startswith("lookup") for b in result.benchmarks):
            parts.append(f"<div class='chart cdf'>{cdf_chart(result, profile, 'lookup')}</div>")
        if any(b.profile == profile and b.name.startswith("search") for b in result.benchmarks):
            parts.append(f"<div class='chart cdf'>{cdf_chart(result, profile, 'search')}</div>")
        parts += [f"<div class='chart cost'>{cost_chart(result, profile)}</div>", "</div>"]
        parts.append("<table><tr><th>option<th>first answer<th>$/month 1x<th>10x<th>100x<th>result<th>why</tr>")
        for o in (o for o in result.options if o.profile == profile):
            totals = [next(iter(o.cost[s].values()))["total_usd"] for s in ("1x", "10x", "100x")] if o.cost else []
            money = "".join(f"<td>{t:,.2f}" for t in totals) if totals else "<td>-<td>-<td>-"
            parts.append(
                f"<tr><td>{esc(o.option)}<td>{seconds(o.first_answer_s)}{money}<td>{'pass' if o.passed else 'FAIL'}"
                f"<td style='text-align:left'>{esc(o.verdict)}; priced from {esc(o.priced_from or '-')}</tr>"
            )
        parts.append("</table><table class=queries><tr>" + "".join(f"<th>{esc(h)}" for h in HEAD) + "</tr>")
        for b in (b for b in result.benchmarks if b.profile == profile):
            parts.append("<tr>" + "".join(f"<td>{esc(c)}" for c in _row(b)) + "</tr>")
        parts.append("</table>")
    parts.append("<h2>Method</h2><ul>")
    parts += [f"<li><b>{esc(k)}</b>: {esc(str(v))}</li>" for k, v in result.method.items() if not isinstance(v, dict)]
    parts.append("</ul></body></html>")
    return "\n".join(parts)


def write_report(result: RunResult, result_path: Path, out_dir: Path | None = None) -> ReportFiles:
    """``<run-id>.html`` and ``<run-id>.md`` beside the result file (or in ``out_dir``)."""
    folder = out_dir or result_path.parent
    folder.mkdir(parents=True, exist_ok=True)
    stem = result_path.stem
    files = ReportFiles(folder / f"{stem}.html", folder / f"{stem}.md")
    files.html.write_text(page(result), encoding="utf-8")
    files.markdown.write_text(markdown(result), encoding="utf-8")
    return files
