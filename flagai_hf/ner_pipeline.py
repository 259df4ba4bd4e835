"""The ``flagai-ner`` pipeline: entities with character offsets from every FlagAI NER head.

transformers' ``token-classification`` pipeline reads the argmax of per-token scores; FlagAI's NER heads also include
a CRF (Viterbi decoding over the emissions) and GlobalPointer (a score per span). Importing ``flagai_hf`` registers
this pipeline, which decodes all three the same way::

    ner = pipeline("flagai-ner", model=model, tokenizer=tokenizer, labels=["O", "B-LOC", "I-LOC", ...])
    ner("6月15日，河南省文物考古研究所曹操高陵文物队公开发表声明。")
    # [{"entity_group": "LOC", "score": 0.93, "word": "河南省", "start": 6, "end": 9}, ...]

* ``BertForSequenceLabeling`` (softmax): the argmax tag of every token, grouped into entities by ``bio_entities``;
* ``BertForSequenceLabelingCRF``: the model's Viterbi tags over the text's tokens (special tokens and padding
  excluded, as in training), grouped the same way;
* ``BertForSequenceLabelingGP``: every span whose score is above ``threshold`` (0, as FlagAI) that neither starts nor
  ends on a special token; overlapping spans are all kept.

``decoding="flagai"`` (what ``Predictor.predict_ner`` uses) decodes as FlagAI 1.8.4's ``Predictor.predict_ner`` does,
so FlagAI checkpoints give FlagAI's entities (tests/test_flagai184_fixtures.py checks this against FlagAI itself):
tags are read at every non-padding position, [CLS] and [SEP] included (FlagAI trained its CRF on that path, with
tag 0 at the special tokens); the CRF path starts in tag 0 (FlagAI's Viterbi forces its first position to "O");
tags are grouped by ``flagai_bio_entities``; entities that begin or end on a special token are dropped. GlobalPointer
spans are the same in both modes (FlagAI also drops spans touching [CLS] / [SEP]).

``labels``: the label names in id order (FlagAI's ``target``): BIO / BIOES tags such as ``B-LOC`` for the first two
heads, entity types such as ``LOC`` for GlobalPointer. Left out, the model's ``config.id2label``. Entities are dicts
in transformers' aggregated format: ``entity_group``, ``score``, ``word`` (the text between the offsets), ``start``
and ``end`` (character offsets, end exclusive). ``score`` is the mean probability (softmax over the per-token
scores) of the entity's tags for the first two heads and the sigmoid of the span score for GlobalPointer.
``max_length`` truncates the text to that many tokens, special tokens included.
"""

from __future__ import annotations

import torch
from transformers.pipelines import PIPELINE_REGISTRY, Pipeline

from .models.bert import BertForSequenceLabeling, BertForSequenceLabelingCRF, BertForSequenceLabelingGP
from .pipelines import FlagAIModelFromArchitectures

TASK = "flagai-ner"
HEADS = (BertForSequenceLabeling, BertForSequenceLabelingGP)  # the CRF head is a BertForSequenceLabeling


def bio_entities(tags: list[str | None]) -> list[tuple[str, int, int]]:
    """``(type, first, last)`` token spans (last inclusive) of BIO / BIOES tags; ``None`` tags (special tokens) and
    ``O`` end an entity.

    ``B-X`` and ``S-X`` start an entity (``S-X`` is a whole one); ``I-X``, ``M-X`` and ``E-X`` continue an ``X``
    entity (``E-X`` ends it) or, after anything else, start one, as transformers' ``simple`` aggregation does.
    """
    entities: list[list] = []
    open_entity: list | None = None
    for index, tag in enumerate(tags):
        prefix, _, kind = (tag or "O").partition("-")
        if prefix not in ("B", "I", "M", "E", "S") or not kind:
            open_entity = None  # "O", a special token, or a tag without a type
            continue
        if prefix in ("B", "S") or open_entity is None or open_entity[0] != kind:
            open_entity = [kind, index, index]
            entities.append(open_entity)
        else:
            open_entity[2] = index
        if prefix in ("S", "E"):
            open_entity = None
    return [tuple(entity) for entity in entities]


