"""The ``flagai-text2text-generation`` pipeline: texts in, generated texts out, for every FlagAI generation model.

transformers 5 removed its ``text2text-generation`` and ``summarization`` pipelines (and refuses those task names).
Importing ``flagai_hf`` registers this one in their place::

    pipe = pipeline("flagai-text2text-generation", model=model_or_folder, tokenizer=tokenizer, max_new_tokens=32)
    pipe("清华大学位于[MASK]。")                      # [{"generated_text": ...}]
    pipe(texts, batch_size=8, num_beams=4)          # one result per text

Generation parameters (``max_new_tokens``, ``num_beams``, ``do_sample``, ``top_k``, ``top_p``, ``temperature``,
``repetition_penalty``, ``num_return_sequences``, a ``generation_config``, ...) go to ``model.generate()`` unchanged.
What a text means depends on the kind of model; one small strategy per kind builds the ``generate()`` inputs and
picks the generated span out of its output:

* encoder-decoder models (``config.is_encoder_decoder``, e.g. T5): the text is the encoder input;
* GLM blank filling (`GLMForConditionalGeneration` with a GLM tokenizer): the text's first ``[MASK]`` / ``[sMASK]`` /
  ``[gMASK]`` is the blank to fill; a text without one gets ``[gMASK]`` appended (FlagAI's title / summary usage).
  Generation stops at ``<|endofpiece|>``;
* BERT UniLM (`BertForSeq2seq`): ``[CLS] text [SEP]`` is segment 0, the generated tokens are segment 1; generation
  stops at ``[SEP]``;
* any other decoder-only model that can ``generate()`` (GPT2): a prefix LM; the output is the continuation.

Pipeline parameters besides the generation ones: ``max_source_length`` (truncate each text to that many tokens,
special tokens included, on the tokenizer's truncation side), ``return_full_text`` (GLM: the text with the blank
filled; prefix LMs: prompt + continuation), ``return_tensors`` (add ``generated_token_ids``), ``return_text``,
``skip_special_tokens`` and ``clean_up_tokenization_spaces`` (decoding), and ``too_long`` (``"truncate"``, the
default, or ``"error"``): what happens to a text longer than the model takes (its position table, or the tokenizer's
``model_max_length``, or ``max_source_length`` when smaller): it is truncated, or refused, before any mask is built.
"""

from __future__ import annotations

import copy

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, GenerationConfig, PreTrainedModel
from transformers.pipelines import PIPELINE_REGISTRY, Pipeline
from transformers.utils import ModelOutput, logging

from .models.bert import BertForSeq2seq
from .models.glm import GLMForConditionalGeneration
from .models.glm.tokenization_flagai_glm import GLMTokenizerMixin

logger = logging.get_logger(__name__)

TASK = "flagai-text2text-generation"

KINDS = ("encoder-decoder models (config.is_encoder_decoder, e.g. T5ForConditionalGeneration)",
         "GLM blank filling (GLMForConditionalGeneration)", "BERT UniLM (BertForSeq2seq)",
         "decoder-only models that can generate() (e.g. GPT2LMHeadModel), as prefix LMs")


# ---------------------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------------------


def _pad(rows: list[list[int]], pad_id: int | None, side: str, device) -> tuple[torch.Tensor, torch.Tensor]:
    """``input_ids`` and ``attention_mask`` (B, T) of the rows padded to the longest on ``side``.

    ``pad_id`` may be ``None`` for a single row (nothing to pad; batching already requires the tokenizer's pad)."""
    length = max(len(row) for row in rows)
    pad_id = 0 if pad_id is None else pad_id
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((len(rows), length), dtype=torch.long, device=device)
    for i, row in enumerate(rows):
        columns = slice(length - len(row), length) if side == "left" else slice(0, len(row))
        ids[i, columns] = torch.tensor(row, dtype=torch.long, device=device)
        mask[i, columns] = 1
    return ids, mask


