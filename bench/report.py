"""Turns a bench/run.py result (JSON) into a Markdown report and a PNG chart.

uv run --group bench python bench/report.py bench/results/NAME.json   # rewrite NAME.md/.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

# The targets, checked in the report (never in tests: timing depends on the machine).
# Async LangGraph, streaming, c=128, each answer one tool round, traced (to each store):
TARGET_ASYNC = "langgraph async tracing "
TARGET_STORES = ("databricks (fake)", "sqlite")
TARGET_CONCURRENCY = 128
TARGET_RPS_SHARE = 0.5  # of the baseline relay's req/s in the same run
TARGET_P99_S = 2.0
TARGET_TRACING_CPU_MS = 5.0  # traced minus untraced, server CPU per answer
SYNC_CONCURRENCY = 32
SYNC_SHARE = 0.9


def _fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _points(results: dict[str, Any]) -> dict[tuple[str, bool, int], dict[str, Any]]:
    return {
        (variant["name"], point["stream"], point["concurrency"]): point
        for variant in results.get("variants", [])
        for point in variant["points"]
    }


def _measured(point: dict[str, Any] | None) -> bool:
    return point is not None and "skipped" not in point


def table(results: dict[str, Any]) -> str:
    points = _points(results)
    ideal = results["ideal_latency_s"]
    lines = [
        "| variant | mode | c | req/s | × baseline | p50 / p99 latency (s) | p50 / p99 TTFT (s) "
        "| CPU ms/req | × baseline CPU | drain (s) | peak RSS MB | errors | p50 over ideal (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for variant in results.get("variants", []):
        answers = variant["framework"] != "model-serving-migration"
        for point in variant["points"]:
            mode = "stream" if point["stream"] else "invoke"
            head = f"| {variant['name']} | {mode} | {point['concurrency']} "
            if not _measured(point):
                lines.append(head + f"| skipped: {point['skipped']} |" + " |" * 11)
                continue
            base = points.get(("baseline relay", point["stream"], point["concurrency"]))
            ratio = cpu_ratio = "–"
            if _measured(base) and variant["name"] != "baseline relay":
                if base["rps"]:
                    ratio = f"{point['rps'] / base['rps']:.2f}"
                if base["cpu_ms_per_request"] > 0:
                    cpu_ratio = f"{point['cpu_ms_per_request'] / base['cpu_ms_per_request']:.1f}"
            over = point["latency_p50_s"] - ideal if answers and point["latency_p50_s"] else None
            errors = str(point["errors"])
            if point["errors"]:
                errors += " (" + ", ".join(f"{k}: {n}" for k, n in point["error_kinds"].items())
                errors += ")"
            lines.append(
                head
                + f"| {point['rps']:.1f} | {ratio} "
                + f"| {_fmt(point['latency_p50_s'])} / {_fmt(point['latency_p99_s'])} "
                + f"| {_fmt(point['ttft_p50_s'])} / {_fmt(point['ttft_p99_s'])} "
                + f"| {point['cpu_ms_per_request']:.1f} | {cpu_ratio} "
                + f"| {_fmt(point.get('drain_s'), 1)} "
                + f"| {point['peak_rss_mb']:.0f} | {errors} | {_fmt(over)} |"
            )
    return "\n".join(lines)


def targets(results: dict[str, Any]) -> str:
    points = _points(results)
    lines = []
    base = points.get(("baseline relay", True, TARGET_CONCURRENCY))
    untraced = points.get((TARGET_ASYNC + "off", True, TARGET_CONCURRENCY))
    for store in TARGET_STORES:
        target = points.get((TARGET_ASYNC + store, True, TARGET_CONCURRENCY))
        if not (_measured(target) and _measured(base) and _measured(untraced)):
            continue
        share = target["rps"] / base["rps"] if base["rps"] else 0.0
        cost = target["cpu_ms_per_request"] - untraced["cpu_ms_per_request"]
        checks = [
            (
                f"≥ {TARGET_RPS_SHARE} × the baseline relay's req/s",
                share >= TARGET_RPS_SHARE,
                f"{share:.2f}: {target['rps']:.1f} vs {base['rps']:.1f} req/s",
            ),
            (
                f"p99 ≤ {TARGET_P99_S} s",
                (target["latency_p99_s"] or 1e9) <= TARGET_P99_S,
                f"{_fmt(target['latency_p99_s'])} s",
            ),
            ("zero errors", target["errors"] == 0, str(target["errors"])),
            (
                f"tracing's own cost ≤ {TARGET_TRACING_CPU_MS:.0f} ms server CPU per answer",
                cost <= TARGET_TRACING_CPU_MS,
                f"{cost:.1f} ms: {target['cpu_ms_per_request']:.1f} traced, "
                f"{untraced['cpu_ms_per_request']:.1f} untraced",
            ),
        ]
        lines.append(f"{TARGET_ASYNC}{store}, streaming, c={TARGET_CONCURRENCY}:")
        lines += [
            f"- {'met' if ok else 'NOT met'}: {what} (measured {got})" for what, ok, got in checks
        ]
    if _measured(base) and _measured(untraced):
        lines.append(
            f"- the agent's own CPU per answer, untraced, c={TARGET_CONCURRENCY}, streaming: "
            f"{untraced['cpu_ms_per_request']:.1f} ms against the relay's "
            f"{base['cpu_ms_per_request']:.1f} ms"
        )
    for tracing in ("off", *TARGET_STORES):
        sync = points.get((f"langgraph sync tracing {tracing}", True, SYNC_CONCURRENCY))
        asyn = points.get((f"langgraph async tracing {tracing}", True, SYNC_CONCURRENCY))
        if _measured(sync) and _measured(asyn) and asyn["rps"]:
            share = sync["rps"] / asyn["rps"]
            verdict = "met" if share >= SYNC_SHARE else "NOT met"
            lines.append(
                f"- {verdict}: sync ≥ {SYNC_SHARE:.0%} of async at c={SYNC_CONCURRENCY}, "
                f"streaming, tracing {tracing} (measured {share:.0%}: {sync['rps']:.1f} vs "
                f"{asyn['rps']:.1f} req/s)"
            )
    return "\n".join(lines)


def traces(results: dict[str, Any]) -> str:
    rows = [
        f"| {v['name']} | {v['traces']['requests']} | {v['traces']['stored']} |"
        for v in results.get("variants", [])
        if v.get("traces")
    ]
    if not rows:
        return "(no variant with tracing on)"
    return "| variant | requests sent | traces stored |\n|---|---|---|\n" + "\n".join(rows)


def write(results: dict[str, Any], md_path: Path, png_path: Path) -> str:
    """Write the Markdown report and the chart; return the Markdown."""
    install_rows = [
        f"| {framework} | {_fmt(info.get('sync_cold_s'), 1)} | {_fmt(info.get('sync_warm_s'), 1)} "
        f"| {info['venv_mb']:.0f} | {info['packages']} |"
        for framework, info in results.get("install", {}).items()
    ]
    boot_rows = [
        f"| {key} | {info['median_s']:.2f} | {', '.join(f'{t:.2f}' for t in info['all_s'])} |"
        for key, info in results.get("boot", {}).items()
    ]
    markdown = "\n".join(
        [
            f"# Benchmark {results['name']}",
            "",
            f"- date {results['date']}; template `{results['template']}`"
            + ("; **quick mode**" if results.get("quick") else ""),
            f"- fake LLM: {results['tokens']} tokens, {results['token_delay_s'] * 1000:.0f} ms "
            f"apart: no answer can take less than {results['ideal_latency_s']:.2f} s (the ideal)"
            + (
                "; every answer is one tool round (the LLM asks for the tool, the tool runs, "
                "the LLM answers)"
                if results.get("tool_round")
                else ""
            ),
            "- server pinned to core 0 (one uvicorn worker unless the variant names more); "
            "load generator and fake workspace on core 1",
            f"- 1-minute load average: {_fmt(results.get('load_average_start'))} at the start, "
            f"{_fmt(results.get('load_average_end'))} at the end (other work on the machine "
            "makes absolute numbers noisy: compare ratios to the baseline of the same run)",
            f"- run time {_fmt(results.get('elapsed_s', 0) / 60, 1)} min",
            "",
            "## Targets",
            "",
            targets(results) or "(target points not measured in this run)",
            "",
            "## Install",
            "",
            "| framework | `uv sync`, empty cache (s) | `uv sync`, warm cache (s) | .venv MB "
            "| packages |",
            "|---|---|---|---|---|",
            *install_rows,
            "",
            "## Boot to a healthy /health (async project)",
            "",
            *(
                ["| project | median (s) | all (s) |", "|---|---|---|", *boot_rows]
                if boot_rows
                else ["(not measured in this run)"]
            ),
            "",
            "## Load",
            "",
            "req/s counts correct answers only. CPU is the server process's user + system time "
            "per request, read once the server is idle again: traces exported after the answers "
            "are included, and *drain* is how long that export went on after the last answer (a "
            "backlog: req/s then overstates what the server sustains, 1000 / CPU ms does not). "
            "TTFT: time to the first text delta. At c=1 every server, the baseline too, spends "
            "several times more CPU per request than under load (idle between tokens, its caches "
            "go cold). "
            "The migration scaffold answers 501 at once: its rows are the server's own overhead.",
            "",
            table(results),
            "",
            "## Traces",
            "",
            "Traces stored (in the local sqlite store, or in the fake workspace with their spans "
            "uploaded) once the server went idle, against requests sent (warm-up included); "
            "mlflow drops traces when its export queue is full.",
            "",
            traces(results),
            "",
            f"![throughput and p99 latency versus concurrency]({png_path.name})",
            "",
        ]
    )
    md_path.write_text(markdown)
    chart(results, png_path)
    return markdown


def chart(results: dict[str, Any], png_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 2, figsize=(13, 9), sharex=True)
    # The 501s of the migration scaffold are not answers: they are in the table only.
    variants = [
        v for v in results.get("variants", []) if v["framework"] != "model-serving-migration"
    ]
    colors = {v["name"]: f"C{i % 10}" for i, v in enumerate(variants)}
    for row, stream in enumerate((True, False)):
        for variant in variants:
            points = [p for p in variant["points"] if p["stream"] == stream and _measured(p)]
            if not points:
                continue
            points.sort(key=lambda p: p["concurrency"])
            xs = [p["concurrency"] for p in points]
            style = {
                "color": "black" if variant["framework"] is None else colors[variant["name"]],
                "linestyle": ":" if variant["name"].startswith("before:") else "-",
                "marker": None if variant["framework"] is None else "o",
                "label": variant["name"],
            }
            if variant["framework"] is None:
                style["linestyle"] = "--"
            axes[row][0].plot(xs, [p["rps"] for p in points], **style)
            p99 = [p["latency_p99_s"] or float("nan") for p in points]
            axes[row][1].plot(xs, p99, **style)
        mode = "streaming" if stream else "non-streaming"
        axes[row][0].set_title(f"throughput, {mode} (req/s)")
        axes[row][1].set_title(f"p99 latency, {mode} (s)")
        axes[row][1].axhline(results["ideal_latency_s"], color="grey", linewidth=0.8)
    for ax in axes.flat:
        ax.set_xscale("log", base=2)
        ax.grid(True, alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("concurrent clients")
    axes[0][1].set_yscale("log")
    axes[1][1].set_yscale("log")
    for ax in axes[:, 0]:
        if ax.get_lines():
            ax.legend(fontsize=7)
    figure.suptitle(f"Agent servers vs. a minimal relay — {results['name']}")
    figure.tight_layout()
    figure.savefig(png_path, dpi=90)
    plt.close(figure)


def main(argv: list[str]) -> int:
    for name in argv:
        path = Path(name)
        results = json.loads(path.read_text())
        print(write(results, path.with_suffix(".md"), path.with_suffix(".png")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
