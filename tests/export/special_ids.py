"""The special ids a saved folder declares (config.json, generation_config.json, the tokenizer) and where they
disagree the way ``Trainer`` would "align" them; `Messages` collects transformers' warnings. Imports transformers only,
so the flagai_hf-free worker uses it too."""

import json
import logging
from pathlib import Path

from transformers import AutoTokenizer

CONFIG_KEYS = ("eos_token_id", "bos_token_id", "pad_token_id", "sep_token_id", "decoder_start_token_id",
               "sop_token_id", "eop_token_id", "mask_token_ids")
GENERATION_KEYS = ("eos_token_id", "bos_token_id", "pad_token_id", "decoder_start_token_id")
TOKENIZER_KEYS = ("eos_token_id", "bos_token_id", "pad_token_id", "sep_token_id", "cls_token_id", "mask_token_id",
                  "model_max_length")
# The ids transformers' Trainer copies from the tokenizer into the configs when they differ (align_special_tokens).
ALIGNED = ("eos_token_id", "bos_token_id", "pad_token_id")


def _json(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def special_ids(folder) -> dict:
    """``{"config": {...}, "generation": {...} or None, "tokenizer": {...}}`` of a saved model + tokenizer folder."""
    folder = Path(folder)
    config = _json(folder / "config.json")
    generation = _json(folder / "generation_config.json")
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    return {"config": {key: config.get(key) for key in CONFIG_KEYS if key in config},
            "generation": None if generation is None else {key: generation.get(key) for key in GENERATION_KEYS},
            "tokenizer": {key: getattr(tokenizer, key, None) for key in TOKENIZER_KEYS}}


def disagreements(ids: dict) -> list[str]:
    """Where the tokenizer's eos / bos / pad is missing from the config or the generation config (what makes
    ``Trainer`` rewrite them, with its "Updated tokens" warning)."""
    found = []
    for key in ALIGNED:
        token_id = ids["tokenizer"][key]
        if token_id is None:
            continue
        for part in ("config", "generation"):
            if ids[part] is None:  # no generation config: nothing there to align
                continue
            declared = ids[part].get(key)
            declared = declared if isinstance(declared, list) else [declared]
            if token_id not in declared:
                found.append(f"tokenizer {key} {token_id} not in the {part}'s {declared}")
    return found


class Messages(logging.Handler):
    """Collects the messages transformers logs (its loggers do not propagate to the root logger)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())
