"""A tiny vision projector (mmproj) GGUF for tests, built with `gguf`: llama.cpp's mtmd loads it beside
a tests/support/tinymodels.py text model and turns an image into that model's embeddings.

The projector is LLaVA's: a CLIP vision tower (arch `clip`, projector type `mlp`) with one transformer
block, then two linear layers that map the tower's width onto the text model's n_embd. Weights are
random: the tests check the plumbing (image bytes to tokens to an answer), not what the model sees.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter

from .tinymodels import _finish, _llama_writer

IMAGE_SIZE = 56  # pixels a side: mtmd resizes every image to this square
PATCH_SIZE = 14
IMAGE_TOKENS = (IMAGE_SIZE // PATCH_SIZE) ** 2  # positions one image takes in the text model: 16
TEXT_WIDTH = 64  # write_tiny_gguf's default n_embd, which the projector's output must match


def write_tiny_projector(path: Path, *, text_width: int = TEXT_WIDTH, width: int = 32, seed: int = 0) -> Path:
    """A random-weight LLaVA-style mmproj GGUF whose image embeddings are `text_width` wide."""
    rng = np.random.default_rng(seed)

    def weights(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.2).astype(np.float32)

    ff, n_positions = 2 * width, (IMAGE_SIZE // PATCH_SIZE) ** 2 + 1
    writer = GGUFWriter(Path(path), "clip")
    writer.add_name("tiny-mmproj")
    writer.add_file_type(0)
    writer.add_bool("clip.has_text_encoder", False)
    writer.add_bool("clip.has_vision_encoder", True)
    writer.add_bool("clip.has_llava_projector", True)
    writer.add_string("clip.projector_type", "mlp")
    writer.add_bool("clip.use_gelu", True)
    writer.add_uint32("clip.vision.image_size", IMAGE_SIZE)
    writer.add_uint32("clip.vision.patch_size", PATCH_SIZE)
    writer.add_uint32("clip.vision.embedding_length", width)
    writer.add_uint32("clip.vision.feed_forward_length", ff)
    writer.add_uint32("clip.vision.projection_dim", text_width)
    writer.add_uint32("clip.vision.attention.head_count", 2)
    writer.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-5)
    # LLaVA drops the tower's last block: two written, one run (llava.cpp's "il_last").
    writer.add_uint32("clip.vision.block_count", 2)
    writer.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    writer.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])
    # ggml's convolution wants its kernel in F16.
    writer.add_tensor(
        "v.patch_embd.weight",
        weights(width, 3, PATCH_SIZE, PATCH_SIZE).astype(np.float16),
        raw_dtype=GGMLQuantizationType.F16,
    )
    writer.add_tensor("v.class_embd", weights(width))
    writer.add_tensor("v.position_embd.weight", weights(n_positions, width))
    writer.add_tensor("v.pre_ln.weight", np.ones(width, dtype=np.float32))
    writer.add_tensor("v.pre_ln.bias", np.zeros(width, dtype=np.float32))
    for i in range(2):
        for name in ("attn_q", "attn_k", "attn_v", "attn_out"):
            writer.add_tensor(f"v.blk.{i}.{name}.weight", weights(width, width))
            writer.add_tensor(f"v.blk.{i}.{name}.bias", weights(width))
        for name in ("ln1", "ln2"):
            writer.add_tensor(f"v.blk.{i}.{name}.weight", np.ones(width, dtype=np.float32))
            writer.add_tensor(f"v.blk.{i}.{name}.bias", np.zeros(width, dtype=np.float32))
        writer.add_tensor(f"v.blk.{i}.ffn_up.weight", weights(ff, width))
        writer.add_tensor(f"v.blk.{i}.ffn_up.bias", weights(ff))
        writer.add_tensor(f"v.blk.{i}.ffn_down.weight", weights(width, ff))
        writer.add_tensor(f"v.blk.{i}.ffn_down.bias", weights(width))
    # Large output weights: an image's embeddings dominate the text model's hidden state, so
    # different images steer the greedy answer apart.
    writer.add_tensor("mm.0.weight", weights(text_width, width) * 5)
    writer.add_tensor("mm.0.bias", weights(text_width))
    writer.add_tensor("mm.2.weight", weights(text_width, text_width) * 5)
    writer.add_tensor("mm.2.bias", weights(text_width))
    _finish(writer)
    return Path(path)


def write_tiny_vision_model(directory: Path, *, seed: int = 0) -> tuple[Path, Path]:
    """A tiny text model and its projector in `directory`: (model.gguf, mmproj-model.gguf)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model = directory / "model.gguf"
    writer = _llama_writer(model, 0, name="tiny-vision", seed=seed)
    # As in Gemma's tokenizer: no space before each text piece, so the text around an image tokenizes
    # as it would without it (mtmd tokenizes each piece between images apart).
    writer.add_add_space_prefix(False)
    _finish(writer)
    projector = write_tiny_projector(directory / "mmproj-model.gguf", seed=seed)
    return model, projector


def png(color: tuple[int, int, int], size: int = 8, *, stripe: tuple[int, int, int] | None = None) -> bytes:
    """A small PNG of one colour (with `stripe`, its top half in another), made without PIL."""
    import struct
    import zlib

    rows = []
    for y in range(size):
        pixel = stripe if stripe is not None and y < size // 2 else color
        rows.append(b"\x00" + bytes(pixel) * size)

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    out = io.BytesIO()
    out.write(b"\x89PNG\r\n\x1a\n")
    out.write(chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b""))
    return out.getvalue()
