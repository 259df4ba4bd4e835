"""Tokenizers for GLM (2021, blank infilling) and the inputs GLM's heads take.

* `GLMChineseTokenizer` — the sentencepiece model ``cog-pretrain.model`` (50000 pieces, ``<unk>`` 0) of GLM-large-ch /
  GLM-10b-ch plus the command tokens in the Hub layout::

      <|endoftext|> 50000 (eos = pad)   [SEP] 50001   [CLS] 50002   [MASK] 50003   [UNUSED1] 50004   [UNUSED2] 50005
      <|startofpiece|> 50006 (sop)   <|endofpiece|> 50007 (eop, the generation eos)   [sMASK] 50008   [gMASK] 50009

  Ordinary text gets exactly ``SentencePieceProcessor.encode(text)``; command tokens written in the text
  (``"清华大学位于[MASK]。"``) become their ids and split the text around them. Unlike the Hub tokenizer, no ``[UNK]``
  is appended at 50010 (``len(tokenizer) == 50010``; unknown text is sentencepiece's ``<unk>`` 0), and ``[gMASK]`` is
  never the eop id (FlagAI's ``fix_command_token=False`` layout). A single text is ``[CLS] ids <|endoftext|>``, a pair ``[CLS] a [SEP] b <|endoftext|>`` (type ids 0).
* `GLMEnglishTokenizer` — bert-base-uncased WordPiece (GLM-large-en, glm-515m) plus ``<|startofpiece|>`` 30522,
  ``<|endofpiece|>`` 30523, ``[gMASK]`` 30524, ``[sMASK]`` 30525; pad = eos = ``[PAD]`` 0, ``[CLS]`` 101, ``[SEP]``
  102, ``[MASK]`` 103. A single text is ``[CLS] ids [SEP]`` (as the Hub's ``GLMBertTokenizer``). It is a fast
  tokenizer (`FlagAIBertTokenizer`).

Both share `GLMTokenizerMixin`:

* ``build_inputs_for_generation(model_input, max_gen_length=512, targets=None, padding=False)`` — the Hub's layout:
  the context (``[CLS] ... [MASK] ... <|endoftext|>``, right-padded) is read bidirectionally, the generated / target
  span follows it as ``[sop] t1 t2 ...`` at position ``mask_pos`` with block positions ``1..G``, causal among itself.
  Without targets it returns ``input_ids`` (context + ``[sop]``), ``position_ids`` (B, 2, s + G) and
  ``generation_attention_mask`` (B, 1, s + G, s + G) for ``GLMForConditionalGeneration.generate(**inputs)``; with
  targets ``input_ids``, ``position_ids``, ``attention_mask`` (B, 1, s + G, s + G) and ``labels`` (next-token
  aligned, -100 elsewhere) for the loss.
* ``tokenizer(text_target=...)`` (how standard seq2seq scripts build ``labels``) — a target is ``ids <|endofpiece|>``,
  the span GLM generates, with no ``[CLS]`` / end token; `GLMForConditionalGeneration` takes such labels beside a
  plain source batch and starts the span with ``[sop]`` itself.
* ``build_inputs_for_multiple_choice(model_input, choices)`` — every choice appended as ``[sop] + choice[:-1]`` at
  ``mask_pos`` / block positions ``1..len(choice)``, causal within the choice and blind to the other choices, plus
  ``choice_ids`` / ``choice_indices`` (B, C, L) padded with -100, as `GLMForMultipleChoice` takes them.

`GLMSeq2SeqCollator` turns ``{"source": ..., "target": ...}`` examples into training batches for ``Trainer`` /
``Seq2SeqTrainer``.

The vocabulary files ship in the PyPI package ``swissarmytransformer==0.2.12`` (install it with ``--no-deps``; it is
only located, never imported); both tokenizers find them there when no file is given.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping, Sequence

import sentencepiece as spm
import torch
from tokenizers import processors
from transformers.tokenization_utils_base import AddedToken, BatchEncoding
from transformers.tokenization_utils_sentencepiece import SentencePieceBackend
from transformers.utils import logging

from ...modules.flagai_api import FlagAITokenizerMixin
from ..bert.tokenization_flagai_bert import FlagAIBertTokenizer


logger = logging.get_logger(__name__)

SOP_TOKEN = "<|startofpiece|>"
EOP_TOKEN = "<|endofpiece|>"
MASK_TOKEN = "[MASK]"
SMASK_TOKEN = "[sMASK]"
GMASK_TOKEN = "[gMASK]"

# The Chinese command tokens, in id order from 50000 (the Hub's added_tokens.json, THUDM `--fix-command-token`).
CHINESE_COMMAND_TOKENS = ("<|endoftext|>", "[SEP]", "[CLS]", MASK_TOKEN, "[UNUSED1]", "[UNUSED2]", SOP_TOKEN,
                          EOP_TOKEN, SMASK_TOKEN, GMASK_TOKEN)
# The tokens GLM adds to the English WordPiece vocabulary, in id order from len(vocab) (30522 for bert-base-uncased).
ENGLISH_GLM_TOKENS = (SOP_TOKEN, EOP_TOKEN, GMASK_TOKEN, SMASK_TOKEN)

SAT_PACKAGE = "SwissArmyTransformer"
SAT_PIP = "swissarmytransformer==0.2.12"


def swissarmytransformer_asset(*parts: str) -> str | None:
    """Path of a file under SwissArmyTransformer's ``tokenization/embed_assets`` (``None`` if the package is absent).

    The package is located with ``importlib.util.find_spec``, never imported (it needs deepspeed)."""
    spec = importlib.util.find_spec(SAT_PACKAGE)
    if spec is None or spec.origin is None:
        return None
    path = os.path.join(os.path.dirname(spec.origin), "tokenization", "embed_assets", *parts)
    return path if os.path.isfile(path) else None


def _default_file(parts: tuple[str, ...], what: str, argument: str) -> str:
    path = swissarmytransformer_asset(*parts)
    if path is None:
        raise ValueError(f"No {what} given and none found: pass `{argument}=...`, use `from_pretrained(folder)`, "
                         f"or install the file's package with `pip install --no-deps {SAT_PIP}`.")
    return path


# ---------------------------------------------------------------------------------------------------------------------
# Input construction shared by the Chinese and English tokenizers
# ---------------------------------------------------------------------------------------------------------------------


class GLMTokenizerMixin:
    """GLM's special ids and the model inputs for blank-filling generation, seq2seq training and multiple choice."""

    @property
    def sop_token_id(self) -> int:
        """``<|startofpiece|>``: starts every generated / target span."""
        return self.convert_tokens_to_ids(SOP_TOKEN)

    @property
    def eop_token_id(self) -> int:
        """``<|endofpiece|>``: ends a span (pass it as ``eos_token_id`` to ``generate``)."""
        return self.convert_tokens_to_ids(EOP_TOKEN)

    @property
    def gmask_token_id(self) -> int:
        """``[gMASK]``: generate a long span (the rest of a document)."""
        return self.convert_tokens_to_ids(GMASK_TOKEN)

    @property
    def smask_token_id(self) -> int:
        """``[sMASK]``: generate a sentence."""
        return self.convert_tokens_to_ids(SMASK_TOKEN)

    @property
    def mask_token_ids(self) -> list[int]:
        """The ids of ``[MASK]``, ``[sMASK]`` and ``[gMASK]``: the tokens that mark the blank to fill."""
        return [self.mask_token_id, self.smask_token_id, self.gmask_token_id]

    # -- targets: tokenizer(text_target=...) -------------------------------------------------------------------------

    _target_mode = False

    def _switch_to_target_mode(self):
        """``tokenizer(text_target=...)``, as standard seq2seq scripts build ``labels``: a target is ``ids
        <|endofpiece|>`` (no ``[CLS]``, no end token): the span GLM generates, which
        ``GLMForConditionalGeneration`` starts with ``[sop]`` itself."""
        self._target_mode = True

    def _switch_to_input_mode(self):
        self._target_mode = False

    def _target_with_special_tokens(self, token_ids_0: list[int], token_ids_1: list[int] | None) -> list[int]:
        if token_ids_1 is not None:
            raise ValueError("A GLM target is one span: text_pair_target is not supported")
        return list(token_ids_0) + [self.eop_token_id]

    # -- helpers ---------------------------------------------------------------------------------------------------

    def _context_tensors(self, model_input) -> tuple[torch.Tensor, torch.Tensor]:
        """``input_ids`` and ``attention_mask`` of a (padded) tokenizer output as 2-D LongTensors."""
        if not isinstance(model_input, Mapping) or "input_ids" not in model_input:
            raise ValueError("model_input must be the tokenizer's output (a dict with `input_ids`, e.g. "
                             "tokenizer(texts, return_tensors='pt', padding=True))")
        try:
            input_ids = torch.as_tensor(model_input["input_ids"])
        except (ValueError, TypeError) as error:
            raise ValueError("model_input['input_ids'] must be a rectangular batch: call the tokenizer with "
                             "padding=True (and return_tensors='pt')") from error
        if input_ids.dim() == 1:
            input_ids = input_ids[None]
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, length); got shape {tuple(input_ids.shape)}")
        attention_mask = model_input.get("attention_mask")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        else:
            attention_mask = torch.as_tensor(attention_mask, device=input_ids.device).long().reshape(input_ids.shape)
        return input_ids.long(), attention_mask

    def _mask_positions(self, input_ids: torch.Tensor) -> list[int]:
        """Per sample, the smallest index of any mask token (``[MASK]``, ``[sMASK]``, ``[gMASK]``)."""
        is_mask = torch.isin(input_ids, torch.tensor(self.mask_token_ids, device=input_ids.device))
        positions = []
        for i, row in enumerate(is_mask):
            found = row.nonzero(as_tuple=True)[0]
            if found.numel() == 0:
                names = ", ".join(f"{tok} ({idx})" for tok, idx in zip((MASK_TOKEN, SMASK_TOKEN, GMASK_TOKEN),
                                                                        self.mask_token_ids))
                raise ValueError(f"Sample {i} has no mask token; GLM fills the blank marked by one of {names}. "
                                 f"Write one in the text, e.g. append ' {GMASK_TOKEN}' for free generation.")
            positions.append(int(found[0]))
        return positions

    def _ids_of(self, texts: Sequence[str | Sequence[int]]) -> list[list[int]]:
        """Token ids (no special tokens added) of each text; lists of ids are taken as they are."""
        ids = []
        for text in texts:
            if isinstance(text, str):
                ids.append(list(self(text, add_special_tokens=False)["input_ids"]))
            else:
                ids.append([int(i) for i in text])
        return ids

    # -- generation / seq2seq ----------------------------------------------------------------------------------------

    def build_inputs_for_generation(self, model_input, max_gen_length: int = 512, targets=None,
                                    padding: bool = False) -> BatchEncoding:
        """The inputs of ``GLMForConditionalGeneration`` for filling the first mask of each sample (GLM spec §8).

        Args:
            model_input: ``tokenizer(texts, return_tensors="pt"[, padding=True])`` — each text holds a mask token;
                the context length ``s`` is its (padded) length. Right padding is expected.
            max_gen_length (`int`): ``G``, the number of span positions laid out (generation) or the target length
                limit (training; targets are cut to ``G`` tokens including the eop).
            targets (`str`, `list[str]` or `list[list[int]]`, *optional*): the spans to learn (text, or ids without
                special tokens); the eop token is appended.
            padding (`bool`): with targets, lay out all ``G`` positions; otherwise ``G`` shrinks to the longest
                target + eop of the batch.

        Returns:
            Without targets: ``input_ids`` (B, s + 1) = context + ``[sop]``, ``position_ids`` (B, 2, s + G) and
            ``generation_attention_mask`` (B, 1, s + G, s + G), for ``model.generate(**inputs,
            eos_token_id=tokenizer.eop_token_id, ...)``. With targets: ``input_ids`` (B, s + G) = context + ``[sop] +
            target[:-1]`` (+ pad), ``position_ids`` (B, 2, s + G), ``attention_mask`` (B, 1, s + G, s + G) and
            ``labels`` (B, s + G): the target + eop at the positions that predict them (no shift), -100 elsewhere.
            Positions are ``0..s-1`` then ``mask_pos`` repeated; block positions ``0`` then ``1..G``. Every query sees
            the non-padding context; span tokens also see the earlier span tokens.

        Raises:
            ValueError: a sample without ``[MASK]``, ``[sMASK]`` or ``[gMASK]``.
        """
        input_ids, context_mask = self._context_tensors(model_input)
        batch_size, seq_length = input_ids.shape
        device = input_ids.device
        mask_positions = self._mask_positions(input_ids)

        labels = target_ids = None
        if targets is not None:
            if isinstance(targets, str) or (isinstance(targets, Sequence) and targets
                                             and isinstance(targets[0], int)):
                targets = [targets]
            target_lists = self._ids_of(targets)
            if len(target_lists) != batch_size:
                raise ValueError(f"Got {len(target_lists)} targets for {batch_size} inputs")
            target_lists = [(t + [self.eop_token_id])[:max_gen_length] for t in target_lists]
            if not padding:
                max_gen_length = max(map(len, target_lists))
            spans = [[self.sop_token_id] + t for t in target_lists]
            labels = [t + [-100] * (max_gen_length - len(t)) for t in target_lists]
            spans = [s + [self.pad_token_id] * (max_gen_length + 1 - len(s)) for s in spans]
            target_ids = torch.tensor(spans, dtype=torch.long, device=device)[:, :-1]
            labels = torch.cat([torch.full((batch_size, seq_length), -100, dtype=torch.long, device=device),
                                torch.tensor(labels, dtype=torch.long, device=device)], dim=1)

        gen = max_gen_length
        positions = torch.arange(seq_length + gen, device=device).repeat(batch_size, 1)
        positions[:, seq_length:] = torch.tensor(mask_positions, device=device)[:, None]
        block_positions = torch.zeros_like(positions)
        block_positions[:, seq_length:] = torch.arange(1, gen + 1, device=device)
        position_ids = torch.stack([positions, block_positions], dim=1)  # (B, 2, s + G)

        context_keys = context_mask[:, None, :].expand(-1, seq_length + gen, -1)  # every query sees the context
        span_keys = torch.cat([torch.zeros(seq_length, gen, dtype=torch.long, device=device),
                               torch.ones(gen, gen, dtype=torch.long, device=device).tril()], dim=0)
        attention_mask = torch.cat([context_keys, span_keys.expand(batch_size, -1, -1)], dim=2)[:, None]

        if target_ids is None:
            sop = torch.full((batch_size, 1), self.sop_token_id, dtype=torch.long, device=device)
            return BatchEncoding({"input_ids": torch.cat([input_ids, sop], dim=1), "position_ids": position_ids,
                                  "generation_attention_mask": attention_mask})
        return BatchEncoding({"input_ids": torch.cat([input_ids, target_ids], dim=1), "position_ids": position_ids,
                              "attention_mask": attention_mask, "labels": labels})

    # -- multiple choice -----------------------------------------------------------------------------------------------

    def build_inputs_for_multiple_choice(self, model_input, choices) -> BatchEncoding:
        """The inputs of ``GLMForMultipleChoice``: every choice scored as the span that fills the first mask.

        Args:
            model_input: ``tokenizer(texts, return_tensors="pt", padding=True)``; each text holds a mask token.
            choices: one list of choices per sample (``str`` or lists of ids); for a single sample a flat list of
                strings is accepted. Every sample must have the same number of choices.

        Returns:
            ``input_ids`` (B, T) = context + for each choice ``[sop] + choice[:-1]`` (then pad), ``position_ids``
            (B, 2, T) (``mask_pos`` and block positions ``1..len(choice)`` for a choice), ``attention_mask``
            (B, 1, T, T) (context bidirectional; each choice causal, sees the non-padding context and not the other
            choices), ``choice_ids`` and ``choice_indices`` (B, C, L), padded with -100: each choice's tokens and the
            positions whose logits predict them. ``GLMForMultipleChoice`` sums their log-probabilities.
        """
        input_ids, context_mask = self._context_tensors(model_input)
        batch_size, seq_length = input_ids.shape
        mask_positions = self._mask_positions(input_ids)
        if batch_size == 1 and choices and isinstance(choices[0], str):
            choices = [choices]
        if len(choices) != batch_size:
            raise ValueError(f"Got choices for {len(choices)} samples but {batch_size} inputs")
        counts = {len(c) for c in choices}
        if len(counts) != 1 or 0 in counts:
            raise ValueError(f"Every sample needs the same, non-zero number of choices; got {[len(c) for c in choices]}"
                             " (a padded choice would score 0, the highest possible log-probability)")

        rows = []
        for i in range(batch_size):
            choice_lists = self._ids_of(choices[i])
            tokens, positions, blocks = [], [], []
            choice_ids, choice_indices, blocks_of_mask = [], [], []
            start = seq_length
            for k, choice in enumerate(choice_lists):
                if not choice:
                    raise ValueError(f"Choice {k} of sample {i} ({choices[i][k]!r}) has no tokens")
                n = len(choice)
                tokens += [self.sop_token_id] + choice[:-1]
                positions += [mask_positions[i]] * n
                blocks += list(range(1, n + 1))
                choice_ids.append(choice)
                choice_indices.append(list(range(start, start + n)))
                blocks_of_mask.append(n)
                start += n
            rows.append((tokens, positions, blocks, choice_ids, choice_indices, blocks_of_mask))

        total = seq_length + max(len(r[0]) for r in rows)
        num_choices = counts.pop()
        longest = max(len(ids) for r in rows for ids in r[3])
        device = input_ids.device
        out_ids = torch.full((batch_size, total), self.pad_token_id, dtype=torch.long, device=device)
        out_pos = torch.zeros(batch_size, 2, total, dtype=torch.long, device=device)
        out_mask = torch.zeros(batch_size, total, total, dtype=torch.long, device=device)
        out_choice_ids = torch.full((batch_size, num_choices, longest), -100, dtype=torch.long, device=device)
        out_choice_indices = torch.full_like(out_choice_ids, -100)
        for i, (tokens, positions, blocks, choice_ids, choice_indices, lengths) in enumerate(rows):
            end = seq_length + len(tokens)
            out_ids[i, :seq_length] = input_ids[i]
            out_ids[i, seq_length:end] = torch.tensor(tokens, dtype=torch.long)
            out_pos[i, 0, :seq_length] = torch.arange(seq_length)
            out_pos[i, 0, seq_length:end] = torch.tensor(positions, dtype=torch.long)
            out_pos[i, 1, seq_length:end] = torch.tensor(blocks, dtype=torch.long)
            out_pos[i, :, end:] = out_pos[i, :, end - 1:end]  # padding repeats the last position
            out_mask[i, :, :seq_length] = context_mask[i]  # every query (padding too) sees the real context
            offset = seq_length
            for n in lengths:
                out_mask[i, offset:offset + n, offset:offset + n] = torch.ones(n, n, dtype=torch.long).tril()
                offset += n
            for k, (ids, indices) in enumerate(zip(choice_ids, choice_indices)):
                out_choice_ids[i, k, :len(ids)] = torch.tensor(ids, dtype=torch.long)
                out_choice_indices[i, k, :len(indices)] = torch.tensor(indices, dtype=torch.long)
        return BatchEncoding({"input_ids": out_ids, "position_ids": out_pos, "attention_mask": out_mask[:, None],
                              "choice_ids": out_choice_ids, "choice_indices": out_choice_indices})


