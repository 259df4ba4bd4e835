"""Fuzz target: GLM's tokenizers from the offline material: the Chinese sentencepiece one (``GLMChineseTokenizer``,
cog-pretrain.model, command tokens such as [MASK], [gMASK], [sMASK] in the text) and the English WordPiece one
(``GLMEnglishTokenizer``, bert-base-uncased's vocab.txt); the first input byte picks one."""

import functools

import atheris

from _harness import TOKENIZER_MODULES, check_tokenizer, main

with atheris.instrument_imports(include=TOKENIZER_MODULES):
    from flagai_hf.models.glm.tokenization_flagai_glm import GLMChineseTokenizer, GLMEnglishTokenizer


@functools.cache
def prepare():
    return GLMChineseTokenizer(), GLMEnglishTokenizer()


def TestOneInput(data: bytes) -> None:
    check_tokenizer(prepare()[data[0] % 2 if data else 0], data[1:])


if __name__ == "__main__":
    import sys

    main(sys.modules[__name__])
