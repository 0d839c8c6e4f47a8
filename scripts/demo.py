"""`make demo`: render the template with its defaults, start the agent, stream one answer.

The agent talks to the fake Databricks workspace shipped in the generated project, unless a
Databricks profile is configured (DATABRICKS_CONFIG_PROFILE, DATABRICKS_HOST, or a [DEFAULT]
profile in ~/.databrickscfg): then it uses your workspace and the default LLM endpoint.
"""

import argparse
import configparser
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROMPT = 'What time is it in Tokyo? Use get_current_time {"timezone": "Asia/Tokyo"}'
FAKE_TOKEN = "dapi-fake-token"  # the fake workspace's default token (tests/fake_workspace.py)


def configured_profile() -> str | None:
    """The Databricks profile to use, or None to use the fake workspace."""
    if profile := os.environ.get("DATABRICKS_CONFIG_PROFILE"):
        return profile
    if os.environ.get("DATABRICKS_HOST"):
        return ""  # environment-variable authentication
    config_file = Path(os.environ.get("DATABRICKS_CONFIG_FILE", Path.home() / ".databrickscfg"))
    parser = configparser.ConfigParser()
    with contextlib.suppress(OSError, configparser.Error):
        parser.read(config_file)
    return "DEFAULT" if parser.defaults().get("host") else None


def render(out: Path) -> Path:
    config = out / "config.json"
    config.write_text("{}")
    subprocess.run(
        [
            str(REPO / "tests" / "bundle-init"),
            str(REPO),
            "--config-file",
            str(config),
            "--output-dir",
            str(out),
        ],
        check=True,
    )
    schema = json.loads((REPO / "databricks_template_schema.json").read_text())
    return out / schema["properties"]["app_name"]["default"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def process(
    args: list[str], cwd: Path, env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[str]]:
    """Run a helper process; its logs go to `log`, stdout stays readable."""
    with log.open("w") as log_file:
        proc = subprocess.Popen(
            args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=log_file, text=True
        )
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def wait_healthy(url: str, proc: subprocess.Popen[str], log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"The agent server exited with code {proc.returncode}:\n{log.read_text()}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        time.sleep(0.3)
    sys.exit(f"The agent server was not healthy within {timeout:.0f} s:\n{log.read_text()}")


def stream_answer(url: str, prompt: str) -> None:
    body = json.dumps({"input": [{"role": "user", "content": prompt}], "stream": True}).encode()
    request = urllib.request.Request(
        f"{url}/invocations", data=body, headers={"Content-Type": "application/json"}
    )
    print(f"\n> {prompt}\n")
    with urllib.request.urlopen(request, timeout=300) as response:
        for raw in response:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[len("data: ") :])
            if "error" in event:
                sys.exit(f"\nThe agent answered with an error: {event['error']}")
            if event["type"] == "response.output_text.delta":
                print(event["delta"], end="", flush=True)
            elif event["type"] == "response.output_item.done":
                item = event["item"]
                if item["type"] == "function_call":
                    print(f"[tool call] {item['name']}({item['arguments']})")
                elif item["type"] == "function_call_output":
                    print(f"[tool result] {item['output']}")
    print("\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompt", default=PROMPT, help="the question to ask the agent")
    parser.add_argument("--keep", action="store_true", help="keep the rendered project")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="agent-demo-"))
    try:
        project = render(workdir)
        print(f"Rendered the template with its defaults into {project}")
        subprocess.run(["uv", "sync", "--quiet"], cwd=project, check=True)
        env = {**os.environ, "AGENT_ENV_FILE": os.devnull}
        for key in [k for k in env if k.startswith("MLFLOW_")]:
            del env[key]  # no tracing: the demo writes nothing outside its folder
        profile = configured_profile()
        with contextlib.ExitStack() as stack:
            if profile is None:
                fake = stack.enter_context(
                    process(
                        [
                            "uv",
                            "run",
                            "--quiet",
                            "python",
                            "-m",
                            "tests.fake_workspace",
                            "--port",
                            "0",
                            "--token-delay",
                            "0.03",
                        ],
                        project,
                        env,
                        workdir / "fake_workspace.log",
                    )
                )
                line = fake.stdout.readline().strip() if fake.stdout else ""
                if not line.startswith("FAKE_WORKSPACE_URL="):
                    sys.exit(f"The fake workspace did not start: {line!r}")
                host = line.split("=", 1)[1]
                print(f"No Databricks profile configured: using the fake workspace at {host}")
                env |= {
                    "DATABRICKS_HOST": host,
                    "DATABRICKS_TOKEN": FAKE_TOKEN,
                    "DATABRICKS_CONFIG_FILE": str(workdir / "no-databrickscfg"),
                }
                for key in (
                    "DATABRICKS_CONFIG_PROFILE",
                    "DATABRICKS_CLIENT_ID",
                    "DATABRICKS_CLIENT_SECRET",
                    "DATABRICKS_AUTH_TYPE",
                ):
                    env.pop(key, None)
            else:
                print(f"Using your Databricks workspace (profile {profile or 'from environment'})")
                if profile:
                    env["DATABRICKS_CONFIG_PROFILE"] = profile
            schema = json.loads((REPO / "databricks_template_schema.json").read_text())
            env["SERVING_ENDPOINT"] = schema["properties"]["serving_endpoint"]["default"]
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            server = stack.enter_context(
                process(
                    ["uv", "run", "--quiet", "start-server", "--port", str(port)],
                    project,
                    env,
                    workdir / "server.log",
                )
            )
            wait_healthy(url, server, workdir / "server.log")
            print(f"The agent is serving at {url}")
            try:
                stream_answer(url, args.prompt)
            except urllib.error.URLError as exc:
                sys.exit(f"Request to the agent failed: {exc}")
    finally:
        if args.keep:
            print(f"Kept the rendered project in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
