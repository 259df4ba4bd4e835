"""FlagAI's ``flagai.model.gpt2_model`` names."""

from ..models.gpt2 import GPT2LMHeadModel, GPT2Model

__all__ = ["GPT2Model", "GPT2LMHeadModel"]
