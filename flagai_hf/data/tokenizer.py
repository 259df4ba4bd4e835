"""FlagAI's ``flagai.data.tokenizer.Tokenizer``: ``Tokenizer.from_pretrained(model_name, cache_dir=folder)`` returns
the tokenizer of that FlagAI model (``flagai_hf.auto_loader.MODELS``) read from ``cache_dir`` (default
``./checkpoints/<model_name>``), downloading the folder when it is missing."""

from ..auto_loader import load_tokenizer


class Tokenizer:
    @staticmethod
    def from_pretrained(tokenizer_model_name: str, cache_dir=None, **kwargs):
        return load_tokenizer(tokenizer_model_name, cache_dir, **kwargs)


__all__ = ["Tokenizer"]
