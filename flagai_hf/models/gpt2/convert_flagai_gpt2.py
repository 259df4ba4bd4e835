"""GPT2 checkpoint key map: transformers' GPT-2 and FlagAI's GPT2 tensor names -> flagai_hf's.

Both layouts name the tensors alike (``transformer.wte``, ``transformer.h.{i}.attn.c_attn``, ``transformer.ln_f``, ...;
transformers' bare ``GPT2Model`` drops the ``transformer.`` prefix) but store the four projection weights differently:
transformers' ``Conv1D`` keeps them as ``[in, out]``, FlagAI's (and our) ``nn.Linear`` as ``[out, in]``. The layout is
decided once per checkpoint, from the fused ``c_attn`` weight, which is never square (``[h, 3h]`` as Conv1D,
``[3h, h]`` as Linear); ``attn.c_proj`` is square, so no tensor is ever judged on its own. A Conv1D checkpoint then
has ``c_attn``, ``attn.c_proj``, ``mlp.c_fc`` and ``mlp.c_proj`` weights transposed, all together, exactly once.

``lm_head.weight`` of a FlagAI (Linear-layout) checkpoint is dropped: FlagAI created that tensor but never used it
(its logits are ``h @ wte^T``), so loading it would untie a random matrix. A transformers checkpoint keeps its
``lm_head.weight`` when it has one (equal to ``wte`` unless the model was really untied). The causal-mask buffers of old
transformers checkpoints (``attn.bias``, ``attn.masked_bias``) are dropped. Our own names map to themselves.

``GPT2_FLAGAI_LAYOUT`` writes a model back in FlagAI's layout (its names, Linear layout, ``lm_head.weight`` = the word
embeddings) for ``flagai-hf convert --to flagai``.
"""

import re

import torch

from ...keymap import FlagAIClass, FlagAILayout, KeyMap

_LAYER = "layers.{i}."
_OURS_IN_LAYER = ("attention_norm", "attention.query_key_value", "attention.dense", "mlp_norm", "mlp.dense_h_to_4h",
                  "mlp.dense_4h_to_h")
# The weights Conv1D stores as [in, out]; every other tensor has the same layout in both.
CONV1D_WEIGHTS = re.compile(r"(^|\.)h\.\d+\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight$")
_C_ATTN = re.compile(r"(^|\.)h\.\d+\.attn\.c_attn\.weight$")


def checkpoint_layout(state_dict: dict[str, torch.Tensor]) -> str | None:
    """``"conv1d"`` (transformers), ``"linear"`` (FlagAI) or ``None`` (no ``c_attn`` tensor: our own names).

    Raises a ``ValueError`` naming the tensors when a ``c_attn`` weight has neither shape or when they disagree.
    """
    layouts = {}
    for name, tensor in state_dict.items():
        if not _C_ATTN.search(name):
            continue
        rows, columns = tensor.shape
        if columns == 3 * rows:
            layouts[name] = "conv1d"  # [h, 3h]
        elif rows == 3 * columns:
            layouts[name] = "linear"  # [3h, h]
        else:
            raise ValueError(f"{name} has shape {tuple(tensor.shape)}; a GPT-2 c_attn weight is [h, 3h] (Conv1D) "
                             "or [3h, h] (Linear)")
    found = set(layouts.values())
    if len(found) > 1:
        listing = ", ".join(f"{name}: {layout}" for name, layout in sorted(layouts.items()))
        raise ValueError(f"Checkpoint mixes Conv1D and Linear layouts: {listing}")
    return found.pop() if found else None


def to_linear_layout(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The checkpoint in FlagAI's / our ``nn.Linear`` layout (see the module docstring)."""
    layout = checkpoint_layout(state_dict)
    if layout == "conv1d":
        return {name: tensor.t().contiguous() if CONV1D_WEIGHTS.search(name) else tensor
                for name, tensor in state_dict.items()}
    if layout == "linear":  # FlagAI: lm_head.weight is an unused random matrix
        return {name: tensor for name, tensor in state_dict.items() if not name.endswith("lm_head.weight")}
    return state_dict


class GPT2KeyMap(KeyMap):
    """A ``KeyMap`` that first brings the checkpoint into the Linear layout, then renames."""

    def convert(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return super().convert(to_linear_layout(state_dict))


GPT2_KEYMAP = GPT2KeyMap(
    {
        # transformers' and FlagAI's names
        "wte.weight": "embeddings.word_embeddings.weight",
        "wpe.weight": "embeddings.position_embeddings.weight",
        "h.{i}.ln_1.{p}": _LAYER + "attention_norm.{p}",
        "h.{i}.attn.c_attn.{p}": _LAYER + "attention.query_key_value.{p}",
        "h.{i}.attn.c_proj.{p}": _LAYER + "attention.dense.{p}",
        "h.{i}.attn.bias": None,  # causal-mask buffers of old transformers checkpoints
        "h.{i}.attn.masked_bias": None,
        "h.{i}.ln_2.{p}": _LAYER + "mlp_norm.{p}",
        "h.{i}.mlp.c_fc.{p}": _LAYER + "mlp.dense_h_to_4h.{p}",
        "h.{i}.mlp.c_proj.{p}": _LAYER + "mlp.dense_4h_to_h.{p}",
        "ln_f.{p}": "final_layernorm.{p}",
        "lm_head.weight": "lm_head.weight",
        # our own names
        "embeddings.word_embeddings.weight": "embeddings.word_embeddings.weight",
        "embeddings.position_embeddings.weight": "embeddings.position_embeddings.weight",
        **{_LAYER + name + ".{p}": _LAYER + name + ".{p}" for name in _OURS_IN_LAYER},
        "final_layernorm.{p}": "final_layernorm.{p}",
    },
    strip_prefixes=("model.transformer.", "transformer.", "model."),
)


def _check_flagai_can_represent(config) -> None:
    if not config.tie_word_embeddings:
        raise ValueError("FlagAI's GPT2Model always computes its logits with the word embeddings; a model with an "
                         "untied lm_head (tie_word_embeddings=False) cannot be written in FlagAI's layout")


GPT2_FLAGAI_LAYOUT = FlagAILayout(
    backbone={
        "embeddings.word_embeddings.weight": "transformer.wte.weight",
        "embeddings.position_embeddings.weight": "transformer.wpe.weight",
        _LAYER + "attention_norm.{p}": "transformer.h.{i}.ln_1.{p}",
        _LAYER + "attention.query_key_value.{p}": "transformer.h.{i}.attn.c_attn.{p}",
        _LAYER + "attention.dense.{p}": "transformer.h.{i}.attn.c_proj.{p}",
        _LAYER + "mlp_norm.{p}": "transformer.h.{i}.ln_2.{p}",
        _LAYER + "mlp.dense_h_to_4h.{p}": "transformer.h.{i}.mlp.c_fc.{p}",
        _LAYER + "mlp.dense_4h_to_h.{p}": "transformer.h.{i}.mlp.c_proj.{p}",
        "final_layernorm.{p}": "transformer.ln_f.{p}",
        "lm_head.weight": "lm_head.weight",  # FlagAI's class has the tensor; its value is the tied embeddings
    },
    classes={"GPT2Model": FlagAIClass("GPT2Model")},
    config_keys={name: name for name in ("vocab_size", "n_embd", "n_layer", "n_head", "n_positions", "n_inner",
                                         "activation_function", "checkpoint_activations")},
    check=_check_flagai_can_represent,
)
