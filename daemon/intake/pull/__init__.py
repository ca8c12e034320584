"""Pulls: a model downloaded from the Hugging Face Hub or Ollama's registry into the store."""
