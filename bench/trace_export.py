"""What one trace costs to export to a local sqlite store: mlflow's defaults vs the template's.

    uv run --group bench python bench/trace_export.py [--traces 300] [--rounds 3]

Renders the default project, installs it, and in its environment records traces shaped like the
agent's (a request span holding an LLM span, with inputs and outputs) through mlflow's own
exporter, in child processes that alternate between the two settings:

- `mlflow defaults`: ten export threads, span batches of five, sqlite's rollback journal;
- `tuned (tracing.py)`: the generated project's `tune_local_store()`, the code that runs there.

It reports the process CPU per trace (recording + export, read after mlflow's flush), the median
over the rounds, and the ratio of the two, measured in the same run. This is the floor that
tracing puts under the server's CPU per request, whatever the server does.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # noqa: E402  (bench/run.py: rendering and installing)

CHILD = r"""
import json, os, sys, time
store, traces, tuned = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "tuned"
uri = f"sqlite:///{store}"
os.environ["MLFLOW_TRACKING_URI"] = uri
if tuned:
    from agent_server.runtime.tracing import tune_local_store
    tune_local_store(uri)
import mlflow
from mlflow.entities import SpanType
mlflow.set_experiment("trace-export")
request = {"input": [{"role": "user", "content": "Tell me a story about a cat."}]}
answer = " ".join(["lorem"] * 50)

def one():
    with mlflow.start_span(name="stream_handler", span_type=SpanType.AGENT) as root:
        root.set_inputs(request)
        with mlflow.start_span(name="llm", span_type=SpanType.CHAT_MODEL) as llm:
            messages = [{"role": "system", "content": "Be helpful."}, *request["input"]]
            llm.set_inputs({"messages": messages})
            llm.set_outputs({"role": "assistant", "content": answer})
        text = {"type": "output_text", "text": answer}
        root.set_outputs({"output": [{"type": "message", "content": [text]}]})

for _ in range(20):  # warm-up: tables, caches, the export threads
    one()
mlflow.flush_trace_async_logging()
started = time.process_time()
for _ in range(traces):
    one()
mlflow.flush_trace_async_logging()
cpu_ms = (time.process_time() - started) * 1000 / traces
stored = len(mlflow.search_traces(return_type="list", max_results=traces + 100))
print(json.dumps({"cpu_ms": cpu_ms, "stored": stored, "sent": traces + 20}))
"""

SETTINGS = ("mlflow defaults", "tuned (tracing.py)")


def measure(project: Path, scratch: Path, setting: str, traces: int, index: int) -> dict:
    store = scratch / f"{index}-{'tuned' if setting != SETTINGS[0] else 'default'}.db"
    mode = "tuned" if setting != SETTINGS[0] else "default"
    result = subprocess.run(
        [str(project / ".venv" / "bin" / "python"), "-c", CHILD, str(store), str(traces), mode],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="trace-export-") as tmp:
        scratch = Path(tmp)
        run.log("rendering and installing the default project")
        project = run.render(run.REPO, "langgraph", True, scratch)
        run.uv_sync(project)
        samples: dict[str, list[dict]] = {s: [] for s in SETTINGS}
        for index in range(args.rounds):
            for setting in SETTINGS if index % 2 == 0 else reversed(SETTINGS):
                sample = measure(project, scratch, setting, args.traces, index)
                run.log(f"round {index + 1} {setting}: {sample['cpu_ms']:.1f} ms CPU per trace")
                samples[setting].append(sample)
    medians = {s: statistics.median(x["cpu_ms"] for x in samples[s]) for s in SETTINGS}
    lines = [
        "# One trace exported to a local sqlite store",
        "",
        f"- date {datetime.now(UTC).isoformat(timespec='seconds')}; {args.traces} traces "
        f"per sample, {args.rounds} rounds, settings alternating; load average "
        f"{run.load_average():.2f} at the end",
        "- a trace: a request span holding an LLM span, with inputs and outputs (as the agent's)",
        "",
        "| setting | CPU ms per trace (median) | samples | traces stored / sent |",
        "|---|---|---|---|",
    ]
    for setting in SETTINGS:
        runs = samples[setting]
        lines.append(
            f"| {setting} | {medians[setting]:.1f} | "
            + ", ".join(f"{x['cpu_ms']:.1f}" for x in runs)
            + f" | {sum(x['stored'] for x in runs)} / {sum(x['sent'] for x in runs)} |"
        )
    ratio = medians[SETTINGS[1]] / medians[SETTINGS[0]]
    lines += ["", f"tuned / defaults: **{ratio:.2f}** of the CPU per trace"]
    text = "\n".join(lines) + "\n"
    run.RESULTS.mkdir(parents=True, exist_ok=True)
    (run.RESULTS / "trace-export.md").write_text(text)
    (run.RESULTS / "trace-export.json").write_text(
        json.dumps({"samples": samples, "medians": medians, "ratio": ratio}, indent=2) + "\n"
    )
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
