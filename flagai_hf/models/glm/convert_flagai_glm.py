"""GLM checkpoint key map: FlagAI's, THUDM's (Megatron, mp = 1) and the Hub's tensor names -> flagai_hf's.

All three share the base names (``word_embeddings``, ``transformer.layers.{i}.input_layernorm``, ...); the Hub's head
classes prefix them with ``glm.``, FlagAI's with ``model.``. There is no output-layer tensor: the logits use the word
embeddings. Targets are the backbone's names without the ``glm.`` prefix, and the heads' names.
"""

from transformers.utils import logging

from ...keymap import FlagAIClass, FlagAILayout, KeyMap

logger = logging.get_logger(__name__)

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


def _check_flagai_glm(config) -> None:
    """FlagAI's GLM hard-codes the tanh GELU and layer-norm epsilon 1e-5: other values load, but compute differently."""
    if config.hidden_act != "gelu_tanh" or config.layer_norm_eps != 1e-5:
        logger.warning(f"FlagAI's GLM always uses hidden_act='gelu_tanh' and layer_norm_eps=1e-5; this model has "
                       f"{config.hidden_act!r} and {config.layer_norm_eps}: FlagAI will compute slightly different "
                       "outputs")


# flagai_hf -> FlagAI's legacy layout (the reverse of GLM_KEYMAP for FlagAI's names). FlagAI's GLMForSeq2Seq and its
# cloze classes delegate ``state_dict`` to the backbone (no prefix); GLMForSequenceClassification holds it as
# ``self.model``. FlagAI has no GLMForMultipleChoice: GLMForMultiTokenCloze is its multiple-choice class.
_FLAGAI_LAYER = "transformer.layers.{i}."

GLM_FLAGAI_LAYOUT = FlagAILayout(
    backbone={
        "embeddings.word_embeddings.weight": "word_embeddings.weight",
        "embeddings.position_embeddings.weight": "transformer.position_embeddings.weight",
        "embeddings.block_position_embeddings.weight": "transformer.block_position_embeddings.weight",
        _LAYER + "attention_norm.{p}": _FLAGAI_LAYER + "input_layernorm.{p}",
        _LAYER + "attention.query_key_value.{p}": _FLAGAI_LAYER + "attention.query_key_value.{p}",
        _LAYER + "attention.dense.{p}": _FLAGAI_LAYER + "attention.dense.{p}",
        _LAYER + "mlp_norm.{p}": _FLAGAI_LAYER + "post_attention_layernorm.{p}",
        _LAYER + "mlp.dense_h_to_4h.{p}": _FLAGAI_LAYER + "mlp.dense_h_to_4h.{p}",
        _LAYER + "mlp.dense_4h_to_h.{p}": _FLAGAI_LAYER + "mlp.dense_4h_to_h.{p}",
        "final_layernorm.{p}": "transformer.final_layernorm.{p}",
    },
    classes={
        "GLMModel": FlagAIClass("GLMModel"),
        "GLMForConditionalGeneration": FlagAIClass("GLMForSeq2Seq"),
        "GLMForMultipleChoice": FlagAIClass("GLMForMultiTokenCloze"),
        "GLMForSequenceClassification": FlagAIClass(
            "GLMForSequenceClassification", "model.", {"pooler.dense.{p}": "pool_layer.{p}", "classifier.{p}": "multichoice_head.{p}"}
        ),
    },
    config_keys={
        "num_hidden_layers": "num_layers",
        "vocab_size": "vocab_size",
        "hidden_size": "hidden_size",
        "num_attention_heads": "num_attention_heads",
        "embedding_dropout_prob": "embedding_dropout_prob",
        "attention_dropout_prob": "attention_dropout_prob",
        "output_dropout_prob": "output_dropout_prob",
        "max_position_embeddings": "max_sequence_length",
        "max_memory_length": "max_memory_length",
        "checkpoint_activations": "checkpoint_activations",
        "relative_encoding": "relative_encoding",
        "block_position_encoding": "block_position_encoding",
        "output_predict": "output_predict",
        "attention_scale": "attention_scale",
        "num_labels": "class_num",
    },
    # keys FlagAI's GLMModel reads with config[key] that have no effect here
    config_defaults={"checkpoint_num_layers": 1, "parallel_output": True, "spell_length": None, "spell_func": "lstm"},
    check=_check_flagai_glm,
)
