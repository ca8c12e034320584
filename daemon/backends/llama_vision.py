"""Images in a GGUF model's prompt, through llama.cpp's multimodal library (mtmd, llama_cpp.mtmd_cpp).

The vision projector (the model's `mmproj` GGUF, the load option `projector`) loads beside the model.
A prompt with images is rendered with one MARKER where each image goes; mtmd splits it into text
chunks (tokens) and image chunks, each image already resized and cut into patches.

In the batcher's token lists (a slot's `cached`, a sequence's prompt) an image's positions stand as
ids derived from the image's hash, as llama-server does: negative, so never a vocabulary token, and
different for another image, so a slot whose cells hold one image never matches a prompt with another
past the point where the images start. The image itself is evaluated apart from the shared batch:
mtmd encodes it and decodes its embeddings into the sequence's slot (its own llama_decode calls).
"""

from __future__ import annotations

import ctypes
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import llama_cpp

from .base import BackendError

MARKER = "<__media__>"  # mtmd's default media marker, where the prompt places an image


def _mtmd() -> Any:
    """llama_cpp.mtmd_cpp, loaded on first use: it opens libmtmd, which text-only runners never need."""
    import llama_cpp.mtmd_cpp as mtmd

    return mtmd


def image_id(digest: bytes) -> int:
    """The id an image's positions stand as: negative, within int32 (kv_files.py packs ids as such)."""
    return -1 - int.from_bytes(digest[:4], "little") % (2**31 - 1)


class Slot(Protocol):
    """What ImagePrompt reads of llama_batch.Slot."""

    index: int
    cached: list[int]


@dataclass
class ImagePrompt:
    """A prompt's tokens, each image's positions as its id, and the image chunks by where they start."""

    projector: Projector
    tokens: list[int]
    chunks: dict[int, Any] = field(default_factory=dict)  # prompt index -> mtmd_input_chunk (a copy we free)

    def whole(self, keep: int) -> int:
        """`keep` prompt tokens to reuse, moved back to an image's start where it would cut into one."""
        for start, chunk in self.chunks.items():
            if start < keep < start + _mtmd().mtmd_input_chunk_get_n_pos(chunk):
                return start
        return keep

    def text_run(self, todo: list[int], room: int) -> int:
        """How many of the tokens at the head of `todo` (at most `room`) are text, before an image."""
        return next((i for i, token in enumerate(todo[:room]) if token < 0), min(room, len(todo)))

    def evaluate(self, ctx: Any, slot: Slot, todo: list[int], n_batch: int) -> bool:
        """Evaluate the images at the head of `todo` into the slot's cells; their ids move to its `cached`.
        Whether there were any."""
        mtmd = _mtmd()
        evaluated = bool(todo) and todo[0] < 0
        while todo and todo[0] < 0:
            start = len(slot.cached)
            chunk = self.chunks[start]
            after = llama_cpp.llama_pos(0)
            status = mtmd.mtmd_helper_eval_chunk_single(self.projector.ctx, ctx, chunk, start, slot.index,
                                                        n_batch, False, ctypes.byref(after))
            if status != 0:
                raise BackendError(f"llama.cpp could not evaluate an image of the prompt (status {status}); "
                                   "lower num_parallel or num_ctx")
            n = after.value - start
            slot.cached.extend(todo[:n])
            del todo[:n]
        return evaluated

    def close(self) -> None:
        mtmd = _mtmd()
        for chunk in self.chunks.values():
            mtmd.mtmd_input_chunk_free(chunk)
        self.chunks.clear()


