"""Profiles a generated agent server under bench load with py-spy, and sums the profile.

    uv run --group bench python bench/profile.py <rendered project> --tracing databricks \
        --concurrency 128 --output /tmp/profile.txt

As bench/run.py measures it: the project's fake workspace and the load generator on one core,
the server on the other, every answer one tool round, streaming. After a warm-up, py-spy samples
the server (and its threads) for --seconds while the load runs, then bench/profile_summary.py
prints where the samples went. Bounded like the bench: a request count, a time cap, timeouts.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import profile_summary  # noqa: E402  (next to this file)
import run  # noqa: E402

PY_SPY = Path(sys.executable).parent / "py-spy"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project", type=Path, help="a rendered and installed project")
    parser.add_argument("--tracing", choices=("off", "sqlite", "databricks"), default="off")
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--seconds", type=int, default=15, help="how long py-spy samples")
    parser.add_argument("--rate", type=int, default=100, help="samples per second")
    parser.add_argument("--tokens", type=int, default=50)
    parser.add_argument("--output", type=Path, default=Path("profile.txt"))
    args = parser.parse_args(argv)
    tracing = None if args.tracing == "off" else args.tracing
    scratch = Path(tempfile.mkdtemp(prefix="agent-profile-"))
    variant = run.Variant("profiled", "langgraph", tracing=tracing, project=args.project.resolve())
    command, cwd = run.server_command(variant)
    expected = run.expected_answer(args.tokens)
    with run.fake_workspace(variant.project, args.tokens, 0.02, scratch / "fake.log") as fake:
        env = run.agent_env(fake, tracing, scratch / "mlflow")
        with run.server(command, cwd, env, scratch / "server.log") as (process, url, _boot):
            run.run_load(url, 8, 32, True, 30, expected, 200)  # warm-up
            load = subprocess.Popen(
                [
                    *("taskset", "-c", run.CLIENT_CORE, sys.executable),
                    str(run.REPO / "bench" / "load.py"),
                    *("--url", f"{url}/invocations", "--stream", "--expected-pattern", expected),
                    *("--concurrency", str(args.concurrency), "--message", run.MESSAGE),
                    *("--requests", str(args.concurrency * 20)),
                    *("--duration", str(args.seconds + 5), "--timeout", "60"),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            time.sleep(2)
            subprocess.run(
                [
                    *(str(PY_SPY), "record", "-p", str(process.pid), "--format", "raw"),
                    *("-d", str(args.seconds), "-r", str(args.rate), "-o", str(args.output)),
                    "--nonblocking",
                    "--full-filenames",
                ],
                check=True,
                capture_output=True,
                timeout=args.seconds + 60,
            )
            out, _ = load.communicate(timeout=args.seconds + 120)
            print(out.strip())
    print(profile_summary.summary(profile_summary.parse(args.output), 40))
    return 0


if __name__ == "__main__":
    sys.exit(main())
