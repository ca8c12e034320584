"""Getting a model in: every way a model's files reach the store, and the terms those ways share.

- pull/: downloads. A name is looked up in r1's catalog and on the Hugging Face Hub (hub.py), then in
  Ollama's registry (ollama_registry.py); locate.py decides which, or whether a stored model is up to
  date; manager.py runs the transfers (transfer.py), one per model at a time.
- tools/: `r1 import --from ollama|hf|lmstudio`: models another tool already downloaded, found in
  that tool's own layout and linked in, never copied where the file system allows.
- files.py: `r1 import PATH` and `r1 create` with a path or uploaded blobs.
- What they share, here beside them: quant.py (which files a tag means), catalog.py (r1's short
  names), ollama_manifest.py and ollama_settings.py (Ollama's manifests and settings layers, as its
  registry serves them and its store keeps them), settings.py (a model's settings, checked) and
  files.py's stored_facts (a model's facts, read from what is stored).

pull/ and tools/ import what is here and pull/ may use tools/ (a file another tool holds saves a
download); nothing here imports either, so the packages form no cycle (tests/test_layout.py).
"""