def _splice(tokenizer, text: str, index: int, width: int, before_ids: list[int], new_ids: list[int],
            decode_kwargs: dict) -> str:
    """``text`` with ``text[index:index + width]`` replaced by the generated ids written as they would follow the
    tokens ``before_ids`` (so the joining space, if any, is the tokenizer's)."""
    before = tokenizer.decode(before_ids, **decode_kwargs)
    joined = tokenizer.decode(before_ids + new_ids, **decode_kwargs)
    added = joined[len(before):] if joined.startswith(before) else tokenizer.decode(new_ids, **decode_kwargs)
    return text[:index] + added + text[index + width:]


def _encode(tokenizer, text: str, max_source_length: int | None, add_special_tokens: bool = True) -> list[int]:
    truncation = {} if max_source_length is None else {"truncation": True, "max_length": max_source_length}
    return list(tokenizer(text, add_special_tokens=add_special_tokens, **truncation)["input_ids"])


# ---------------------------------------------------------------------------------------------------------------------
# One strategy per kind of model
# ---------------------------------------------------------------------------------------------------------------------


class GenerationStrategy:
    """How one kind of model reads a text, what ``generate()`` gets, and where the generated span starts."""

    supports_full_text = False
    positions_after_prompt = False  # generated tokens take the positions after the prompt's (one position table)

    def check_tokenizer(self, tokenizer) -> None:
        """Raise if the tokenizer can't serve this kind of model."""

    def encode(self, tokenizer, text: str, max_source_length: int | None) -> list[int]:
        """The prompt ids of one text."""
        return _encode(tokenizer, text, max_source_length)

    def generation_overrides(self, tokenizer) -> dict:
        """Generation parameters this kind needs, unless the user sets them (they beat the model's own config)."""
        return {}

    def generation_inputs(self, tokenizer, rows: list[list[int]], new_tokens: int, device) -> tuple[dict, int]:
        """``generate()`` inputs for a batch of prompts, and the number of output columns before the new tokens.

        ``new_tokens`` is the most tokens this call may generate."""
        raise NotImplementedError

    def full_text(self, tokenizer, text: str, prompt_ids: list[int], new_ids: list[int], decode_kwargs: dict) -> str:
        raise NotImplementedError


class EncoderDecoderGeneration(GenerationStrategy):
    """The text is the encoder input; the decoder output starts with one decoder-start token.

    With a BERT WordPiece vocabulary (FlagAI's T5-base-ch) decoding starts at ``[CLS]``, as FlagAI's predictor does
    whatever the config says (FlagAI's own config.json files keep transformers' T5 default, 0 = ``[PAD]``)."""

    def generation_overrides(self, tokenizer):
        if tokenizer.cls_token_id is not None and tokenizer.sep_token_id is not None:
            return {"decoder_start_token_id": tokenizer.cls_token_id}
        return {}

    def generation_inputs(self, tokenizer, rows, new_tokens, device):
        input_ids, attention_mask = _pad(rows, tokenizer.pad_token_id, "right", device)
        return {"input_ids": input_ids, "attention_mask": attention_mask}, 1


class PrefixLMGeneration(GenerationStrategy):
    """A decoder-only LM continues the text (left padding); the output is the continuation."""

    positions_after_prompt = True

    supports_full_text = True

    def generation_overrides(self, tokenizer):
        """A BERT-vocabulary GPT2 (FlagAI's GPT2-base-ch) stops at ``[SEP]``, as FlagAI's predictor did (FlagAI's own
        config.json keeps GPT2's eos 50256, outside that vocabulary)."""
        return {"eos_token_id": tokenizer.sep_token_id} if tokenizer.sep_token_id is not None else {}

    def encode(self, tokenizer, text, max_source_length):
        """The text's ids; a trailing ``[SEP]`` / eos that the tokenizer appended (a BERT-style tokenizer, as FlagAI's
        GPT2-ch used) is dropped, as FlagAI's predictor did: a prompt must not end with the stop token."""
        truncation = {} if max_source_length is None else {"truncation": True, "max_length": max_source_length}
        encoded = tokenizer(text, return_special_tokens_mask=True, **truncation)
        ids, special = list(encoded["input_ids"]), encoded["special_tokens_mask"]
        stop = {tokenizer.sep_token_id, tokenizer.eos_token_id} - {None}
        if len(ids) > 1 and special[-1] and ids[-1] in stop:
            ids = ids[:-1]
        return ids

    def generation_inputs(self, tokenizer, rows, new_tokens, device):
        input_ids, attention_mask = _pad(rows, tokenizer.pad_token_id, "left", device)
        return {"input_ids": input_ids, "attention_mask": attention_mask}, input_ids.shape[1]

    def full_text(self, tokenizer, text, prompt_ids, new_ids, decode_kwargs):
        return _splice(tokenizer, text, len(text), 0, prompt_ids, new_ids, decode_kwargs)