# ---------------------------------------------------------------------------------------------------------------------
# Chinese: sentencepiece cog-pretrain.model + command tokens
# ---------------------------------------------------------------------------------------------------------------------


class GLMChineseTokenizer(FlagAITokenizerMixin, GLMTokenizerMixin, SentencePieceBackend):
    r"""
    GLM's Chinese tokenizer: sentencepiece ``cog-pretrain.model`` plus the command tokens at 50000..50009.

    A python (slow) tokenizer on transformers' `SentencePieceBackend`: encoding is sentencepiece's own
    ``encode`` (a fast conversion of this BPE model segments differently), and the ``.model`` file is copied by
    ``save_pretrained``. Truncation is on the left by default, as on the Hub.

    Args:
        vocab_file (`str`, *optional*):
            Path to ``cog-pretrain.model``; by default the copy shipped in ``swissarmytransformer==0.2.12``.
        eos_token, pad_token, cls_token, sep_token, mask_token, unk_token (`str`):
            The named special tokens (``<|endoftext|>`` is both eos and pad; unk is sentencepiece's ``<unk>``).
    """

    vocab_files_names = {"vocab_file": "cog-pretrain.model"}
    model_input_names = ["input_ids", "attention_mask"]
    truncation_side = "left"

    def __init__(
        self,
        vocab_file: str | None = None,
        eos_token: str = "<|endoftext|>",
        pad_token: str = "<|endoftext|>",
        cls_token: str = "[CLS]",
        sep_token: str = "[SEP]",
        mask_token: str = MASK_TOKEN,
        unk_token: str = "<unk>",
        **kwargs,
    ):
        if vocab_file is None:
            vocab_file = _default_file(("chinese_sentencepiece", "cog-pretrain.model"), "cog-pretrain.model",
                                       "vocab_file")
        if not os.path.isfile(vocab_file):
            raise ValueError(f"Can't find the sentencepiece model at path '{vocab_file}'.")
        # The command tokens sit at fixed ids right after the pieces (50000..50009 for cog-pretrain.model), whatever
        # order transformers adds tokens in.
        processor = spm.SentencePieceProcessor(model_file=vocab_file)
        pieces = processor.get_piece_size()
        if str(unk_token) == "[UNK]" and processor.piece_to_id("[UNK]") == processor.unk_id():
            # The Hub's tokenizer_config.json says "[UNK]", which is no piece: transformers then appended it at 50010,
            # an id the model never saw. Unknown text is sentencepiece's own unknown piece.
            logger.info("unk_token '[UNK]' is not in the sentencepiece model; using its '<unk>' (id 0) instead")
            unk_token = processor.id_to_piece(processor.unk_id())
        decoder = {pieces + i: AddedToken(token, lstrip=False, rstrip=False, normalized=False, special=True)
                   for i, token in enumerate(CHINESE_COMMAND_TOKENS)}
        for index, token in (kwargs.pop("added_tokens_decoder", None) or {}).items():
            decoder[int(index)] = token if isinstance(token, AddedToken) else AddedToken(str(token), special=True)
        self._added_tokens_decoder = decoder
        named = {eos_token, pad_token, cls_token, sep_token, mask_token}
        kwargs.setdefault("extra_special_tokens", [t for t in CHINESE_COMMAND_TOKENS if t not in named])
        kwargs.setdefault("clean_up_tokenization_spaces", False)
        super().__init__(vocab_file=vocab_file, eos_token=eos_token, pad_token=pad_token, cls_token=cls_token,
                         sep_token=sep_token, mask_token=mask_token, unk_token=unk_token, **kwargs)
        pieces = self.sp_model.get_piece_size()
        for index, token in enumerate(CHINESE_COMMAND_TOKENS):
            if self.convert_tokens_to_ids(token) != pieces + index:
                raise ValueError(f"{token} has id {self.convert_tokens_to_ids(token)}, expected {pieces + index} "
                                 f"(the Hub layout after the {pieces} sentencepiece pieces)")

    def _update_trie(self, unique_no_split_tokens: list[str] | None = None):
        # Split the text on the command (and user-added) tokens only, not on pieces of the sentencepiece vocabulary
        # such as "<unk>": those are left to sentencepiece, so plain text gets exactly its ids.
        pieces = self.sp_model.get_piece_size() if hasattr(self, "sp_model") else 0
        for index, token in self._added_tokens_decoder.items():
            if index >= pieces and token.content not in self.tokens_trie._tokens:
                self.tokens_trie.add(token.content)
        for token in unique_no_split_tokens or []:
            if token not in self.tokens_trie._tokens:
                self.tokens_trie.add(token)

    def tokenize(self, text: str, **kwargs) -> list[str]:
        """Sentencepiece pieces of the text between command tokens, and the command tokens themselves."""
        split_special_tokens = kwargs.pop("split_special_tokens", self.split_special_tokens)
        text, kwargs = self.prepare_for_tokenization(text, **kwargs)
        if split_special_tokens:
            return self._tokenize(text)
        no_split = self.tokens_trie._tokens
        tokens: list[str] = []
        for segment in self.tokens_trie.split(text):
            if segment in no_split:
                tokens.append(segment)
            elif segment:
                tokens.extend(self._tokenize(segment))
        return tokens

    def _tokenize(self, text: str, **kwargs) -> list[str]:
        return self.sp_model.encode(text, out_type=str)

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        """Sentencepiece decoding of each run of pieces; added tokens are written as they are."""
        pieces, out = [], []
        for token in tokens:
            if token in self._added_tokens_encoder and self._added_tokens_encoder[token] >= self.vocab_size:
                if pieces:
                    out.append(self.sp_model.decode_pieces(pieces))
                    pieces = []
                out.append(token)
            else:
                pieces.append(token)
        if pieces:
            out.append(self.sp_model.decode_pieces(pieces))
        return "".join(out)

    def build_inputs_with_special_tokens(self, token_ids_0: list[int],
                                         token_ids_1: list[int] | None = None) -> list[int]:
        """``[CLS] a <|endoftext|>``; a pair is ``[CLS] a [SEP] b <|endoftext|>`` (THUDM's ``build_input_from_ids``
        with ``add_sep``). Type ids are all 0: GLM has no token-type embeddings. A target (``text_target=``) is
        ``a <|endofpiece|>``."""
        if self._target_mode:
            return self._target_with_special_tokens(token_ids_0, token_ids_1)
        out = [self.cls_token_id] + list(token_ids_0)
        if token_ids_1 is not None:
            out += [self.sep_token_id] + list(token_ids_1)
        return out + [self.eos_token_id]

    def get_special_tokens_mask(self, token_ids_0: list[int], token_ids_1: list[int] | None = None,
                                already_has_special_tokens: bool = False) -> list[int]:
        if already_has_special_tokens:
            special = set(self.all_special_ids)
            return [1 if i in special else 0 for i in token_ids_0]
        if self._target_mode:
            return [0] * len(token_ids_0) + [1]
        if token_ids_1 is None:
            return [1] + [0] * len(token_ids_0) + [1]
        return [1] + [0] * len(token_ids_0) + [1] + [0] * len(token_ids_1) + [1]

    def create_token_type_ids_from_sequences(self, token_ids_0: list[int],
                                             token_ids_1: list[int] | None = None) -> list[int]:
        return [0] * len(self.build_inputs_with_special_tokens(token_ids_0, token_ids_1))

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        if self._target_mode:
            return 1
        return 3 if pair else 2


