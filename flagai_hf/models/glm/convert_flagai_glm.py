"""GLM checkpoint key map: FlagAI's, THUDM's (Megatron, mp = 1) and the Hub's tensor names -> flagai_hf's.

All three share the base names (``word_embeddings``, ``transformer.layers.{i}.input_layernorm``, ...); the Hub's head
classes prefix them with ``glm.``, FlagAI's with ``model.``. There is no output-layer tensor: the logits use the word
embeddings. Targets are the backbone's names without the ``glm.`` prefix, and the heads' names.
"""

from ...keymap import KeyMap

_LAYER = "layers.{i}."
_OURS_IN_LAYER = ("attention_norm", "attention.query_key_value", "attention.dense", "mlp_norm", "mlp.dense_h_to_4h",
                  "mlp.dense_4h_to_h")

GLM_KEYMAP = KeyMap(
    {
        "word_embeddings.weight": "embeddings.word_embeddings.weight",
        "transformer.position_embeddings.weight": "embeddings.position_embeddings.weight",
        "transformer.block_position_embeddings.weight": "embeddings.block_position_embeddings.weight",
        "transformer.layers.{i}.input_layernorm.{p}": _LAYER + "attention_norm.{p}",
        "transformer.layers.{i}.attention.query_key_value.{p}": _LAYER + "attention.query_key_value.{p}",
        "transformer.layers.{i}.attention.dense.{p}": _LAYER + "attention.dense.{p}",
        "transformer.layers.{i}.post_attention_layernorm.{p}": _LAYER + "mlp_norm.{p}",
        "transformer.layers.{i}.mlp.dense_h_to_4h.{p}": _LAYER + "mlp.dense_h_to_4h.{p}",
        "transformer.layers.{i}.mlp.dense_4h_to_h.{p}": _LAYER + "mlp.dense_4h_to_h.{p}",
        "transformer.final_layernorm.{p}": "final_layernorm.{p}",
        "position_ids": None,  # a buffer some Hub revisions saved
        # our own names
        "embeddings.word_embeddings.weight": "embeddings.word_embeddings.weight",
        "embeddings.position_embeddings.weight": "embeddings.position_embeddings.weight",
        "embeddings.block_position_embeddings.weight": "embeddings.block_position_embeddings.weight",
        **{_LAYER + name + ".{p}": _LAYER + name + ".{p}" for name in _OURS_IN_LAYER},
        "final_layernorm.{p}": "final_layernorm.{p}",
        # sequence classification heads: the Hub's (dense, out_proj), FlagAI's (pool_layer, multichoice_head), ours
        "dense.{p}": "pooler.dense.{p}",
        "out_proj.{p}": "classifier.{p}",
        "pool_layer.{p}": "pooler.dense.{p}",
        "multichoice_head.{p}": "classifier.{p}",
        "pooler.dense.{p}": "pooler.dense.{p}",
        "classifier.{p}": "classifier.{p}",
    },
    strip_prefixes=("glm.", "model."),
)
