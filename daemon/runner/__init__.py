"""The runner: the child process that holds one loaded model, one per (model, load options).

Started by the daemon as `python -m r1.daemon.runner --fd N` (scheduler/runner_client.py) and spoken
to in NDJSON frames (protocol.py, the one module the daemon imports from here). Everything else in
this package runs only in that child: the worker loop, preparing prompts, stop strings, think budgets.
"""
