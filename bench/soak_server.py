"""The generated agent server, for bench/soak.py: `start-server` plus a stats dump on SIGUSR1.

Run with the generated project's interpreter, from the project's folder:

    .venv/bin/python /path/to/bench/soak_server.py --stats STATS.json --port 8000

On SIGUSR1 it writes {"tasks": ..., "threads": ...} to STATS.json: the asyncio tasks alive on
the server's event loop and the Python threads, which soak.py compares before and after the load
to find leaks. Everything else is the generated server, unchanged.
"""

import asyncio
import json
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

sys.path.insert(0, os.getcwd())  # the generated project

from agent_server import start_server  # noqa: E402


def main() -> None:
    stats = Path(sys.argv[sys.argv.index("--stats") + 1])
    del sys.argv[sys.argv.index("--stats") : sys.argv.index("--stats") + 2]

    def dump(signum: int, frame: FrameType | None) -> None:
        try:
            tasks = len(asyncio.all_tasks(asyncio.get_running_loop()))
        except RuntimeError:  # between loop iterations: no running loop seen from here
            tasks = -1
        data = {"tasks": tasks, "threads": threading.active_count()}
        stats.with_suffix(".tmp").write_text(json.dumps(data))
        stats.with_suffix(".tmp").replace(stats)

    signal.signal(signal.SIGUSR1, dump)
    start_server.main(sys.argv[1:])


if __name__ == "__main__":
    main()
