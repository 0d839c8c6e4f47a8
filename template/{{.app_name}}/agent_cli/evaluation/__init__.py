"""The parts of `uv run agent-evaluate` (agent_cli/evaluate.py): the evaluation set, the agent run
in this process, the scorers, and where the results go.

mlflow and the agent are imported only when they are needed, so `--help` and a mistake in the
evaluation set are answered at once.
"""
