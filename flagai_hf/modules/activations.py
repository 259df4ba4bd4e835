"""Activation functions by name.

transformers' ``ACT2FN`` already has every activation the FlagAI families use; this module only adds FlagAI's
names for them and turns an unknown name into an error that lists the known ones.
"""

from torch import nn
from transformers.activations import ACT2FN

# FlagAI's names -> transformers' names for the same function.
FLAGAI_ACTIVATION_ALIASES = {
    "gelu_impl": "gelu_pytorch_tanh",  # FlagAI/GLM: tanh approximation of GELU
    "gelu_tanh": "gelu_pytorch_tanh",
    # GPT-2's name: the same tanh approximation, which transformers writes out in five ops; torch's fused kernel is
    # one (batch-1 decoding: 26 -> 5 us per 3072-wide MLP; values differ by float rounding, <= 5e-7).
    "gelu_new": "gelu_pytorch_tanh",
}


def get_activation(name: str) -> nn.Module:
    """Return the activation module called ``name`` (transformers' names, plus FlagAI's aliases)."""
    key = FLAGAI_ACTIVATION_ALIASES.get(name, name)
    if key not in ACT2FN:
        known = sorted(set(ACT2FN) | set(FLAGAI_ACTIVATION_ALIASES))
        raise ValueError(f"Unknown activation {name!r}; known activations: {', '.join(known)}")
    return ACT2FN[key]
