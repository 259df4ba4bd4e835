"""FlagAI's ``flagai.model.t5_model`` names."""

from ..models.t5 import T5ForConditionalGeneration, T5Model

__all__ = ["T5Model", "T5ForConditionalGeneration"]
