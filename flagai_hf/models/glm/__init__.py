"""GLM (2021, blank infilling; ``model_type`` ``flagai_glm``)."""

from ...loading import Family, register_family
from .configuration_flagai_glm import GLMConfig
from .convert_flagai_glm import GLM_FLAGAI_LAYOUT, GLM_KEYMAP
from .megatron import read_megatron_folder
from .modeling_flagai_glm import (
    GLMForConditionalGeneration,
    GLMForMultipleChoice,
    GLMForSeq2Seq,
    GLMForSequenceClassification,
    GLMModel,
    GLMPreTrainedModel,
)
from .tokenization_flagai_glm import GLMChineseTokenizer, GLMEnglishTokenizer, GLMSeq2SeqCollator

register_family(
    GLMConfig.model_type,
    Family(keymap=GLM_KEYMAP, model_types={"flagai_glm", "glm"},
           backbone_modules=("embeddings", "layers", "final_layernorm"),
           layer_stacks={"layers": "num_hidden_layers"},
           weight_readers=(read_megatron_folder,),  # THUDM Megatron shards mp_rank_XX_model_states.pt
           to_flagai=GLM_FLAGAI_LAYOUT,
           tokenizers={"cog-pretrain.model": GLMChineseTokenizer, "vocab.txt": GLMEnglishTokenizer}),
)

__all__ = [
    "GLMConfig",
    "GLMPreTrainedModel",
    "GLMModel",
    "GLMForConditionalGeneration",
    "GLMForSeq2Seq",
    "GLMForMultipleChoice",
    "GLMForSequenceClassification",
    "GLMChineseTokenizer",
    "GLMEnglishTokenizer",
    "GLMSeq2SeqCollator",
]