def flagai_bio_entities(tags: list[int], labels: list[str]) -> list[tuple[str, int, int]]:
    """FlagAI's ``decode_labels``: ``(type, first, last)`` token spans of tag ids (0 = "O" by position).

    A ``B-X`` tag starts an ``X`` entity; any other non-zero tag continues the open entity, whatever its type (so
    ``B-PER I-LOC`` is one PER entity); tag 0 closes it; a non-``B`` tag with no open entity is skipped.
    """
    entities: list[list] = []
    open_entity = False
    for index, tag in enumerate(tags):
        name = labels[tag] if tag > 0 else ""
        if name.startswith("B"):
            entities.append([name[2:], index, index])
            open_entity = True
        elif name and open_entity:
            entities[-1][2] = index
        else:
            open_entity = False
    return [tuple(entity) for entity in entities]


def _check_tag_names(labels: list[str]) -> None:
    """Tag heads need BIO / BIOES names: with transformers' default ``LABEL_0`` ... no entity could ever be found."""
    if not any(str(label).partition("-")[0] in ("B", "I", "M", "E", "S") for label in labels):
        raise ValueError(f"The labels {labels} are not BIO / BIOES tags, so no entity can be decoded: pass labels= "
                         "(Predictor.predict_ner's target) with names such as ['O', 'B-LOC', 'I-LOC', ...] in id "
                         "order, or save them in the model's config.id2label")


