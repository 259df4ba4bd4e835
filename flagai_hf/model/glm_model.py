"""FlagAI's ``flagai.model.glm_model`` names."""

from ..models.glm import (
    GLMForConditionalGeneration,
    GLMForMultipleChoice,
    GLMForSeq2Seq,
    GLMForSequenceClassification,
    GLMModel,
)

__all__ = ["GLMModel", "GLMForSeq2Seq", "GLMForConditionalGeneration", "GLMForMultipleChoice",
           "GLMForSequenceClassification"]
