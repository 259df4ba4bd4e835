"""FlagAI's ``flagai.auto_model.auto_loader``, for code migrating from FlagAI (see ``flagai_hf.auto_loader``)."""

from ..auto_loader import AutoLoader

__all__ = ["AutoLoader"]
