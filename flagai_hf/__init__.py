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
from .models.gpt2 import FlagAIGPT2Config, FlagAIGPT2Tokenizer, GPT2LMHeadModel, GPT2Model
from .models.t5 import (
    FlagAIT5Config,
    T5ChineseTokenizer,
    T5EncoderModel,
    T5ForConditionalGeneration,
    T5Model,
    T5SentencePieceTokenizer,
)
from .pipelines import FlagAIText2TextGenerationPipeline, register_text2text_pipeline
from .ner_pipeline import FlagAINerPipeline, register_ner_pipeline
from .predictor import Predictor
from .auto_loader import AutoLoader

register_all()
register_text2text_pipeline()  # pipeline("flagai-text2text-generation", ...)
register_ner_pipeline()  # pipeline("flagai-ner", ...)

__version__ = "0.1.0"

__all__ = [
    "AutoLoader",
    "Predictor",
    "FlagAINerPipeline",
    "FlagAIText2TextGenerationPipeline",
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
    "FlagAIGPT2Config",
    "FlagAIGPT2Tokenizer",
    "GPT2Model",
    "GPT2LMHeadModel",
    "FlagAIT5Config",
    "T5Model",
    "T5ForConditionalGeneration",
    "T5EncoderModel",
    "T5SentencePieceTokenizer",
    "T5ChineseTokenizer",
]
