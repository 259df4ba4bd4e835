"""FlagAI's ``flagai.model.predictor.predictor`` (see ``flagai_hf.predictor``)."""

from ...predictor import Predictor

__all__ = ["Predictor"]
