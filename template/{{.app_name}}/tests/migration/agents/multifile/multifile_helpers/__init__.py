"""Helper code of the multi-file agent, logged with it as code_paths."""