class UniLMGeneration(GenerationStrategy):
    """BERT UniLM: ``[CLS] text [SEP]`` as segment 0 (left padding), generated tokens as segment 1, stop at ``[SEP]``.

    ``BertForSeq2seq.generate()`` gives the prompt segment 0 and every generated token segment 1 itself."""

    positions_after_prompt = True

    def check_tokenizer(self, tokenizer):
        if tokenizer.sep_token_id is None:
            raise ValueError(f"BERT UniLM stops at [SEP], but the tokenizer {type(tokenizer).__name__} has no "
                             "sep_token: use the model's BERT tokenizer (e.g. FlagAIBertTokenizer)")

    def generation_overrides(self, tokenizer):
        return {"eos_token_id": tokenizer.sep_token_id}

    def generation_inputs(self, tokenizer, rows, new_tokens, device):
        input_ids, attention_mask = _pad(rows, tokenizer.pad_token_id, "left", device)
        return {"input_ids": input_ids, "attention_mask": attention_mask}, input_ids.shape[1]


class GLMBlankFilling(GenerationStrategy):
    """GLM fills the text's first blank (``[MASK]``, ``[sMASK]`` or ``[gMASK]``; ``[gMASK]`` appended when there is
    none) with the tokenizer's ``build_inputs_for_generation`` layout; generation stops at ``<|endofpiece|>``."""

    supports_full_text = True

    def check_tokenizer(self, tokenizer):
        if not isinstance(tokenizer, GLMTokenizerMixin):
            raise ValueError(f"GLM blank filling needs a GLM tokenizer (GLMChineseTokenizer or GLMEnglishTokenizer, "
                             f"which build GLM's generation inputs); got {type(tokenizer).__name__}")

    @staticmethod
    def blank_in_text(tokenizer, text: str) -> tuple[int, int] | None:
        """(character index, width) of the first mask token written in the text, or ``None``."""
        found = [(text.find(token), len(token)) for token in tokenizer.convert_ids_to_tokens(tokenizer.mask_token_ids)]
        found = [place for place in found if place[0] >= 0]
        return min(found) if found else None

    def encode(self, tokenizer, text, max_source_length):
        has_blank = self.blank_in_text(tokenizer, text) is not None
        budget = None
        if max_source_length is not None:
            budget = max_source_length - tokenizer.num_special_tokens_to_add() - (0 if has_blank else 1)
            if budget < 1:
                raise ValueError(f"max_source_length={max_source_length} leaves no room for the text next to GLM's "
                                 "special tokens and [gMASK]")
        ids = _encode(tokenizer, text, budget, add_special_tokens=False)
        if not set(ids) & set(tokenizer.mask_token_ids):
            if has_blank:
                raise ValueError(f"Truncating the text to max_source_length={max_source_length} tokens removed its "
                                 "blank; raise max_source_length or move the blank")
            ids.append(tokenizer.gmask_token_id)
        return tokenizer.build_inputs_with_special_tokens(ids)

    def generation_overrides(self, tokenizer):
        return {"eos_token_id": tokenizer.eop_token_id}

    def generation_inputs(self, tokenizer, rows, new_tokens, device):
        input_ids, attention_mask = _pad(rows, tokenizer.pad_token_id, "right", device)
        inputs = tokenizer.build_inputs_for_generation({"input_ids": input_ids, "attention_mask": attention_mask},
                                                       max_gen_length=max(new_tokens, 1))
        return dict(inputs), inputs["input_ids"].shape[1]

    def full_text(self, tokenizer, text, prompt_ids, new_ids, decode_kwargs):
        index, width = self.blank_in_text(tokenizer, text) or (len(text), 0)
        blank = next(i for i, token in enumerate(prompt_ids) if token in tokenizer.mask_token_ids)
        return _splice(tokenizer, text, index, width, prompt_ids[:blank], new_ids, decode_kwargs)


