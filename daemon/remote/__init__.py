"""Remote engines behind r1's model names: an OpenAI-compatible server (a provider, vLLM, llama.cpp's
server) or another Ollama-dialect daemon answers for a stored remote model, in either of r1's dialects.

pool.py picks a URL of a remote, engine.py speaks HTTP to it (key, limits, faults as clear errors),
wire.py translates requests and streamed answers, and generate.py yields the same chunks and final
object a local runner's generation does, so every route serves remote models unchanged. records.py keeps
the remotes and their prices in r1.db; models.py makes and reads the store's remote models.
"""
