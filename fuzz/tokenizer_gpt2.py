"""Fuzz target: the GPT2 byte-level BPE tokenizer (``FlagAIGPT2Tokenizer`` on GPT-2's vocab/merges from the offline
material). Byte-level BPE is lossless, so decode(encode(text)) must give the text back."""

import functools

import atheris

from _harness import TOKENIZER_MODULES, check_tokenizer, main, material

with atheris.instrument_imports(include=TOKENIZER_MODULES):
    from flagai_hf import FlagAIGPT2Tokenizer


@functools.cache
def prepare():
    vocab, merges = material("gpt2_vocab_files")
    return FlagAIGPT2Tokenizer(vocab_file=vocab, merges_file=merges)


def TestOneInput(data: bytes) -> None:
    check_tokenizer(prepare(), data, lossless=True)


if __name__ == "__main__":
    import sys

    main(sys.modules[__name__])