# ---------------------------------------------------------------------------------------------------------------------
# English: bert-base-uncased WordPiece + GLM tokens
# ---------------------------------------------------------------------------------------------------------------------


class GLMEnglishTokenizer(GLMTokenizerMixin, FlagAIBertTokenizer):
    r"""
    GLM's English WordPiece tokenizer (GLM-large-en, glm-515m): bert-base-uncased plus ``<|startofpiece|>``,
    ``<|endofpiece|>``, ``[gMASK]``, ``[sMASK]`` (30522..30525). A fast tokenizer (`FlagAIBertTokenizer`).

    pad = eos = ``[PAD]`` (0), ``[CLS]`` 101, ``[SEP]`` 102, ``[MASK]`` 103; a text is ``[CLS] ids [SEP]``.

    Args:
        vocab_file (`str`, *optional*): a BERT ``vocab.txt``; by default bert-base-uncased as shipped in
            ``swissarmytransformer==0.2.12``.
        Other arguments: as `FlagAIBertTokenizer` (``do_lower_case`` defaults to `True`).
    """

    def __init__(self, vocab_file: str | None = None, vocab=None, eos_token: str = "[PAD]", **kwargs):
        if vocab_file is None and vocab is None and kwargs.get("tokenizer_object") is None \
                and not (kwargs.get("tokenizer_file") and os.path.isfile(kwargs["tokenizer_file"])):
            vocab_file = _default_file(("english_tokenizer", "bert-base-uncased-vocab.txt"), "vocab.txt",
                                       "vocab_file")
        super().__init__(vocab_file=vocab_file, vocab=vocab, eos_token=eos_token, **kwargs)
        vocab_now = self.get_vocab()
        missing = [token for token in ENGLISH_GLM_TOKENS if token not in vocab_now]
        if missing:
            self.add_special_tokens({"extra_special_tokens": missing}, replace_extra_special_tokens=False)
        self.backend_tokenizer.post_processor = self._post_processor()
        ids = [self.convert_tokens_to_ids(token) for token in ENGLISH_GLM_TOKENS]
        if ids != list(range(ids[0], ids[0] + len(ids))):
            logger.warning(f"GLM's tokens {ENGLISH_GLM_TOKENS} have ids {ids}, not consecutive as in the released "
                           "checkpoints")

    def _post_processor(self) -> processors.TemplateProcessing:
        """``[CLS] a [SEP]``; pairs ``[CLS] a [SEP] b [SEP]`` with type ids 0 throughout (GLM has no token-type
        embeddings); a target (``text_target=``) ``a <|endofpiece|>``."""
        if self._target_mode:
            return processors.TemplateProcessing(single=f"$A:0 {EOP_TOKEN}:0",
                                                 special_tokens=[(EOP_TOKEN, self.eop_token_id)])
        cls, sep = str(self.cls_token), str(self.sep_token)
        return processors.TemplateProcessing(
            single=f"{cls}:0 $A:0 {sep}:0", pair=f"{cls}:0 $A:0 {sep}:0 $B:0 {sep}:0",
            special_tokens=[(cls, self.cls_token_id), (sep, self.sep_token_id)])

    def _switch_to_target_mode(self):
        super()._switch_to_target_mode()
        self.backend_tokenizer.post_processor = self._post_processor()

    def _switch_to_input_mode(self):
        if self._target_mode:
            super()._switch_to_input_mode()
            self.backend_tokenizer.post_processor = self._post_processor()

    def build_inputs_with_special_tokens(self, token_ids_0: list[int],
                                         token_ids_1: list[int] | None = None) -> list[int]:
        """``[CLS] a [SEP]`` / ``[CLS] a [SEP] b [SEP]`` (what the tokenizer's post-processor writes); a target
        ``a <|endofpiece|>``."""
        if self._target_mode:
            return self._target_with_special_tokens(token_ids_0, token_ids_1)
        out = [self.cls_token_id] + list(token_ids_0) + [self.sep_token_id]
        if token_ids_1 is not None:
            out += list(token_ids_1) + [self.sep_token_id]
        return out


