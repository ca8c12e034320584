"""The daemon's side of runners: which models are loaded, and talking to their processes.

scheduler (loaded models, budget, LRU, queue, keep-alive: leases), model_spec (what a runner is
started with, and what a lease hands out), runner_client (start a runner process, send frames, route
answers), context_fit (a runner whose context holds a prompt that set no num_ctx).
"""
