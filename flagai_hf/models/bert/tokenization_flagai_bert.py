"""WordPiece tokenizer for the FlagAI BERT family (BERT, RoBERTa-wwm, ...).

`FlagAIBertTokenizer` is a fast tokenizer (a `TokenizersBackend`) that builds its own
`tokenizers.Tokenizer` from a BERT `vocab.txt`:

    BertNormalizer(lowercase, strip_accents, handle_chinese_chars)
    -> BertPreTokenizer -> WordPiece("[UNK]", "##", max 100 chars per word)
    -> "[CLS] $A [SEP]" / "[CLS] $A [SEP] $B:1 [SEP]:1"  (WordPiece decoder)

It gives the same ids, token_type_ids, offsets and decoded text as transformers' `BertTokenizer`,
with three differences that matter to FlagAI users:

* `FlagAIBertTokenizer(vocab_file="vocab.txt")` really loads the file (transformers 5's
  `BertTokenizer(vocab_file=...)` silently builds a 5-token vocabulary); with no vocabulary at all
  it raises a `ValueError` instead of inventing one;
* a vocabulary that lacks one of the special tokens is an error naming that token (instead of the
  token being appended silently as an added token);
* `save_pretrained` writes `vocab.txt` next to `tokenizer.json` and `tokenizer_config.json`.

`from_pretrained` accepts a folder holding only `vocab.txt` as well as a folder written by
`save_pretrained`. Offsets (`return_offsets_mapping=True`) and `word_ids()` work, as the
token-classification pipeline needs.
"""

from __future__ import annotations

import copy
import os

from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece
from transformers.tokenization_utils_tokenizers import TokenizersBackend
from transformers.utils import logging

from ...modules.flagai_api import FlagAITokenizerMixin

logger = logging.get_logger(__name__)

VOCAB_FILES_NAMES = {"vocab_file": "vocab.txt"}


def load_vocab(vocab_file: str | os.PathLike) -> dict[str, int]:
    """Read a BERT `vocab.txt` (one token per line, the line number is the id) into a dict."""
    vocab: dict[str, int] = {}
    with open(vocab_file, encoding="utf-8") as reader:
        # readlines() splits on "\n" only (text mode turns "\r\n" into "\n"), never on "\u2028",
        # which bert-base-chinese has as a token.
        for index, line in enumerate(reader.readlines()):
            vocab[line.rstrip("\n")] = index
    return vocab