# ---------------------------------------------------------------------------------------------------------------------
# Data collator for seq2seq fine-tuning
# ---------------------------------------------------------------------------------------------------------------------


class GLMSeq2SeqCollator:
    """Builds GLM seq2seq training batches (blank filling) for ``Trainer`` / ``Seq2SeqTrainer`` / a DataLoader.

    Each example is a mapping with a source and a target (keys ``source_key`` / ``target_key``), each either text or
    a list of token ids without special tokens. The source should hold the blank to fill (``[MASK]``, ``[sMASK]``
    or ``[gMASK]``); without one ``[gMASK]`` is appended (as THUDM does). It is truncated to ``max_source_length``
    tokens including ``[CLS]`` and the end token, dropping text tokens from the ``truncation_side`` (right by default:
    the end of the text) but never a mask token; then ``[CLS] source <|endoftext|>`` (``[CLS] source [SEP]`` in
    English) is right-padded across the batch. Targets are cut to ``max_target_length`` tokens including the eop
    (`build_inputs_for_generation` with ``padding=True``).

    Returns ``input_ids`` (B, s + G), ``position_ids`` (B, 2, s + G), ``attention_mask`` (B, 1, s + G, s + G) and
    ``labels`` (B, s + G) as LongTensors, which ``GLMForConditionalGeneration`` turns into its loss. ``G`` is the
    longest target + eop of the batch, or ``max_target_length`` with ``pad_to_max_length=True`` (which also pads
    the source to ``max_source_length``: fixed shapes).

    With ``Trainer`` / ``Seq2SeqTrainer`` pass ``TrainingArguments(remove_unused_columns=False)``: otherwise
    transformers drops the ``source`` / ``target`` keys (not arguments of the model's ``forward``) before the
    collator sees them, for a ``datasets.Dataset`` and for a plain list alike.
    """

    def __init__(self, tokenizer, max_source_length: int = 512, max_target_length: int = 128,
                 source_key: str = "source", target_key: str = "target", truncation_side: str = "right",
                 pad_to_max_length: bool = False, pad_to_multiple_of: int | None = None):
        if not isinstance(tokenizer, GLMTokenizerMixin):
            raise TypeError(f"GLMSeq2SeqCollator needs a GLM tokenizer (GLMChineseTokenizer, GLMEnglishTokenizer); "
                            f"got {type(tokenizer).__name__}")
        if truncation_side not in ("left", "right"):
            raise ValueError(f"truncation_side must be 'left' or 'right'; got {truncation_side!r}")
        specials = len(tokenizer.build_inputs_with_special_tokens([]))
        if max_source_length < specials + 1 or max_target_length < 1:
            raise ValueError(f"max_source_length must leave room for a mask token besides the {specials} special "
                             f"tokens and max_target_length must be >= 1; got {max_source_length}, {max_target_length}")
        self.tokenizer = tokenizer
        self.max_source_length = max_source_length
        self.max_target_length = max_target_length
        self.source_key = source_key
        self.target_key = target_key
        self.truncation_side = truncation_side
        self.pad_to_max_length = pad_to_max_length
        self.pad_to_multiple_of = pad_to_multiple_of

    def _source_ids(self, source) -> list[int]:
        tok = self.tokenizer
        ids = tok._ids_of([source])[0]
        masks = set(tok.mask_token_ids)
        budget = self.max_source_length - len(tok.build_inputs_with_special_tokens([]))
        if not any(i in masks for i in ids):
            ids = (ids[:budget - 1] if self.truncation_side == "right" else ids[len(ids) - budget + 1:]) \
                if len(ids) >= budget else ids
            ids = ids + [tok.gmask_token_id]
        excess = len(ids) - budget
        if excess > 0:
            # Drop text tokens from one end, skipping mask tokens.
            order = range(len(ids) - 1, -1, -1) if self.truncation_side == "right" else range(len(ids))
            drop = set()
            for index in order:
                if len(drop) == excess:
                    break
                if ids[index] not in masks:
                    drop.add(index)
            if len(drop) < excess:
                raise ValueError(f"The source holds more mask tokens than max_source_length={self.max_source_length}"
                                 " allows")
            ids = [i for index, i in enumerate(ids) if index not in drop]
        return tok.build_inputs_with_special_tokens(ids)

    def __call__(self, features: Sequence[Mapping]) -> dict[str, torch.Tensor]:
        tok = self.tokenizer
        for feature in features:
            missing = [key for key in (self.source_key, self.target_key) if key not in feature]
            if missing:
                raise KeyError(f"GLMSeq2SeqCollator: an example lacks {missing} (it has {sorted(feature)}); with "
                               "Trainer, pass TrainingArguments(remove_unused_columns=False) so that these columns "
                               "reach the collator, or set source_key= / target_key=")
        sources = [self._source_ids(f[self.source_key]) for f in features]
        targets = tok._ids_of([f[self.target_key] for f in features])
        padded = tok.pad({"input_ids": sources}, padding="max_length" if self.pad_to_max_length else "longest",
                         max_length=self.max_source_length if self.pad_to_max_length else None,
                         pad_to_multiple_of=self.pad_to_multiple_of, padding_side="right",
                         return_attention_mask=True, return_tensors="pt")
        if self.pad_to_max_length:
            gen = self.max_target_length
        else:
            gen = min(self.max_target_length, max(len(t) for t in targets) + 1)
        batch = tok.build_inputs_for_generation(padded, max_gen_length=gen, targets=targets, padding=True)
        return {key: batch[key] for key in ("input_ids", "position_ids", "attention_mask", "labels")}


__all__ = [
    "GLMTokenizerMixin",
    "GLMChineseTokenizer",
    "GLMEnglishTokenizer",
    "GLMSeq2SeqCollator",
    "swissarmytransformer_asset",
]
