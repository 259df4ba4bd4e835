"""FlagAI's ``Predictor``: its method names and results, computed by transformers pipelines and ``generate()``.

::

    predictor = Predictor(model, tokenizer)
    predictor.predict_ner("6月15日，河南省文物考古研究所...", ["O", "B-LOC", "I-LOC", ...])  # [(6, 8, "LOC")]
    predictor.predict_cls_classifier(["句子一", "句子二"])                                  # 1
    predictor.predict_generate_beamsearch("新华社北京一月一日电...", out_max_length=32, beam_size=3)

Which pipeline serves a method is decided by the model's class (``isinstance``), never by its name:

==================================  ==========================================  ====================================
method                              models                                      served by
==================================  ==========================================  ====================================
``predict_embedding``               ``BertModel`` (FlagAI's BertForEmbedding)   ``feature-extraction`` + mean
``predict_cls_classifier``          ``BertForSequenceClassification``,          ``text-classification``
                                    ``GLMForSequenceClassification``
``predict_masklm``                  ``BertForMaskedLM``                         ``fill-mask``
``predict_ner``                     ``BertForSequenceLabeling`` (+ CRF, GP)     ``flagai-ner``
``predict_generate_beamsearch`` /   ``GLMForSeq2Seq``, ``GLMModel``,            ``flagai-text2text-generation``
``predict_generate_randomsample``   ``BertForSeq2seq``, ``GPT2Model``,          (``generate()``)
                                    ``T5Model``
==================================  ==========================================  ====================================

``predict_ner`` decodes as FlagAI 1.8.4 does (the ``flagai-ner`` pipeline's ``decoding="flagai"``), on the input
FlagAI's decoders were written for, ``[CLS] text [SEP]`` (1.8.4 itself feeds the text without them, so it never finds
an entity on the first character, nor, with GlobalPointer, on the last one).

Differences from FlagAI, on purpose: ``predict_masklm`` returns the text with each ``[MASK]`` replaced by its most
likely token (FlagAI decoded the argmax at every position, special tokens included); ``predict_ner``'s offsets come
from the tokenizer's offset mapping (FlagAI: ``rematch``), end inclusive as in FlagAI; beam search and sampling are
transformers' (FlagAI's own beam searches did not reorder their token histories); an unsupported model is a
``ValueError`` naming the supported ones (FlagAI exited the process). A bare ``GLMModel`` (FlagAI's blank-filling
examples generate with one) generates through a ``GLMForConditionalGeneration`` sharing its weights.
"""

from __future__ import annotations

import torch
from transformers import pipeline

from .models.bert import (
    BertForMaskedLM,
    BertForSequenceClassification,
    BertForSequenceLabeling,
    BertForSequenceLabelingGP,
    BertModel,
)
from .models.glm import GLMForConditionalGeneration, GLMForSequenceClassification, GLMModel
from .ner_pipeline import TASK as NER_TASK
from .pipelines import TASK as TEXT2TEXT_TASK

CLASSIFIERS = (BertForSequenceClassification, GLMForSequenceClassification)
NER_HEADS = (BertForSequenceLabeling, BertForSequenceLabelingGP)


def as_generator(model):
    """``model`` itself, or for a bare ``GLMModel`` a ``GLMForConditionalGeneration`` around it (same weights, nothing
    copied; the wrapper is built on the meta device and receives ``model`` as its backbone)."""
    if not isinstance(model, GLMModel):
        return model
    with torch.device("meta"):
        generator = GLMForConditionalGeneration(model.config)
    generator.glm = model
    return generator.eval()