class FlagAIBertTokenizer(FlagAITokenizerMixin, TokenizersBackend):
    r"""
    Fast BERT WordPiece tokenizer built from a `vocab.txt`.

    Args:
        vocab_file (`str`, *optional*):
            Path to a `vocab.txt`.
        vocab (`str` or `dict[str, int]`, *optional*):
            A vocabulary dict (token -> id) or the path to a `vocab.txt`. Takes precedence over `vocab_file`.
        do_lower_case (`bool`, defaults to `True`):
            Lowercase the input (use `False` for cased vocabularies).
        tokenize_chinese_chars (`bool`, defaults to `True`):
            Put spaces around every CJK character, so each one becomes its own word.
        strip_accents (`bool`, *optional*):
            Strip accents. `None` means: follow `do_lower_case`, as the original BERT does.
        unk_token, sep_token, pad_token, cls_token, mask_token (`str`):
            The special tokens; each one must be in the vocabulary (`None` leaves that token out).
        tokenizer_object (`tokenizers.Tokenizer`, *optional*) / tokenizer_file (`str`, *optional*):
            A complete `tokenizers` backend (object or `tokenizer.json`) to use as it is instead of building one.
    """

    vocab_files_names = VOCAB_FILES_NAMES
    model_input_names = ["input_ids", "token_type_ids", "attention_mask"]
    model = WordPiece

    def __init__(
        self,
        vocab_file: str | None = None,
        vocab: str | dict[str, int] | None = None,
        do_lower_case: bool = True,
        tokenize_chinese_chars: bool = True,
        strip_accents: bool | None = None,
        unk_token: str = "[UNK]",
        sep_token: str = "[SEP]",
        pad_token: str = "[PAD]",
        cls_token: str = "[CLS]",
        mask_token: str = "[MASK]",
        **kwargs,
    ):
        special_tokens = {
            "unk_token": unk_token,
            "sep_token": sep_token,
            "pad_token": pad_token,
            "cls_token": cls_token,
            "mask_token": mask_token,
        }
        tokenizer_object = kwargs.pop("tokenizer_object", None)
        tokenizer_file = kwargs.pop("tokenizer_file", None)
        if tokenizer_object is None and tokenizer_file is not None and os.path.isfile(tokenizer_file):
            # A full serialization (e.g. loaded with trust_remote_code=True): use it as it is.
            backend = Tokenizer.from_file(tokenizer_file)
        elif tokenizer_object is not None:
            backend = copy.deepcopy(tokenizer_object)
        else:
            backend = None

        if backend is not None:
            source = "the given tokenizers backend"
            known = backend.get_vocab(with_added_tokens=True)
        else:
            if vocab is None:
                vocab = vocab_file
            if vocab is None:
                raise ValueError(
                    f"{type(self).__name__} needs a vocabulary: pass `vocab_file='path/to/vocab.txt'`, `vocab=` "
                    "(a path or a dict token -> id), or use `from_pretrained(folder_with_vocab.txt)`."
                )
            if isinstance(vocab, (str, os.PathLike)):
                if not os.path.isfile(vocab):
                    raise ValueError(f"Can't find a vocabulary file at path '{vocab}'.")
                source = f"the vocabulary file '{vocab}'"
                vocab_file = str(vocab)
                vocab = load_vocab(vocab)
            else:
                source = "the vocabulary"
                vocab = dict(vocab)
            known = vocab

        for name, token in special_tokens.items():
            if token is not None and str(token) not in known:
                raise ValueError(f"The {name} {str(token)!r} is not in {source}; add it there or pass `{name}=`.")

        if backend is None:
            backend = Tokenizer(WordPiece(vocab, unk_token=str(unk_token or "[UNK]"), max_input_chars_per_word=100))
            backend.normalizer = normalizers.BertNormalizer(
                clean_text=True,
                handle_chinese_chars=tokenize_chinese_chars,
                strip_accents=strip_accents,
                lowercase=do_lower_case,
            )
            backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
            backend.decoder = decoders.WordPiece(prefix="##")
        # Set the BERT template before the base class runs, so that it keeps it instead of writing its own.
        backend.post_processor = self._bert_template(backend, cls_token, sep_token)
        # The base class would otherwise install a post-processor read back from tokenizer.json.
        kwargs.pop("post_processor", None)

        self.do_lower_case = do_lower_case
        self.tokenize_chinese_chars = tokenize_chinese_chars
        self.strip_accents = strip_accents
        self._tokenizer = backend
        super().__init__(
            do_lower_case=do_lower_case,
            tokenize_chinese_chars=tokenize_chinese_chars,
            strip_accents=strip_accents,
            **special_tokens,
            **kwargs,
        )
        self.vocab_file = vocab_file if vocab_file is not None and os.path.isfile(vocab_file) else None
        self.update_post_processor()

    @staticmethod
    def _bert_template(backend: Tokenizer, cls_token, sep_token):
        if cls_token is None or sep_token is None:
            return None
        cls, sep = str(cls_token), str(sep_token)
        return processors.TemplateProcessing(
            single=f"{cls}:0 $A:0 {sep}:0",
            pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
            special_tokens=[(cls, backend.token_to_id(cls)), (sep, backend.token_to_id(sep))],
        )

    def update_post_processor(self):
        """(Re)install the `[CLS] $A [SEP]` / `[CLS] $A [SEP] $B:1 [SEP]:1` post-processor."""
        self._tokenizer.post_processor = self._bert_template(self._tokenizer, self.cls_token, self.sep_token)

    def _save_pretrained(self, save_directory, file_names, legacy_format=None, filename_prefix=None):
        # The base class writes only tokenizer.json; FlagAI checkpoints also carry vocab.txt.
        file_names = super()._save_pretrained(save_directory, file_names, legacy_format, filename_prefix)
        return file_names + self.save_vocabulary(save_directory, filename_prefix=filename_prefix)

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str]:
        """Write the WordPiece vocabulary (without added tokens) as `vocab.txt`, one token per line in id order."""
        if not os.path.isdir(save_directory):
            raise ValueError(f"Vocabulary path ({save_directory}) should be a directory")
        path = os.path.join(save_directory, (filename_prefix + "-" if filename_prefix else "") + "vocab.txt")
        vocab = self._tokenizer.get_vocab(with_added_tokens=False)  # the WordPiece model's own vocabulary
        by_id = sorted(vocab.items(), key=lambda kv: kv[1])
        if [i for _, i in by_id] != list(range(len(by_id))):
            logger.warning(f"Saving vocabulary to {path}: the ids are not consecutive, line numbers won't match them.")
        with open(path, "w", encoding="utf-8", newline="\n") as writer:
            writer.writelines(token + "\n" for token, _ in by_id)
        return (path,)


__all__ = ["FlagAIBertTokenizer", "load_vocab"]
