"""FlagAI's import path ``flagai.model.predictor``."""
