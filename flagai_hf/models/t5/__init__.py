"""The T5 family (``model_type`` ``flagai_t5``): T5, t5 v1.1, mT5 and FlagAI's T5-base-en / T5-base-ch."""

from ...loading import Family, register_family
from .configuration_flagai_t5 import FlagAIT5Config
from .convert_flagai_t5 import T5_FLAGAI_LAYOUT, T5_KEYMAP
from .modeling_flagai_t5 import (
    T5EncoderModel,
    T5ForConditionalGeneration,
    T5Model,
    T5PreTrainedModel,
)
from .tokenization_flagai_t5 import T5ChineseTokenizer, T5SentencePieceTokenizer

register_family(
    FlagAIT5Config.model_type,
    Family(keymap=T5_KEYMAP, model_types={"flagai_t5", "t5", "mt5"}, backbone_modules=("shared", "encoder", "decoder"),
           layer_stacks={"encoder.layers": "num_layers", "decoder.layers": "num_decoder_layers"},
           to_flagai=T5_FLAGAI_LAYOUT,
           tokenizers={"spiece.model": T5SentencePieceTokenizer, "vocab.txt": T5ChineseTokenizer}),
)

__all__ = [
    "FlagAIT5Config",
    "T5PreTrainedModel",
    "T5Model",
    "T5ForConditionalGeneration",
    "T5EncoderModel",
    "T5SentencePieceTokenizer",
    "T5ChineseTokenizer",
]
