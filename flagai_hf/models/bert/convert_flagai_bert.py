"""BERT checkpoint key map: transformers' BERT and FlagAI's BERT tensor names -> flagai_hf's.

Sources, after the wrapper prefix (``bert.`` in transformers, ``model.`` in FlagAI's task classes) is removed:
transformers keeps separate ``query`` / ``key`` / ``value`` (fused here into ``query_key_value``, rows [q | k | v]),
FlagAI has the fused tensor already; both name the heads differently (``cls.predictions`` / ``classifier`` vs
``out_layer`` / ``final_dense`` / ``crf_layer.trans`` / ``gp.dense``). Our own names map to themselves, so native
folders go through the same path. Targets are the backbone's names without the ``bert.`` prefix, and the heads' names.
"""

from ...keymap import FlagAIClass, FlagAILayout, KeyMap, Part

_LAYER = "layers.{i}."
_OURS_IN_LAYER = ("attention.query_key_value", "attention.dense", "attention_norm", "mlp.dense_h_to_4h",
                  "mlp.dense_4h_to_h", "mlp_norm")

BERT_KEYMAP = KeyMap(
    {
        # embeddings
        "embeddings.word_embeddings.weight": "embeddings.word_embeddings.weight",
        "embeddings.position_embeddings.weight": "embeddings.position_embeddings.weight",
        "embeddings.token_type_embeddings.weight": "embeddings.token_type_embeddings.weight",
        "embeddings.LayerNorm.{p}": "embeddings.norm.{p}",
        "embeddings.norm.{p}": "embeddings.norm.{p}",
        "embeddings.position_ids": None,  # a non-persistent buffer in old transformers checkpoints
        "embeddings.token_type_ids": None,
        # transformer layers: transformers' and FlagAI's names
        "encoder.layer.{i}.attention.self.query.{p}": Part(_LAYER + "attention.query_key_value.{p}", 0, 3),
        "encoder.layer.{i}.attention.self.key.{p}": Part(_LAYER + "attention.query_key_value.{p}", 1, 3),
        "encoder.layer.{i}.attention.self.value.{p}": Part(_LAYER + "attention.query_key_value.{p}", 2, 3),
        "encoder.layer.{i}.attention.self.query_key_value.{p}": _LAYER + "attention.query_key_value.{p}",
        "encoder.layer.{i}.attention.output.dense.{p}": _LAYER + "attention.dense.{p}",
        "encoder.layer.{i}.attention.output.LayerNorm.{p}": _LAYER + "attention_norm.{p}",
        "encoder.layer.{i}.intermediate.dense.{p}": _LAYER + "mlp.dense_h_to_4h.{p}",
        "encoder.layer.{i}.output.dense.{p}": _LAYER + "mlp.dense_4h_to_h.{p}",
        "encoder.layer.{i}.output.LayerNorm.{p}": _LAYER + "mlp_norm.{p}",
        **{_LAYER + name + ".{p}": _LAYER + name + ".{p}" for name in _OURS_IN_LAYER},
        "pooler.dense.{p}": "pooler.dense.{p}",
        # masked-LM / UniLM head
        "cls.predictions.transform.dense.{p}": "lm_head.dense.{p}",
        "cls.predictions.transform.LayerNorm.{p}": "lm_head.norm.{p}",
        "cls.predictions.decoder.{p}": "lm_head.decoder.{p}",
        "cls.predictions.bias": "lm_head.decoder.bias",
        "cls.seq_relationship.{p}": None,  # next-sentence head: no FlagAI task uses it
        "lm_head.dense.{p}": "lm_head.dense.{p}",
        "lm_head.norm.{p}": "lm_head.norm.{p}",
        "lm_head.decoder.{p}": "lm_head.decoder.{p}",
        # classification / labeling heads
        "classifier.{p}": "classifier.{p}",
        "out_layer.{p}": "classifier.{p}",  # FlagAI BertForClsClassifier
        "final_dense.{p}": "classifier.{p}",  # FlagAI BertForSequenceLabeling(CRF)
        "crf_layer.trans": "crf.transitions",
        "crf.transitions": "crf.transitions",
        "gp.dense.{p}": "global_pointer.dense.{p}",
        "global_pointer.dense.{p}": "global_pointer.dense.{p}",
    },
    strip_prefixes=("bert.", "model."),
)


