"""The agent app: the agent (agent.py) and the server that hosts it (start_server.py)."""