class FlagAINerPipeline(Pipeline):
    """Named entities from softmax, CRF and GlobalPointer NER models (see the module docstring)."""

    _load_tokenizer = True
    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False

    def __init__(self, model, *args, **kwargs):
        if not isinstance(model, HEADS):
            raise ValueError(f"{TASK} serves BertForSequenceLabeling, BertForSequenceLabelingCRF and "
                             f"BertForSequenceLabelingGP; got {type(model).__name__}")
        super().__init__(model, *args, **kwargs)
        if self.tokenizer is None or not self.tokenizer.is_fast:
            raise ValueError(f"{TASK} needs a fast tokenizer (character offsets), e.g. FlagAIBertTokenizer; got "
                             f"{type(self.tokenizer).__name__}")

    def _sanitize_parameters(self, labels=None, max_length=None, threshold=None, decoding=None):
        preprocess, forward, postprocess = {}, {}, {}
        if decoding is not None:
            if decoding not in ("transformers", "flagai"):
                raise ValueError(f"decoding must be 'transformers' or 'flagai'; got {decoding!r}")
            forward["decoding"] = postprocess["decoding"] = decoding
        if max_length is not None:
            if not isinstance(max_length, int) or max_length < 3:
                raise ValueError(f"max_length must be an int of at least 3 ([CLS], a token, [SEP]); got {max_length!r}")
            preprocess["max_length"] = max_length
        if labels is not None:
            labels = list(labels)
            if len(labels) != self.model.config.num_labels:
                raise ValueError(f"labels has {len(labels)} names but {type(self.model).__name__} has "
                                 f"{self.model.config.num_labels} labels (config.num_labels / class_num)")
            postprocess["labels"] = labels
        if threshold is not None:
            postprocess["threshold"] = float(threshold)
        return preprocess, forward, postprocess

    def preprocess(self, text, max_length=None):
        if not isinstance(text, str):
            raise ValueError(f"{TASK} takes a text or a list of texts; got {type(text).__name__}")
        truncation = {"truncation": True, "max_length": max_length} if max_length is not None else {}
        encoded = self.tokenizer(text, return_tensors="pt", return_offsets_mapping=True,
                                 return_special_tokens_mask=True, **truncation)
        return {**encoded, "text": text}

    def _forward(self, model_inputs, decoding="transformers"):
        text = model_inputs.pop("text")
        offsets = model_inputs.pop("offset_mapping")  # (B, T, 2)
        special = model_inputs.pop("special_tokens_mask").bool()  # (B, T), padding counts as special
        attention_mask = model_inputs.get("attention_mask")
        real = torch.ones_like(special) if attention_mask is None else attention_mask.bool()  # (B, T) not padding
        tokens = ~special & real  # (B, T) text tokens
        logits = self.model(**model_inputs).logits.float()
        outputs = {"text": text, "offsets": offsets, "tokens": tokens}
        if isinstance(self.model, BertForSequenceLabelingGP):  # logits (B, types, T, T)
            span_ok = tokens[:, None, :, None] & tokens[:, None, None, :]
            outputs["span_scores"] = logits.masked_fill(~span_ok, float("-inf"))
            return outputs
        probabilities = logits.softmax(-1)  # (B, T, labels)
        path = real if decoding == "flagai" else tokens  # FlagAI reads tags at [CLS] / [SEP] too
        if isinstance(self.model, BertForSequenceLabelingCRF):
            emissions = logits
            if decoding == "flagai":  # the path starts in tag 0 ("O"), as FlagAI's viterbi_decode forces
                emissions = logits.clone()
                emissions[:, 0, 1:] = float("-inf")
            tags = self.model.decode(emissions, path)  # Viterbi, -100 outside ``path``
        else:
            tags = logits.argmax(-1).masked_fill(~path, -100)
        outputs["tags"] = tags
        outputs["tag_probabilities"] = probabilities.gather(-1, tags.clamp(min=0)[..., None])[..., 0]  # (B, T)
        return outputs

    def postprocess(self, model_outputs, labels=None, threshold=0.0, decoding="transformers"):
        if labels is None:
            labels = [self.model.config.id2label[index] for index in range(self.model.config.num_labels)]
        text, offsets = model_outputs["text"], model_outputs["offsets"][0].tolist()
        entities = []
        if "span_scores" in model_outputs:
            scores = model_outputs["span_scores"][0]  # (types, T, T)
            for kind, first, last in (scores > threshold).nonzero().tolist():
                score = torch.sigmoid(scores[kind, first, last]).item()
                entities.append(self._entity(labels[kind], score, text, offsets[first][0], offsets[last][1]))
        else:
            _check_tag_names(labels)
            tags = model_outputs["tags"][0].tolist()
            probabilities = model_outputs["tag_probabilities"][0]
            if decoding == "flagai":
                text_token = model_outputs["tokens"][0].tolist()
                spans = [(kind, first, last) for kind, first, last in
                         flagai_bio_entities([max(tag, 0) for tag in tags], labels)
                         if text_token[first] and text_token[last]]  # FlagAI drops those on [CLS] / [SEP]
            else:
                spans = bio_entities([labels[tag] if tag >= 0 else None for tag in tags])
            for kind, first, last in spans:
                score = probabilities[first:last + 1].mean().item()
                entities.append(self._entity(kind, score, text, offsets[first][0], offsets[last][1]))
        return sorted(entities, key=lambda entity: (entity["start"], entity["end"], entity["entity_group"]))

    @staticmethod
    def _entity(kind: str, score: float, text: str, start: int, end: int) -> dict:
        return {"entity_group": kind, "score": score, "word": text[start:end], "start": start, "end": end}


def register_ner_pipeline() -> None:
    """Register ``flagai-ner`` with transformers' ``PIPELINE_REGISTRY`` (once, on ``import flagai_hf``)."""
    if TASK in PIPELINE_REGISTRY.get_supported_tasks():
        return
    # A saved folder loads as the class its config names (the CRF and GP heads have no Auto class of their own).
    PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=FlagAINerPipeline,
                                        pt_model=FlagAIModelFromArchitectures, type="text")
