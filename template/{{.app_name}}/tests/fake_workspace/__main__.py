"""`python -m tests.fake_workspace`: serve a fake workspace until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Iterable

from .server import FakeWorkspace


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve an offline fake Databricks workspace.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tokens", type=int, default=None, help="content chunks per answer")
    parser.add_argument("--token-delay", type=float, default=0.0, help="seconds per token")
    args = parser.parse_args(None if argv is None else list(argv))

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    fake = FakeWorkspace(
        tokens=args.tokens, token_delay=args.token_delay, host=args.host, port=args.port
    )
    with fake:
        print(f"FAKE_WORKSPACE_URL={fake.url}", flush=True)
        while not stop.wait(0.2):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
