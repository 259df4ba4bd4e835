"""FlagAI's import path ``flagai.data``: ``from flagai_hf.data.tokenizer import Tokenizer``."""
