"""Hub-ready folders: export a flagai_hf model as ``trust_remote_code`` files, and serve it by repo id offline.

- `export_for_hub(model, folder, tokenizer)`: weights, ``config.json`` with an ``auto_map`` of every head of the
  family, tokenizer files with their ``auto_map``, ``generation_config.json``, a model card, and the family's source
  files flattened (`remote_code`); checked with transformers' own import resolver (`check_remote_code`).
- `place_in_hf_cache(folder, "ORG/NAME")`: a Hugging Face cache entry, so ``from_pretrained("ORG/NAME",
  trust_remote_code=True)`` loads with ``HF_HUB_OFFLINE=1``; `place_in_mirror(folder, "ORG/NAME", dir)` and
  `HubMirror(dir)`: a static mirror to point ``HF_ENDPOINT`` at.

Command lines: ``flagai-hf export`` and ``flagai-hf serve-mirror`` (``flagai_hf/conversion/``).
"""

from .hub_folder import export_for_hub, family_heads, model_auto_map, tokenizer_auto_map
from .hub_layout import check_repo_id, folder_revision, place_in_hf_cache, place_in_mirror
from .mirror import HubMirror
from .remote_code import ExportError, check_remote_code

__all__ = [
    "ExportError",
    "HubMirror",
    "check_remote_code",
    "check_repo_id",
    "export_for_hub",
    "family_heads",
    "folder_revision",
    "model_auto_map",
    "place_in_hf_cache",
    "place_in_mirror",
    "tokenizer_auto_map",
]
