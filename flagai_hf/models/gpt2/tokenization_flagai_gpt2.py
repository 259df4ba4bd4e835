"""Tokenizers of the GPT2 family.

English GPT-2 (GPT2-base-en, GPT2-xlarge-en) uses OpenAI's byte-level BPE (``vocab.json`` + ``merges.txt``, 50257
tokens). ``FlagAIGPT2Tokenizer`` is transformers' fast ``GPT2Tokenizer`` with two changes that matter to FlagAI users:
its constructor really reads ``vocab_file`` / ``merges_file`` (transformers 5's ``GPT2Tokenizer(vocab_file=...)``
silently builds an empty vocabulary) and refuses to run without a vocabulary; ``save_pretrained`` also writes
``vocab.json`` and ``merges.txt``, the files FlagAI's folders carry. Everything else — ids, offsets, decoding,
``from_pretrained`` — is transformers' own. It imports only transformers, so an exported remote-code folder can carry
this file as it is.

Chinese GPT2-base-ch uses the BERT WordPiece ``vocab.txt``: use ``FlagAIBertTokenizer``; a folder whose
``tokenizer_config.json`` names it loads through ``AutoTokenizer`` next to a ``flagai_gpt2`` config.
"""

import json
import os

from transformers import GPT2Tokenizer

from ...modules.flagai_api import FlagAITokenizerMixin


def _read_vocab(vocab: str | os.PathLike | dict) -> dict[str, int]:
    if isinstance(vocab, dict):
        return vocab
    if not os.path.isfile(vocab):
        raise FileNotFoundError(f"GPT-2 vocabulary file {vocab} does not exist (expected a vocab.json)")
    with open(vocab, encoding="utf-8") as handle:
        return json.load(handle)


def _read_merges(merges: str | os.PathLike | list) -> list[tuple[str, str]]:
    """Merges as ``(left, right)`` pairs, from a ``merges.txt`` (``#version`` header skipped) or a list of pairs or
    ``"left right"`` strings."""
    if not isinstance(merges, list):
        if not os.path.isfile(merges):
            raise FileNotFoundError(f"GPT-2 merges file {merges} does not exist (expected a merges.txt)")
        with open(merges, encoding="utf-8") as handle:
            merges = [line for line in handle.read().split("\n") if line and not line.startswith("#version")]
    return [tuple(merge.split(" ")) if isinstance(merge, str) else tuple(merge) for merge in merges]


class FlagAIGPT2Tokenizer(FlagAITokenizerMixin, GPT2Tokenizer):
    r"""
    GPT-2 byte-level BPE tokenizer (transformers' ``GPT2Tokenizer``) that loads its files by name.

    Args:
        vocab_file (`str`, *optional*): path to a ``vocab.json``.
        merges_file (`str`, *optional*): path to a ``merges.txt``.
        vocab (`str` or `dict[str, int]`, *optional*): a vocabulary dict or the path to a ``vocab.json``; takes
            precedence over ``vocab_file``.
        merges (`str` or `list`, *optional*): the merges or the path to a ``merges.txt``; takes precedence over
            ``merges_file``.
        **kwargs: as ``GPT2Tokenizer`` (``add_prefix_space``, ``pad_token``, ``bos_token``, ...).
    """

    def __init__(self, vocab_file: str | None = None, merges_file: str | None = None,
                 vocab: str | dict[str, int] | None = None, merges: str | list | None = None, **kwargs):
        vocab = vocab if vocab is not None else vocab_file
        merges = merges if merges is not None else merges_file
        if vocab is None or merges is None:
            raise ValueError(
                f"{type(self).__name__} needs a vocabulary and merges: pass vocab_file='vocab.json' and "
                "merges_file='merges.txt' (or vocab= / merges=), or use from_pretrained(folder_with_those_files)"
            )
        super().__init__(vocab=_read_vocab(vocab), merges=_read_merges(merges), **kwargs)

    def _save_pretrained(self, save_directory, file_names, legacy_format=None, filename_prefix=None):
        # The base class writes only tokenizer.json; FlagAI folders (and this constructor) use vocab.json + merges.txt.
        file_names = super()._save_pretrained(save_directory, file_names, legacy_format, filename_prefix)
        return file_names + self.save_vocabulary(save_directory, filename_prefix=filename_prefix)

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str, ...]:
        """Write the BPE model's ``vocab.json`` and ``merges.txt`` (``prefix-vocab.json`` ... with a prefix)."""
        if not os.path.isdir(save_directory):
            raise ValueError(f"Vocabulary path ({save_directory}) should be a directory")
        return tuple(self._tokenizer.model.save(str(save_directory), prefix=filename_prefix))