def strategy_for(model) -> GenerationStrategy:
    """The strategy for a model: GLM and UniLM by class, then encoder-decoder, then any other model that generates."""
    if isinstance(model, GLMForConditionalGeneration):
        return GLMBlankFilling()
    if isinstance(model, BertForSeq2seq):
        return UniLMGeneration()
    can_generate = isinstance(model, PreTrainedModel) and model.can_generate()
    if can_generate and getattr(model.config, "is_encoder_decoder", False):
        return EncoderDecoderGeneration()
    if can_generate:
        return PrefixLMGeneration()
    raise ValueError(f"{TASK} serves {'; '.join(KINDS)}. {type(model).__name__} is none of them (it cannot "
                     "generate); for GLM use GLMForConditionalGeneration, for BERT use BertForSeq2seq")


# ---------------------------------------------------------------------------------------------------------------------
# The pipeline
# ---------------------------------------------------------------------------------------------------------------------


class FlagAIText2TextGenerationPipeline(Pipeline):
    """Text-to-text generation for encoder-decoder, GLM, BERT UniLM and decoder-only models (see the module docstring).

    A text gives ``[{"generated_text": ...}]`` (one dict per returned sequence); a list of texts gives one such result
    per text, each flattened to its dict when ``num_return_sequences`` is 1 (as transformers' old text2text pipeline).
    """

    _pipeline_calls_generate = True
    _load_tokenizer = True
    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _default_generation_config = GenerationConfig(max_new_tokens=64)

    def __init__(self, model, *args, **kwargs):
        self.strategy = strategy_for(model)
        super().__init__(model, *args, **kwargs)
        if self.tokenizer is None:
            raise ValueError(f"{TASK} needs a tokenizer: pass tokenizer=...")
        self.strategy.check_tokenizer(self.tokenizer)

    def _sanitize_parameters(self, max_source_length=None, return_full_text=None, return_tensors=None,
                             return_text=None, skip_special_tokens=None, clean_up_tokenization_spaces=None,
                             too_long=None, **generate_kwargs):
        preprocess_params, postprocess_params = {}, {}
        if too_long is not None:
            if too_long not in ("truncate", "error"):
                raise ValueError(f"too_long must be 'truncate' or 'error'; got {too_long!r}")
            preprocess_params["too_long"] = too_long
        if max_source_length is not None:
            if not isinstance(max_source_length, int) or max_source_length < 1:
                raise ValueError(f"max_source_length must be a positive int; got {max_source_length!r}")
            preprocess_params["max_source_length"] = max_source_length
        if return_full_text and not self.strategy.supports_full_text:
            raise ValueError("return_full_text=True is for GLM blank filling (the text with the blank filled) and "
                             f"prefix LMs (prompt + continuation); the output of {type(self.model).__name__} does not "
                             "continue its input")
        for name, value in (("return_full_text", return_full_text), ("return_tensors", return_tensors),
                            ("return_text", return_text), ("skip_special_tokens", skip_special_tokens),
                            ("clean_up_tokenization_spaces", clean_up_tokenization_spaces)):
            if value is not None:
                postprocess_params[name] = value
        return preprocess_params, generate_kwargs, postprocess_params

    def __call__(self, inputs, *args, **kwargs):
        """Generate for a text or a list of texts (see the class docstring for the output)."""
        if isinstance(inputs, list) and not inputs:
            raise ValueError(f"{TASK} got an empty list of texts; pass a text or a non-empty list of texts")
        result = super().__call__(inputs, *args, **kwargs)
        if isinstance(inputs, list) and all(isinstance(records, list) and len(records) == 1 for records in result):
            return [records[0] for records in result]
        return result

    def source_limit(self, max_source_length: int | None = None) -> int | None:
        """The most source tokens the model takes: its position table (``max_position_embeddings`` / ``n_positions``),
        the tokenizer's ``model_max_length`` and ``max_source_length``, whichever is smallest (``None``: no limit)."""
        config = self.model.config
        limits = [getattr(config, name, None) for name in ("max_position_embeddings", "n_positions")]
        limits += [getattr(self.tokenizer, "model_max_length", None), max_source_length]
        limits = [limit for limit in limits if isinstance(limit, int) and 0 < limit < 10**9]
        return min(limits) if limits else None

    def preprocess(self, text, max_source_length=None, too_long="truncate"):
        if not isinstance(text, str):
            raise ValueError(f"{TASK} takes a text or a list of texts; got {type(text).__name__}")
        if self.prefix:
            text = self.prefix + text
        limit = self.source_limit(max_source_length)
        if limit is not None and self.strategy.positions_after_prompt:
            limit -= 1  # room for at least one generated token in the position table
        if too_long == "truncate":
            ids = self.strategy.encode(self.tokenizer, text, limit)
        else:
            ids = self.strategy.encode(self.tokenizer, text, max_source_length)
            if limit is not None and len(ids) > limit:
                raise ValueError(f"{TASK}: the text is {len(ids)} tokens; {type(self.model).__name__} takes at most "
                                 f"{limit} (too_long='error'; pass too_long='truncate' to cut it)")
        if not ids:
            raise ValueError(f"{TASK}: the text {text!r} encodes to no tokens")
        ids = torch.tensor([ids], dtype=torch.long)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "text": text}

    def _user_generation_keys(self, generate_kwargs: dict) -> set:
        """The generation parameters the user set for this call (at init, at call, or in a generation_config)."""
        if "generation_config" in generate_kwargs:
            return set(generate_kwargs) | set(generate_kwargs["generation_config"].to_diff_dict())
        keys = set(self._generate_kwargs) | set(generate_kwargs)
        if "generation_config" in self._generate_kwargs:
            keys |= set(self._generate_kwargs["generation_config"].to_diff_dict())
        return keys

    def _forward(self, model_inputs, **generate_kwargs):
        keep = model_inputs["attention_mask"].bool()
        rows = [ids[mask].tolist() for ids, mask in zip(model_inputs["input_ids"], keep)]  # padding removed
        user_keys = self._user_generation_keys(generate_kwargs)
        overrides = {key: value for key, value in self.strategy.generation_overrides(self.tokenizer).items()
                     if key not in user_keys}
        generate_kwargs = self._prepare_generate_kwargs(generate_kwargs, **overrides)
        params = self._get_set_generation_params(generate_kwargs)

        longest = max(len(row) for row in rows)
        if params.get("max_new_tokens") is not None:
            new_tokens = params["max_new_tokens"]
        else:  # a total length (the prompt counts, except for encoder-decoder models)
            new_tokens = params.get("max_length", GenerationConfig().max_length) - longest
        limit = self.source_limit()
        if self.strategy.positions_after_prompt and limit is not None and longest + new_tokens > limit:
            new_tokens = limit - longest  # >= 1: preprocess left room for one
            logger.warning(f"{TASK}: generation stops at {type(self.model).__name__}'s position table ({limit}): "
                           f"at most {new_tokens} new tokens after a {longest}-token prompt")
            if "generation_config" in generate_kwargs:
                generate_kwargs["generation_config"] = copy.deepcopy(generate_kwargs["generation_config"])
                generate_kwargs["generation_config"].update(max_new_tokens=new_tokens)
            else:
                generate_kwargs["max_new_tokens"] = new_tokens
        inputs, prompt_columns = self.strategy.generation_inputs(self.tokenizer, rows, new_tokens, self.device)
        output = self.model.generate(**inputs, **generate_kwargs)
        sequences = output.sequences if isinstance(output, ModelOutput) else output

        batch = len(rows)
        generated = sequences[:, prompt_columns:]
        generated = generated.reshape(batch, generated.shape[0] // batch, generated.shape[1])  # (B, n, L)
        stop_ids = params.get("eos_token_id")
        stop_ids = [] if stop_ids is None else [stop_ids] if isinstance(stop_ids, int) else list(stop_ids)
        is_stop = torch.isin(generated, torch.tensor(stop_ids, dtype=torch.long, device=generated.device))
        # Span length: up to the first stop token (B, n).
        lengths = torch.where(is_stop.any(-1), is_stop.int().argmax(-1), generated.shape[-1])
        prompt_ids, _ = _pad(rows, 0, "right", generated.device)
        prompt_lengths = torch.tensor([len(row) for row in rows], dtype=torch.long, device=generated.device)
        return {"generated_ids": generated, "generated_lengths": lengths, "prompt_ids": prompt_ids,
                "prompt_lengths": prompt_lengths, "text": model_inputs["text"]}

    def postprocess(self, model_outputs, return_full_text=False, return_tensors=False, return_text=True,
                    skip_special_tokens=True, clean_up_tokenization_spaces=None):
        decode_kwargs = {"skip_special_tokens": skip_special_tokens}
        if clean_up_tokenization_spaces is not None:
            decode_kwargs["clean_up_tokenization_spaces"] = clean_up_tokenization_spaces
        prompt_ids = model_outputs["prompt_ids"][0, :int(model_outputs["prompt_lengths"][0])].tolist()
        text = model_outputs["text"]
        records = []
        for ids, length in zip(model_outputs["generated_ids"][0], model_outputs["generated_lengths"][0]):
            span = ids[:int(length)].tolist()
            record = {}
            if return_tensors:
                record["generated_token_ids"] = span
            if return_text:
                record["generated_text"] = (
                    self.strategy.full_text(self.tokenizer, text, prompt_ids, span, decode_kwargs)
                    if return_full_text else self.tokenizer.decode(span, **decode_kwargs))
            records.append(record)
        return records


# ---------------------------------------------------------------------------------------------------------------------
# Loading from a folder, registration
# ---------------------------------------------------------------------------------------------------------------------


class FlagAIModelFromArchitectures:
    """Loads a saved folder as the ``flagai_hf`` class its config's ``architectures`` names.

    ``pipeline(TASK, model=folder)`` tries ``AutoModelForSeq2SeqLM`` and ``AutoModelForCausalLM`` first; this covers
    heads no Auto class maps, such as ``BertForSeq2seq`` (a ``flagai_bert`` config)."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        import flagai_hf  # the package namespace, complete once this is called

        config = AutoConfig.from_pretrained(pretrained_model_name_or_path)
        for name in config.architectures or []:
            model_class = getattr(flagai_hf, name, None)
            if isinstance(model_class, type) and issubclass(model_class, PreTrainedModel):
                return model_class.from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        raise ValueError(f"config.architectures of {pretrained_model_name_or_path} is {config.architectures}: no "
                         "flagai_hf model class of that name")


def register_text2text_pipeline() -> None:
    """Register ``flagai-text2text-generation`` with transformers' ``PIPELINE_REGISTRY`` (once, on import)."""
    if TASK in PIPELINE_REGISTRY.get_supported_tasks():
        return
    PIPELINE_REGISTRY.register_pipeline(
        TASK, pipeline_class=FlagAIText2TextGenerationPipeline,
        pt_model=(AutoModelForSeq2SeqLM, AutoModelForCausalLM, FlagAIModelFromArchitectures), type="text")
