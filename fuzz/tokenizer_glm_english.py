"""Fuzz target: GLM's English WordPiece tokenizer (``GLMEnglishTokenizer``, bert-base-uncased vocab.txt from the offline
material) with its command tokens ([MASK], [gMASK], [sMASK], <|endoftext|>) mixed into the text."""

import functools

import atheris

from _harness import TOKENIZER_MODULES, check_tokenizer, main

with atheris.instrument_imports(include=TOKENIZER_MODULES):
    from flagai_hf.models.glm.tokenization_flagai_glm import GLMEnglishTokenizer


@functools.cache
def prepare():
    return GLMEnglishTokenizer()


def TestOneInput(data: bytes) -> None:
    check_tokenizer(prepare(), data)


if __name__ == "__main__":
    import sys

    main(sys.modules[__name__])
