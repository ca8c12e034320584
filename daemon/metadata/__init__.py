"""What a model file says about itself, read without loading weights: GGUF headers (gguf_reader),
MLX folders (mlx_reader), which files a path holds (discover), and the typed facts (facts).

`r1 import` and pulls record the facts in the manifest; the memory estimator uses the shape numbers.
"""

from .discover import model_files, read_metadata
from .facts import MetadataError, ModelFacts
from .gguf_reader import read_gguf_metadata, vocabulary_digest
from .mlx_reader import is_mlx_model_file, read_mlx_metadata

__all__ = [
    "MetadataError",
    "ModelFacts",
    "is_mlx_model_file",
    "model_files",
    "read_gguf_metadata",
    "read_metadata",
    "read_mlx_metadata",
    "vocabulary_digest",
]
