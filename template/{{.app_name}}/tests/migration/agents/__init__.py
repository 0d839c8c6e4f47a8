"""Agents the migration tests log with mlflow.pyfunc.log_model, as people logged them for Model
Serving. Each reads the LLM endpoint name from its own code, as such agents do; the tests point
Databricks clients at the fake workspace, whose LLM is deterministic."""

LLM_ENDPOINT = "migrate-test-llm"
