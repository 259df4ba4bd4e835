"""Fuzz target: T5's tokenizers: ``T5SentencePieceTokenizer`` on a 300-piece unigram model trained here on offline
WNUT tweets (as tests/models/t5 builds it), and ``T5ChineseTokenizer`` (WordPiece on bert-base-chinese's vocab.txt);
the first input byte picks one."""

import functools
import tempfile
from pathlib import Path

import atheris

from _harness import TOKENIZER_MODULES, check_tokenizer, main, material

with atheris.instrument_imports(include=TOKENIZER_MODULES):
    from flagai_hf import T5ChineseTokenizer, T5SentencePieceTokenizer


@functools.cache
def prepare():
    import sentencepiece as spm

    folder = Path(tempfile.mkdtemp(prefix="fuzz_t5_"))
    spm.SentencePieceTrainer.train(sentence_iterator=iter(material("wnut_tweets", 600)),
                                   model_prefix=str(folder / "spiece"), vocab_size=300, model_type="unigram",
                                   pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0, minloglevel=2)
    return (T5SentencePieceTokenizer(vocab_file=str(folder / "spiece.model")),
            T5ChineseTokenizer(vocab_file=material("chinese_vocab")))


def TestOneInput(data: bytes) -> None:
    check_tokenizer(prepare()[data[0] % 2 if data else 0], data[1:])


if __name__ == "__main__":
    import sys

    main(sys.modules[__name__])