class Predictor:
    """FlagAI's predictor over a model and its tokenizer (see the module docstring); pipelines are built on first use.

    Args:
        model: a flagai_hf model (e.g. from ``AutoLoader.get_model()``); it is put in eval mode.
        tokenizer: its tokenizer (``AutoLoader.get_tokenizer()``).
    """

    def __init__(self, model, tokenizer):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self._pipelines: dict[str, object] = {}

    def _pipeline(self, task: str, accepted: tuple[type, ...], method: str, model=None):
        """The (cached) pipeline ``task`` for the model, which must be one of ``accepted``."""
        if accepted and not isinstance(self.model, accepted):
            names = ", ".join(cls.__name__ for cls in accepted)
            raise ValueError(f"Predictor.{method} works with {names}; the model is a {type(self.model).__name__}")
        if task not in self._pipelines:
            self._pipelines[task] = pipeline(task, model=model if model is not None else self.model,
                                             tokenizer=self.tokenizer)
        return self._pipelines[task]

    @staticmethod
    def _truncate(maxlen: int) -> dict:
        return {"truncation": True, "max_length": maxlen}

    # ------------------------------------------------------------------------------------------ encoders
    def predict_embedding(self, text: str, maxlen: int = 256) -> torch.Tensor:
        """The mean over the sequence of the last layer's hidden states, ``(hidden_size,)`` (FlagAI's
        BertForEmbedding), special tokens included."""
        extract = self._pipeline("feature-extraction", (BertModel,), "predict_embedding")
        hidden = extract(text, return_tensors=True, tokenize_kwargs=self._truncate(maxlen))  # (1, T, h)
        return hidden[0].float().mean(0)

    def predict_cls_classifier(self, text: str | list[str] | tuple[str, str], maxlen: int = 512) -> int:
        """The predicted class id of a text (classification) or of a pair ``[a, b]`` (semantic matching)."""
        classify = self._pipeline("text-classification", CLASSIFIERS, "predict_cls_classifier")
        if isinstance(text, (list, tuple)):
            if len(text) != 2 or not all(isinstance(part, str) for part in text):
                raise ValueError(f"predict_cls_classifier takes a text or a pair [text_a, text_b]; got {text!r}")
            text = {"text": text[0], "text_pair": text[1]}
        scores = classify(text, top_k=None, function_to_apply="none", **self._truncate(maxlen))
        best = max(scores, key=lambda record: record["score"])["label"]
        return next(index for index, label in self.model.config.id2label.items() if label == best)

    def predict_masklm(self, text: str, maxlen: int = 512) -> str:
        """The text with each mask token replaced by the model's most likely token for it."""
        fill = self._pipeline("fill-mask", (BertForMaskedLM,), "predict_masklm")
        mask = self.tokenizer.mask_token
        if mask not in text:
            raise ValueError(f"predict_masklm needs at least one {mask} in the text; got {text!r}")
        results = fill(text, top_k=1, tokenizer_kwargs=self._truncate(maxlen))
        per_mask = [results[0]] if isinstance(results[0], dict) else [candidates[0] for candidates in results]
        pieces = text.split(mask)
        if len(per_mask) != len(pieces) - 1:
            raise ValueError(f"The text has {len(pieces) - 1} {mask} but {len(per_mask)} survived truncation to "
                             f"maxlen={maxlen} tokens")
        filled = [pieces[0]]
        for prediction, piece in zip(per_mask, pieces[1:]):
            filled += [prediction["token_str"], piece]
        return "".join(filled)

    def predict_ner(self, text: str, target: list[str] | None = None, maxlen: int = 256,
                    add_spatial_token: bool = False) -> list[tuple[int, int, str]]:
        """Entities as FlagAI returned them: ``(start_char, end_char, label)``, ``end_char`` inclusive.

        ``target``: the label names in id order (BIO tags for softmax / CRF models, entity types for GlobalPointer);
        left out, ``config.id2label``. ``add_spatial_token`` (FlagAI's ``[unused1]`` for spaces) is not supported.
        """
        if add_spatial_token:
            raise ValueError("add_spatial_token=True (FlagAI's [unused1] space tokens) is not supported: the "
                             "tokenizer's offsets locate entities in the text as it is")
        ner = self._pipeline(NER_TASK, NER_HEADS, "predict_ner")
        entities = ner(text, labels=target, max_length=maxlen, decoding="flagai")
        return [(entity["start"], entity["end"] - 1, entity["entity_group"]) for entity in entities]

    # ------------------------------------------------------------------------------------------ generation
    def _generate(self, text: str, input_max_length: int, **generate_kwargs) -> str:
        generate = self._pipeline(TEXT2TEXT_TASK, (), "predict_generate_*", model=as_generator(self.model))
        return generate(text, max_source_length=input_max_length, **generate_kwargs)[0]["generated_text"]

    def predict_generate_beamsearch(self, text: str, input_max_length: int = 256, out_max_length: int = 100,
                                    beam_size: int = 1) -> str:
        """Beam search (greedy for ``beam_size=1``) of at most ``out_max_length`` new tokens."""
        return self._generate(text, input_max_length, max_new_tokens=out_max_length, num_beams=beam_size,
                              do_sample=False)

    def predict_generate_randomsample(self, text: str, input_max_length: int = 256, out_max_length: int = 200,
                                      top_k: int = 30, top_p: float = 1.0, repetition_penalty: float = 1.0,
                                      temperature: float = 1.0) -> str:
        """Sampling of at most ``out_max_length`` new tokens (``top_k=0`` disables top-k, ``top_p=1.0`` top-p)."""
        return self._generate(text, input_max_length, max_new_tokens=out_max_length, do_sample=True, num_beams=1,
                              top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty,
                              temperature=temperature)
