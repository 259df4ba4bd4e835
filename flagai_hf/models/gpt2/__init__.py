"""The GPT2 family (``model_type`` ``flagai_gpt2``): FlagAI's GPT2 language models and transformers' GPT-2."""

from ...loading import Family, register_family
from ..bert.tokenization_flagai_bert import FlagAIBertTokenizer
from .configuration_flagai_gpt2 import FlagAIGPT2Config
from .convert_flagai_gpt2 import GPT2_FLAGAI_LAYOUT, GPT2_KEYMAP
from .modeling_flagai_gpt2 import GPT2LMHeadModel, GPT2Model, GPT2PreTrainedModel
from .tokenization_flagai_gpt2 import FlagAIGPT2Tokenizer

register_family(
    FlagAIGPT2Config.model_type,
    Family(keymap=GPT2_KEYMAP, model_types={"flagai_gpt2", "gpt2"},
           backbone_modules=("embeddings", "layers", "final_layernorm"), to_flagai=GPT2_FLAGAI_LAYOUT,
           layer_stacks={"layers": "n_layer"},
           # English GPT-2: byte-level BPE; GPT2-base-ch: the BERT WordPiece vocab.txt
           tokenizers={"vocab.json": FlagAIGPT2Tokenizer, "vocab.txt": FlagAIBertTokenizer}),
)

__all__ = [
    "FlagAIGPT2Config",
    "FlagAIGPT2Tokenizer",
    "GPT2PreTrainedModel",
    "GPT2Model",
    "GPT2LMHeadModel",
]
