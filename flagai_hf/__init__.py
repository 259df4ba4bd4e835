"""flagai_hf: the FlagAI model family as Hugging Face Transformers models.

Importing the package registers every family with transformers' Auto classes (``AutoConfig``, ``AutoModel``,
``AutoModelFor*``, ``AutoTokenizer``) under its own ``model_type`` (``flagai_bert``, ``flagai_glm``, ...).
"""

from .auto_registration import register_all
from .models.bert import (
    BertForClsClassifier,
    BertForMaskedLM,
    BertForSeq2seq,
    BertForSequenceClassification,
    BertForSequenceLabeling,
    BertForSequenceLabelingCRF,
    BertForSequenceLabelingGP,
    BertModel,
    FlagAIBertConfig,
    FlagAIBertTokenizer,
)
from .models.glm import (
    GLMChineseTokenizer,
    GLMConfig,
    GLMEnglishTokenizer,
    GLMForConditionalGeneration,
    GLMForMultipleChoice,
    GLMForSeq2Seq,
    GLMForSequenceClassification,
    GLMModel,
    GLMSeq2SeqCollator,
)

register_all()

__version__ = "0.1.0"

__all__ = [
    "FlagAIBertConfig",
    "FlagAIBertTokenizer",
    "BertModel",
    "BertForMaskedLM",
    "BertForSequenceClassification",
    "BertForClsClassifier",
    "BertForSequenceLabeling",
    "BertForSequenceLabelingCRF",
    "BertForSequenceLabelingGP",
    "BertForSeq2seq",
    "GLMConfig",
    "GLMModel",
    "GLMForConditionalGeneration",
    "GLMForSeq2Seq",
    "GLMForMultipleChoice",
    "GLMForSequenceClassification",
    "GLMChineseTokenizer",
    "GLMEnglishTokenizer",
    "GLMSeq2SeqCollator",
]
