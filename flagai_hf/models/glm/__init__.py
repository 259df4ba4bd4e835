"""GLM (2021, blank infilling; ``model_type`` ``flagai_glm``)."""

from ...loading import Family, register_family
from .configuration_flagai_glm import GLMConfig
from .convert_flagai_glm import GLM_KEYMAP
from .modeling_flagai_glm import (
    GLMForConditionalGeneration,
    GLMForMultipleChoice,
    GLMForSeq2Seq,
    GLMForSequenceClassification,
    GLMModel,
    GLMPreTrainedModel,
)

register_family(
    GLMConfig.model_type,
    Family(keymap=GLM_KEYMAP, model_types={"flagai_glm", "glm"}, backbone_modules=("embeddings", "layers",
                                                                                   "final_layernorm")),
)

__all__ = [
    "GLMConfig",
    "GLMPreTrainedModel",
    "GLMModel",
    "GLMForConditionalGeneration",
    "GLMForSeq2Seq",
    "GLMForMultipleChoice",
    "GLMForSequenceClassification",
]
