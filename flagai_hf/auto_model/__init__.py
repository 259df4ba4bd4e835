"""FlagAI's import path ``flagai.auto_model``: ``from flagai_hf.auto_model.auto_loader import AutoLoader``."""
