"""Sums a py-spy profile (`py-spy record --format raw`: collapsed stacks) by package and function.

    uv run --group bench py-spy record -p <server pid> -d 15 -r 100 --format raw -o profile.txt
    uv run --group bench python bench/profile_summary.py profile.txt [--top 40]

Prints the share of samples by the package of the innermost frame ("self"), the functions with
the most samples of their own, the inclusive share per function (a function counted once per
stack it is on), and the inclusive share of the generated project's own code (`agent_server/`):
what there is to cut on our side.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
OURS = "agent_server/"


def ours(file: str) -> bool:
    """The generated project's code (mlflow has an agent_server package too)."""
    return OURS in file and "site-packages/" not in file


def parse(path: Path) -> list[tuple[list[tuple[str, str]], int]]:
    """Stacks (outermost first) of (function, file) with their sample counts."""
    stacks = []
    for line in path.read_text().splitlines():
        head, _, count = line.rpartition(" ")
        if not head or not count.isdigit():
            continue
        frames = []
        for raw in head.split(";"):
            match = FRAME.match(raw)
            if match:  # thread names and process lines have no (file)
                frames.append((match["func"], match["file"]))
        if frames:
            stacks.append((frames, int(count)))
    return stacks


def package(file: str) -> str:
    """site-packages/<package>/..., the stdlib module's file, or our own module's path."""
    if ours(file):
        return OURS + file.split(OURS, 1)[1].removesuffix(".py")
    if "site-packages/" in file:
        return file.split("site-packages/", 1)[1].split("/", 1)[0]
    return file.rsplit("/", 2)[-2] if file.count("/") >= 2 else file


def short(func: str, file: str) -> str:
    if ours(file):
        file = OURS + file.split(OURS, 1)[1]
    elif "site-packages/" in file:
        file = file.split("site-packages/", 1)[1]
    else:
        file = "/".join(file.rsplit("/", 2)[-2:])
    return f"{func} ({file})"


def summary(stacks: list[tuple[list[tuple[str, str]], int]], top: int) -> str:
    total = sum(count for _, count in stacks) or 1
    own_package: Counter[str] = Counter()
    own_function: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    ours_inclusive: Counter[str] = Counter()
    ours_self = 0
    ours_any = 0
    for frames, count in stacks:
        func, file = frames[-1]
        own_package[package(file)] += count
        own_function[short(func, file)] += count
        ours_self += count if ours(file) else 0
        for name in {short(f, p) for f, p in frames}:
            inclusive[name] += count
        # Below the server's entry point: the frames of our code that run per request.
        mine = {short(f, p) for f, p in frames if ours(p) and not p.endswith("start_server.py")}
        for name in mine:
            ours_inclusive[name] += count
        ours_any += count if mine else 0

    def rows(counter: Counter[str], limit: int) -> list[str]:
        return [f"{100 * n / total:5.1f}% {name}" for name, n in counter.most_common(limit)]

    return "\n".join(
        [
            f"total {total} samples",
            "== self, by package of the innermost frame",
            *rows(own_package, 20),
            "== self, by function",
            *rows(own_function, top),
            "== inclusive, by function",
            *rows(inclusive, top),
            f"== {OURS}: on {100 * ours_any / total:.1f}% of the samples (inclusive), "
            f"{100 * ours_self / total:.1f}% in its own lines (self)",
            *rows(ours_inclusive, 20),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args(argv)
    print(summary(parse(args.profile), args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
