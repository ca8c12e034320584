"""Chat templates: rendering a model's template into a prompt, within limits, in a process of its own.

template (render: the one place prompts are made), sized (a template that came with a request or a
Modelfile, converted within its size limit), sandbox (the guarded Jinja environments, and a reading one
the daemon uses to see what a template reads), renderer (the child process renders run in) and
renderers (a runner's two of them), go/ (Ollama's Go templates converted to Jinja). Each render's
budget is daemon/template_limits.py. Runners render; the daemon checks and converts templates.
"""
