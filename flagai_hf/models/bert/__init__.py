"""The BERT / RoBERTa family (``model_type`` ``flagai_bert``)."""

from ...loading import Family, register_family
from .configuration_flagai_bert import FlagAIBertConfig
from .convert_flagai_bert import BERT_FLAGAI_LAYOUT, BERT_KEYMAP
from .modeling_flagai_bert import (
    BertForClsClassifier,
    BertForMaskedLM,
    BertForSeq2seq,
    BertForSequenceClassification,
    BertForSequenceLabeling,
    BertForSequenceLabelingCRF,
    BertForSequenceLabelingGP,
    BertModel,
    BertPreTrainedModel,
)
from .tokenization_flagai_bert import FlagAIBertTokenizer

register_family(
    FlagAIBertConfig.model_type,
    Family(keymap=BERT_KEYMAP, model_types={"flagai_bert", "bert"}, backbone_modules=("embeddings", "layers"),
           layer_stacks={"layers": "num_hidden_layers"},
           to_flagai=BERT_FLAGAI_LAYOUT, tokenizers={"vocab.txt": FlagAIBertTokenizer}),
)

__all__ = [
    "FlagAIBertConfig",
    "FlagAIBertTokenizer",
    "BertPreTrainedModel",
    "BertModel",
    "BertForMaskedLM",
    "BertForSequenceClassification",
    "BertForClsClassifier",
    "BertForSequenceLabeling",
    "BertForSequenceLabelingCRF",
    "BertForSequenceLabelingGP",
    "BertForSeq2seq",
]
