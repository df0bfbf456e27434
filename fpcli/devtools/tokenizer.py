"""The tiny tokenizer of the test checkpoints: a byte-level BPE trained on a few sentences with Qwen2's pipeline and
saved as a Qwen2Tokenizer, so prompts tokenize the way the real checkpoints' tokenizers do (both families use it).
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers
from tokenizers.models import BPE
from tokenizers.trainers import BpeTrainer

from fpcli.model.llava.sequence import CHATML_TEMPLATE

# Qwen2's pre-tokenizer split, so the BPE behaves like the real tokenizer on whitespace and digits.
_QWEN2_SPLIT = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]

# The ChatML template Qwen2 instruct models ship is the text LLaVA's "qwen_1_5" conversation renders: the one
# fpcli.model.llava.sequence falls back to.
QWEN2_CHAT_TEMPLATE = CHATML_TEMPLATE

# Small English corpus so common words become single tokens (keeps test prompts short).
_CORPUS = [
    "You are a helpful assistant.",
    "What is the man doing? What is happening in the video? Describe the scene.",
    "The video lasts for 10.00 seconds, and 8 frames are uniformly sampled from it. "
    "These frames are located at 0.00s,1.25s,2.50s. Please answer the following questions related to this video.",
    "user assistant system a the is are in of and to it from with this that what where who when how why",
    "0 1 2 3 4 5 6 7 8 9 10 100 seconds frames video scene man woman car dog cat red blue green",
]


def build_tokenizer(
    directory: Path,
    special_tokens: list[str] = SPECIAL_TOKENS,
    chat_template: str = QWEN2_CHAT_TEMPLATE,
    extra_special: dict[str, str] | None = None,
) -> tuple[int, list[int]]:
    """Train a tiny byte-level BPE with Qwen2's pipeline, wrap it as Qwen2Tokenizer and save it.

    `special_tokens[0]` is the pad token, `special_tokens[2]` the EOS; `extra_special` names special tokens as
    attributes (`video_token`). Returns the tokenizer length (the model's vocabulary size) and the ids of
    `special_tokens`."""
    from transformers import Qwen2Tokenizer

    bpe = Tokenizer(BPE(unk_token=None, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False))
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN2_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(
        vocab_size=400,
        special_tokens=special_tokens[:1],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_CORPUS, trainer=trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]

    tokenizer = Qwen2Tokenizer(
        vocab=model["vocab"],
        merges=merges,
        eos_token=special_tokens[2],
        pad_token=special_tokens[0],
        extra_special_tokens=extra_special or {"image_token": "<image>", "video_token": "<video>"},
        model_max_length=32768,
    )
    specials = [AddedToken(t, special=True, normalized=False) for t in special_tokens[1:]]
    tokenizer.add_tokens(specials, special_tokens=True)
    tokenizer.chat_template = chat_template
    tokenizer.save_pretrained(directory)
    return len(tokenizer), tokenizer.convert_tokens_to_ids(special_tokens)
