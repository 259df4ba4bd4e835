#!/usr/bin/env python
"""Tag a sentence with a saved flagai_hf token classifier using plain transformers only.

    python examples/minilm_ner/tag_without_flagai_hf.py outputs/minilm_ner/model "Taylor Swift played in New York"

The folder is what ``save_pretrained`` writes (config ``auto_map`` plus the model's code files), so
``pipeline("ner", model=folder, trust_remote_code=True)`` loads it in any environment with transformers. To prove
that, this script refuses ``import flagai_hf`` for itself, even where the package is installed. It prints the
entities as one JSON line: ``[{"entity_group", "text", "start", "end", "score"}]``.
"""

import importlib.abc
import json
import os
import sys


class RefuseFlagAIHF(importlib.abc.MetaPathFinder):
    """Makes ``import flagai_hf`` fail, so only the folder's own code files can serve the model."""

    def find_spec(self, name, path=None, target=None):
        if name == "flagai_hf" or name.startswith("flagai_hf."):
            raise ModuleNotFoundError(f"No module named {name!r} (refused: plain transformers only)", name=name)
        return None


sys.meta_path.insert(0, RefuseFlagAIHF())
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from transformers import pipeline  # noqa: E402


def main(folder: str, sentence: str) -> list[dict]:
    ner = pipeline("ner", model=folder, trust_remote_code=True, aggregation_strategy="simple", device=-1)
    model_class = type(ner.model)
    if model_class.__module__.startswith("flagai_hf"):
        raise SystemExit(f"{model_class} came from flagai_hf, not from the folder's code")
    return [{"entity_group": e["entity_group"], "text": sentence[e["start"]:e["end"]], "start": int(e["start"]),
             "end": int(e["end"]), "score": round(float(e["score"]), 4)} for e in ner(sentence)]


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    print(json.dumps(main(sys.argv[1], sys.argv[2]), ensure_ascii=False))
