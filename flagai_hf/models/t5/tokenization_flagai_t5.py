"""Tokenizers of the T5 family.

- ``T5SentencePieceTokenizer``: T5's English tokenizer, a sentencepiece ``spiece.model`` read with the
  ``sentencepiece`` library itself (ids equal to the model's own), ``</s>`` appended to every sequence as T5 does,
  and T5's ``extra_ids`` sentinels ``<extra_id_0>`` .. ``<extra_id_{n-1}>`` after the sentencepiece vocabulary
  (``<extra_id_0>`` is the last id, as in the released checkpoints).
- ``T5ChineseTokenizer``: FlagAI's T5-base-ch / T5-PEGASUS tokenizer, a BERT WordPiece ``vocab.txt``
  (``FlagAIBertTokenizer``); with ``use_jieba=True`` the text is first cut into words with jieba (``HMM=False``, as
  T5-PEGASUS does): words found in the vocabulary stay whole, the others go through WordPiece character by character.
  jieba is optional (``pip install jieba``).
"""

from __future__ import annotations

import os

from tokenizers import NormalizedString, PreTokenizedString, normalizers, pre_tokenizers
from transformers.tokenization_utils_sentencepiece import SentencePieceBackend

from ...modules.flagai_api import FlagAITokenizerMixin
from ..bert.tokenization_flagai_bert import FlagAIBertTokenizer


class T5SentencePieceTokenizer(FlagAITokenizerMixin, SentencePieceBackend):
    r"""
    T5's sentencepiece tokenizer.

    Args:
        vocab_file (`str`): the sentencepiece model (``spiece.model``).
        eos_token, unk_token, pad_token (`str`): special pieces; ``</s>`` is appended to every sequence.
        extra_ids (`int`, defaults to 100): number of ``<extra_id_i>`` sentinel tokens added after the vocabulary.
    """

    vocab_files_names = {"vocab_file": "spiece.model"}
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, vocab_file: str | None = None, eos_token: str = "</s>", unk_token: str = "<unk>",
                 pad_token: str = "<pad>", extra_ids: int = 100, **kwargs):
        if vocab_file is None or not os.path.isfile(vocab_file):
            raise ValueError(
                f"{type(self).__name__} needs a sentencepiece model: pass vocab_file='path/to/spiece.model' or use "
                f"from_pretrained(folder_with_spiece.model); got {vocab_file!r}"
            )
        sentinels = [f"<extra_id_{index}>" for index in range(extra_ids)]
        given = kwargs.pop("extra_special_tokens", None) or kwargs.pop("additional_special_tokens", None) or []
        # Reversed, so that the sentinels get ids vocab + extra_ids - 1 - i (``<extra_id_0>`` last), as in T5.
        extra = [token for token in reversed(sentinels)] + [str(t) for t in given if str(t) not in sentinels]
        self.extra_ids = extra_ids
        super().__init__(vocab_file=vocab_file, eos_token=eos_token, unk_token=unk_token, pad_token=pad_token,
                         extra_ids=extra_ids, extra_special_tokens=extra, **kwargs)

    def get_sentinel_tokens(self) -> list[str]:
        return [f"<extra_id_{index}>" for index in range(self.extra_ids)]

    def build_inputs_with_special_tokens(self, token_ids_0: list[int], token_ids_1: list[int] | None = None):
        """``A </s>`` or ``A </s> B </s>``."""
        eos = [self.eos_token_id]
        if token_ids_1 is None:
            return token_ids_0 + eos
        return token_ids_0 + eos + token_ids_1 + eos

    def get_special_tokens_mask(self, token_ids_0, token_ids_1=None, already_has_special_tokens=False):
        if already_has_special_tokens:
            return super().get_special_tokens_mask(token_ids_0, token_ids_1, already_has_special_tokens=True)
        if token_ids_1 is None:
            return [0] * len(token_ids_0) + [1]
        return [0] * len(token_ids_0) + [1] + [0] * len(token_ids_1) + [1]

    def create_token_type_ids_from_sequences(self, token_ids_0, token_ids_1=None):
        """T5 has no token types: all zeros."""
        return [0] * len(self.build_inputs_with_special_tokens(token_ids_0, token_ids_1))