def _check_flagai_bert(config) -> None:
    if config.intermediate_size != 4 * config.hidden_size:
        raise ValueError(f"FlagAI's BERT always has intermediate_size = 4 * hidden_size ({4 * config.hidden_size}); "
                         f"this model has {config.intermediate_size}, which FlagAI cannot load")


# flagai_hf -> FlagAI's legacy layout (the reverse of BERT_KEYMAP for FlagAI's own names). FlagAI's task classes hold
# the backbone as ``self.model`` and their heads next to it; FlagAI's BertModel always has a pooler, ours only where a
# head uses it (FlagAI loads with strict=False and keeps its random pooler then, unused by those heads).
_FLAGAI_LM_HEAD = {
    "lm_head.dense.{p}": "cls.predictions.transform.dense.{p}",
    "lm_head.norm.{p}": "cls.predictions.transform.LayerNorm.{p}",
    "lm_head.decoder.{p}": "cls.predictions.decoder.{p}",
}
_FLAGAI_LAYER = "encoder.layer.{i}."

BERT_FLAGAI_LAYOUT = FlagAILayout(
    backbone={
        "embeddings.word_embeddings.weight": "embeddings.word_embeddings.weight",
        "embeddings.position_embeddings.weight": "embeddings.position_embeddings.weight",
        "embeddings.token_type_embeddings.weight": "embeddings.token_type_embeddings.weight",
        "embeddings.norm.{p}": "embeddings.LayerNorm.{p}",
        _LAYER + "attention.query_key_value.{p}": _FLAGAI_LAYER + "attention.self.query_key_value.{p}",
        _LAYER + "attention.dense.{p}": _FLAGAI_LAYER + "attention.output.dense.{p}",
        _LAYER + "attention_norm.{p}": _FLAGAI_LAYER + "attention.output.LayerNorm.{p}",
        _LAYER + "mlp.dense_h_to_4h.{p}": _FLAGAI_LAYER + "intermediate.dense.{p}",
        _LAYER + "mlp.dense_4h_to_h.{p}": _FLAGAI_LAYER + "output.dense.{p}",
        _LAYER + "mlp_norm.{p}": _FLAGAI_LAYER + "output.LayerNorm.{p}",
        "pooler.dense.{p}": "pooler.dense.{p}",
    },
    classes={
        "BertModel": FlagAIClass("BertModel"),
        "BertForMaskedLM": FlagAIClass("BertForMaskLM", "model.", _FLAGAI_LM_HEAD),
        "BertForSeq2seq": FlagAIClass("BertForSeq2seq", "model.", _FLAGAI_LM_HEAD),
        "BertForSequenceClassification": FlagAIClass("BertForClsClassifier", "model.", {"classifier.{p}": "out_layer.{p}"}),
        "BertForSequenceLabeling": FlagAIClass("BertForSequenceLabeling", "model.", {"classifier.{p}": "final_dense.{p}"}),
        "BertForSequenceLabelingCRF": FlagAIClass(
            "BertForSequenceLabelingCRF", "model.", {"classifier.{p}": "final_dense.{p}", "crf.transitions": "crf_layer.trans"}
        ),
        "BertForSequenceLabelingGP": FlagAIClass("BertForSequenceLabelingGP", "model.", {"global_pointer.dense.{p}": "gp.dense.{p}"}),
    },
    config_keys={
        "vocab_size": "vocab_size",
        "hidden_size": "hidden_size",
        "num_hidden_layers": "num_hidden_layers",
        "num_attention_heads": "num_attention_heads",
        "intermediate_size": "intermediate_size",
        "hidden_act": "hidden_act",
        "hidden_dropout_prob": "hidden_dropout_prob",
        "attention_probs_dropout_prob": "attention_probs_dropout_prob",
        "max_position_embeddings": "max_position_embeddings",
        "type_vocab_size": "type_vocab_size",
        "initializer_range": "initializer_range",
        "layer_norm_eps": "layernorm_epsilon",  # FlagAI falls back to 1e-6 without it
        "checkpoint_activations": "checkpoint_activations",
        "inner_dim": "inner_dim",
        "num_labels": "class_num",
    },
    check=_check_flagai_bert,
)