class Projector:
    """The projector of one loaded model: images and a rendered prompt to an ImagePrompt."""

    def __init__(self, path: Path, model: Any, threads: int, use_gpu: bool) -> None:
        mtmd = _mtmd()
        # mtmd's logs go where llama.cpp's do: llama-cpp-python's callback, errors only unless verbose.
        from llama_cpp._logger import llama_log_callback

        mtmd.mtmd_log_set(llama_log_callback, None)
        mtmd.mtmd_helper_log_set(llama_log_callback, None)
        params = mtmd.mtmd_context_params_default()
        params.use_gpu = use_gpu and bool(llama_cpp.llama_supports_gpu_offload())
        params.n_threads = threads
        params.print_timings = False
        params.media_marker = MARKER.encode()
        self.ctx = mtmd.mtmd_init_from_file(str(path).encode(), model, params)
        if not self.ctx:
            raise BackendError(f"llama.cpp could not load the vision projector {path.name}: it is not a projector "
                               "for this model (its output width must be the model's embedding width)")
        if not mtmd.mtmd_support_vision(self.ctx):
            self.close()
            raise BackendError(f"{path.name} is a projector without vision (audio only): r1 takes images only")

    def prompt(self, text: str, images: Sequence[bytes], add_special: bool) -> ImagePrompt:
        """The rendered prompt (one MARKER per image, in order) with its images, as tokens and image chunks."""
        mtmd = _mtmd()
        markers = text.count(MARKER)
        if markers != len(images):
            raise BackendError(f"the prompt places {markers} images but the request holds {len(images)}; "
                               f"a template or text that writes {MARKER} itself cannot be used with images")
        bitmaps = []
        chunks = mtmd.mtmd_input_chunks_init()
        try:
            for n, image in enumerate(images, 1):
                bitmaps.append(self._bitmap(image, n))
            encoded = text.encode()
            given = mtmd.mtmd_input_text()
            given.text, given.text_len = encoded, len(encoded)
            given.add_special, given.parse_special = add_special, True
            array = (mtmd.mtmd_bitmap_p_ctypes * len(bitmaps))(*bitmaps)
            status = mtmd.mtmd_tokenize(self.ctx, chunks, ctypes.byref(given), array, len(bitmaps))
            if status != 0:
                raise BackendError(f"llama.cpp could not prepare the prompt's images (mtmd_tokenize status {status})")
            return self._walk(chunks)
        finally:
            for bitmap in bitmaps:
                mtmd.mtmd_bitmap_free(bitmap)
            mtmd.mtmd_input_chunks_free(chunks)

    def _bitmap(self, image: bytes, n: int) -> Any:
        """An image decoded (PNG, JPEG, GIF, BMP... as stb_image reads them), its id its SHA-256."""
        mtmd = _mtmd()
        buffer = (ctypes.c_uint8 * len(image)).from_buffer_copy(image)
        bitmap = mtmd.mtmd_helper_bitmap_init_from_buf(self.ctx, buffer, len(image), False)
        if not bitmap:
            raise BackendError(f"image {n} of the prompt could not be decoded; send PNG, JPEG, GIF or BMP bytes")
        mtmd.mtmd_bitmap_set_id(bitmap, hashlib.sha256(image).hexdigest().encode())
        return bitmap

    def _walk(self, chunks: Any) -> ImagePrompt:
        mtmd = _mtmd()
        prompt = ImagePrompt(self, [])
        kinds = []
        for i in range(mtmd.mtmd_input_chunks_size(chunks)):
            chunk = mtmd.mtmd_input_chunks_get(chunks, i)
            kind = mtmd.mtmd_input_chunk_get_type(chunk)
            kinds.append(kind)
            if kind == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
                count = ctypes.c_size_t()
                tokens = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(count))
                prompt.tokens.extend(tokens[j] for j in range(count.value))
                continue
            digest = hashlib.sha256(mtmd.mtmd_input_chunk_get_id(chunk) or b"").digest()
            prompt.chunks[len(prompt.tokens)] = mtmd.mtmd_input_chunk_copy(chunk)
            prompt.tokens.extend([image_id(digest)] * mtmd.mtmd_input_chunk_get_n_pos(chunk))
        if kinds and kinds[-1] != mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
            prompt.close()  # the last position's logits give the first sample: it must be text
            raise BackendError("the prompt ends with an image; add text after it")
        return prompt

    def close(self) -> None:
        if self.ctx:
            _mtmd().mtmd_free(self.ctx)
            self.ctx = None
