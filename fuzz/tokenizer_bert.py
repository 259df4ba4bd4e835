"""Fuzz target: the BERT WordPiece tokenizer (``FlagAIBertTokenizer`` on bert-base-chinese's vocab.txt from the
offline material): encode text, pairs with truncation, decode ids (``_harness.check_tokenizer``)."""

import functools

import atheris

from _harness import TOKENIZER_MODULES, check_tokenizer, main, material

with atheris.instrument_imports(include=TOKENIZER_MODULES):
    from flagai_hf import FlagAIBertTokenizer


@functools.cache
def prepare():
    return FlagAIBertTokenizer(vocab_file=material("chinese_vocab"))


def TestOneInput(data: bytes) -> None:
    check_tokenizer(prepare(), data)


if __name__ == "__main__":
    import sys

    main(sys.modules[__name__])
