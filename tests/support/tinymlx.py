"""A tiny, real MLX model for tests: `mlx_lm.load()` loads it and it generates (random text).

A 2-layer llama (64 wide, tied embeddings) with random float32 weights, and a byte-level BPE
tokenizer trained in milliseconds on a fixed English text. Same arguments, same bytes: the
folder can be cached and its digests compared across runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten, tree_map_with_path
from mlx_lm.models.llama import Model, ModelArgs
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

BOS, EOS = "<s>", "</s>"

# ChatML, the format most small instruct models use.
DEFAULT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Like DeepSeek-R1's distills: the generation prompt opens the <think> block itself,
# so the model's output starts inside it and only the closing tag is generated.
THINK_TEMPLATE = DEFAULT_TEMPLATE.replace("'<|im_start|>assistant\\n'", "'<|im_start|>assistant\\n<think>\\n'")

# Parsed out of any text as single tokens; the chat markers are special (skipped by decode).
SPECIAL_TOKENS = [BOS, EOS, "<|im_start|>", "<|im_end|>"]
THINK_TOKENS = ["<think>", "</think>"]

HIDDEN, LAYERS, HEADS, FF, CONTEXT = 64, 2, 2, 128, 1024
BPE_VOCAB = 400

_TEXT = """\
The quick brown fox jumps over the lazy dog. A small model can still say hello to the world.
Once upon a time there was a little robot who lived in a quiet town by the sea. Every morning
the robot walked to the harbour, counted the boats, and wrote the number in a blue notebook.
The people of the town liked the robot because it was kind, careful and always on time.
Why is the sky blue? Sunlight is scattered by the air, and blue light is scattered the most.
Water boils at one hundred degrees, and ice melts when the weather turns warm in the spring.
Please think step by step before you answer, then give the answer in one short sentence.
Question: what is two plus two? Answer: two plus two is four, and four plus four is eight.
She reads books in the evening, he plays music at night, and they both cook on Sundays.
"""

DEFAULT = DEFAULT_TEMPLATE  # write_mlx_model's chat_template default


def write_mlx_model(folder: Path, *, chat_template: str | None = DEFAULT, seed: int = 0) -> Path:
    """Write config.json, model.safetensors and the tokenizer files into `folder`; return it.

    `seed` picks the weights (different seeds, different bytes); chat_template=None leaves the
    tokenizer without one.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab_size = _write_tokenizer(folder, chat_template)
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": HIDDEN,
        "intermediate_size": FF,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": HEADS,
        "max_position_embeddings": CONTEXT,
        "vocab_size": vocab_size,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    mx.save_safetensors(str(folder / "model.safetensors"), _weights(config, seed), metadata={"format": "mlx"})
    return folder


def _weights(config: dict, seed: int) -> dict[str, mx.array]:
    """mlx_lm's own llama module supplies the parameter names and shapes; numpy supplies the
    values, so the result depends on `seed` alone and not on mlx's global random state."""
    model = Model(ModelArgs.from_dict(config))
    rng = np.random.default_rng(seed)

    def fill(path: str, p: mx.array) -> mx.array:
        if path.endswith("norm.weight"):
            return mx.ones(p.shape, dtype=mx.float32)
        # Small (tied) embeddings under larger layers: with embeddings dominating, the model
        # would only repeat its last token, and greedy output would be one token forever.
        scale = 0.02 if path.endswith("embed_tokens.weight") else 0.2
        return mx.array((rng.standard_normal(p.shape) * scale).astype(np.float32))

    return dict(tree_flatten(tree_map_with_path(fill, model.parameters())))


def _write_tokenizer(folder: Path, chat_template: str | None) -> int:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte: any text encodes
        show_progress=False,
    )
    tokenizer.train_from_iterator(_TEXT.splitlines(), trainer)
    tokenizer.add_tokens(THINK_TOKENS)
    # A llama-style tokenizer: encode() puts BOS first.
    bos_id = tokenizer.token_to_id(BOS)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=BOS, eos_token=EOS)
    fast.chat_template = chat_template
    fast.save_pretrained(folder)
    return tokenizer.get_vocab_size(with_added_tokens=True)
