"""What the agent runs on: the server's request handling, tracing, workspace clients and tools.

Owners need not edit anything here; see README.md in this folder.
"""
