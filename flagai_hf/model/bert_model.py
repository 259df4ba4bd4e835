"""FlagAI's ``flagai.model.bert_model`` names. ``BertForEmbedding`` is ``BertModel``: its ``logits`` are the last
layer's hidden states, which ``Predictor.predict_embedding`` averages, as FlagAI's BertForEmbedding did."""

from ..models.bert import (
    BertForClsClassifier,
    BertForMaskedLM,
    BertForSeq2seq,
    BertForSequenceClassification,
    BertForSequenceLabeling,
    BertForSequenceLabelingCRF,
    BertForSequenceLabelingGP,
    BertModel,
)

BertForMaskLM = BertForMaskedLM
BertForEmbedding = BertModel

__all__ = ["BertModel", "BertForSeq2seq", "BertForMaskLM", "BertForMaskedLM", "BertForSequenceLabeling",
           "BertForSequenceLabelingCRF", "BertForSequenceLabelingGP", "BertForClsClassifier",
           "BertForSequenceClassification", "BertForEmbedding"]
