"""Pulling models from the Hugging Face Hub into the store."""