def _is_cjk(char: str) -> bool:
    """A CJK ideograph (the characters BERT's ``handle_chinese_chars`` splits one by one)."""
    code = ord(char)
    return (0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0x20000 <= code <= 0x2A6DF
            or 0x2A700 <= code <= 0x2B73F or 0x2B740 <= code <= 0x2B81F or 0x2B820 <= code <= 0x2CEAF
            or 0xF900 <= code <= 0xFAFF or 0x2F800 <= code <= 0x2FA1F)


class _JiebaWords:
    """A ``tokenizers`` pre-tokenizer step: cut the text into jieba words; keep words in the vocabulary whole and
    split the others into single CJK characters (runs of other characters stay together for BERT's splitter)."""

    def __init__(self, vocab: set[str], cut):
        self.vocab = vocab
        self.cut = cut

    def _split(self, index: int, normalized: NormalizedString) -> list[NormalizedString]:
        pieces, start = [], 0
        for word in self.cut(str(normalized)):
            end = start + len(word)
            if word in self.vocab:
                pieces.append(normalized[start:end])
            else:
                run = start
                for position in range(start, end):
                    if _is_cjk(word[position - start]):
                        if run < position:
                            pieces.append(normalized[run:position])
                        pieces.append(normalized[position:position + 1])
                        run = position + 1
                if run < end:
                    pieces.append(normalized[run:end])
            start = end
        return pieces

    def pre_tokenize(self, pretok: PreTokenizedString) -> None:
        pretok.split(self._split)


def _load_jieba():
    try:
        import jieba
    except ImportError as error:
        raise ImportError("T5ChineseTokenizer(use_jieba=True) needs jieba: pip install jieba") from error
    jieba.setLogLevel(60)  # no "Building prefix dict" chatter
    return jieba


class T5ChineseTokenizer(FlagAIBertTokenizer):
    r"""
    FlagAI's Chinese T5 (T5-PEGASUS) tokenizer: BERT WordPiece over a ``vocab.txt`` (see ``FlagAIBertTokenizer`` for
    every other argument), optionally with jieba word segmentation first.

    Args:
        use_jieba (`bool`, defaults to `False`): cut the text into words with jieba; vocabulary words stay whole.
    """

    model_input_names = ["input_ids", "attention_mask"]  # T5 has no segment embeddings: `generate(**tokenizer(...))`

    def __init__(self, vocab_file: str | None = None, use_jieba: bool = False, **kwargs):
        super().__init__(vocab_file=vocab_file, use_jieba=use_jieba, **kwargs)
        self.use_jieba = use_jieba
        self._plain_normalizer = self._tokenizer.normalizer
        self._plain_pre_tokenizer = self._tokenizer.pre_tokenizer
        if use_jieba:
            jieba = _load_jieba()
            vocab = set(self._tokenizer.get_vocab(with_added_tokens=False))
            # CJK characters must reach jieba unsplit; the jieba step splits the words that are not in the vocabulary.
            self._tokenizer.normalizer = normalizers.BertNormalizer(
                clean_text=True, handle_chinese_chars=False, strip_accents=self.strip_accents,
                lowercase=self.do_lower_case)
            self._tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
                pre_tokenizers.PreTokenizer.custom(_JiebaWords(vocab, lambda text: jieba.cut(text, HMM=False))),
                pre_tokenizers.BertPreTokenizer(),
            ])

    def _save_pretrained(self, save_directory, file_names, legacy_format=None, filename_prefix=None):
        # The jieba step is Python code that tokenizer.json cannot hold: save the plain pipeline, and ``use_jieba`` in
        # tokenizer_config.json brings the step back on load.
        jieba_normalizer, jieba_pre_tokenizer = self._tokenizer.normalizer, self._tokenizer.pre_tokenizer
        self._tokenizer.normalizer, self._tokenizer.pre_tokenizer = self._plain_normalizer, self._plain_pre_tokenizer
        try:
            return super()._save_pretrained(save_directory, file_names, legacy_format, filename_prefix)
        finally:
            self._tokenizer.normalizer, self._tokenizer.pre_tokenizer = jieba_normalizer, jieba_pre_tokenizer


__all__ = ["T5SentencePieceTokenizer", "T5ChineseTokenizer"]
