"""`uv run migrate`: move a Model Serving ResponsesAgent into this app, deterministically.

The steps, one module each:
- source.py: find the model (serving endpoint, model URI or directory) and download it;
- mlmodel.py: read the MLflow model (MLmodel, requirements, input example) and check it is a
  ResponsesAgent;
- resources.py and bundle.py: map the model's declared resources to app resources and edit
  databricks.yml structurally;
- dependencies.py: merge the model's requirements into pyproject.toml through uv;
- entrypoint.py and rewrite.py: generate agent_server/agent.py (an adapter around the original
  agent, or with --rewrite a module-level rewrite of it);
- planner.py: everything above as one plan, printed by --dry-run and applied only once complete;
- verify.py: the model's input example through the original model and the migrated server;
- report.py: MIGRATION.md and the printed summary;
- cli.py: the command line.
"""
