"""T5 checkpoint key map: transformers' (and FlagAI's, which are the same) T5 tensor names -> flagai_hf's.

transformers / FlagAI name every sub-layer by its position (``block.N.layer.0`` self-attention, ``layer.1``
cross-attention or feed-forward, ``layer.2`` the decoder's feed-forward) and keep separate ``q`` / ``k`` / ``v``;
here self-attention's ``q, k, v`` are fused into ``query_key_value`` (rows [q | k | v]) and cross-attention's ``k, v``
into ``key_value``; the relative position bias, stored in block 0's self-attention there, belongs to the stack
(``encoder.relative_position_bias.weight``). The copies ``encoder.embed_tokens`` / ``decoder.embed_tokens`` of the
shared embedding fold into ``shared`` (they must be equal). Our own names map to themselves.
"""

from ...keymap import FlagAIClass, FlagAILayout, KeyMap, Part, Split


def _stack_rules(stack: str, decoder: bool) -> dict:
    source, target = f"{stack}.block.{{i}}.layer.", f"{stack}.layers.{{i}}."
    feed_forward = source + ("2" if decoder else "1")
    rules = {
        f"{stack}.embed_tokens.weight": "shared.weight",
        f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight":
            f"{stack}.relative_position_bias.weight",
        source + "0.SelfAttention.q.weight": Part(target + "attention.query_key_value.weight", 0, 3),
        source + "0.SelfAttention.k.weight": Part(target + "attention.query_key_value.weight", 1, 3),
        source + "0.SelfAttention.v.weight": Part(target + "attention.query_key_value.weight", 2, 3),
        source + "0.SelfAttention.o.weight": target + "attention.dense.weight",
        source + "0.layer_norm.weight": target + "attention_norm.weight",
        f"{feed_forward}.DenseReluDense.wi.weight": target + "mlp.wi.weight",
        f"{feed_forward}.DenseReluDense.wi_0.weight": target + "mlp.wi_0.weight",
        f"{feed_forward}.DenseReluDense.wi_1.weight": target + "mlp.wi_1.weight",
        f"{feed_forward}.DenseReluDense.wo.weight": target + "mlp.wo.weight",
        f"{feed_forward}.layer_norm.weight": target + "mlp_norm.weight",
        f"{stack}.final_layer_norm.weight": f"{stack}.final_norm.weight",
    }
    ours = ["attention.query_key_value", "attention.dense", "attention_norm", "mlp.wi", "mlp.wi_0", "mlp.wi_1",
            "mlp.wo", "mlp_norm"]
    if decoder:
        rules.update({
            # old checkpoints carry an unused bias table in the first cross-attention
            source + "1.EncDecAttention.relative_attention_bias.weight": None,
            source + "1.EncDecAttention.q.weight": target + "cross_attention.query.weight",
            source + "1.EncDecAttention.k.weight": Part(target + "cross_attention.key_value.weight", 0, 2),
            source + "1.EncDecAttention.v.weight": Part(target + "cross_attention.key_value.weight", 1, 2),
            source + "1.EncDecAttention.o.weight": target + "cross_attention.dense.weight",
            source + "1.layer_norm.weight": target + "cross_attention_norm.weight",
        })
        ours += ["cross_attention.query", "cross_attention.key_value", "cross_attention.dense", "cross_attention_norm"]
    rules.update({target + name + ".weight": target + name + ".weight" for name in ours})
    rules.update({f"{stack}.{name}.weight": f"{stack}.{name}.weight"
                  for name in ("relative_position_bias", "final_norm")})
    return rules


T5_KEYMAP = KeyMap(
    {
        "shared.weight": "shared.weight",
        "lm_head.weight": "lm_head.weight",
        **_stack_rules("encoder", decoder=False),
        **_stack_rules("decoder", decoder=True),
    },
    strip_prefixes=("transformer.", "model."),
)


# flagai_hf -> FlagAI's legacy layout: FlagAI's T5 classes save transformers' names, with the shared embedding also
# under each stack's ``embed_tokens`` and the relative position bias in block 0's self-attention.
def _flagai_stack_rules(stack: str, decoder: bool) -> dict:
    ours, theirs = f"{stack}.layers.{{i}}.", f"{stack}.block.{{i}}.layer."
    feed_forward = theirs + ("2" if decoder else "1")
    rules = {
        f"{stack}.relative_position_bias.weight":
            f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
        ours + "attention.query_key_value.weight":
            Split(tuple(theirs + f"0.SelfAttention.{x}.weight" for x in "qkv")),
        ours + "attention.dense.weight": theirs + "0.SelfAttention.o.weight",
        ours + "attention_norm.weight": theirs + "0.layer_norm.weight",
        **{ours + f"mlp.{name}.weight": f"{feed_forward}.DenseReluDense.{name}.weight"
           for name in ("wi", "wi_0", "wi_1", "wo")},
        ours + "mlp_norm.weight": f"{feed_forward}.layer_norm.weight",
        f"{stack}.final_norm.weight": f"{stack}.final_layer_norm.weight",
    }
    if decoder:
        rules.update({
            ours + "cross_attention.query.weight": theirs + "1.EncDecAttention.q.weight",
            ours + "cross_attention.key_value.weight": Split((theirs + "1.EncDecAttention.k.weight",
                                                              theirs + "1.EncDecAttention.v.weight")),
            ours + "cross_attention.dense.weight": theirs + "1.EncDecAttention.o.weight",
            ours + "cross_attention_norm.weight": theirs + "1.layer_norm.weight",
        })
    return rules


def _check_flagai_can_represent(config) -> None:
    if config.scales_decoder_outputs:
        raise ValueError("FlagAI's T5 never scales the decoder output by d_model ** -0.5 before its LM head; a model "
                         "that does (tied embeddings, or scale_decoder_outputs=True) would give other logits there")
    if config.relative_attention_max_distance != 128:
        raise ValueError(f"FlagAI's T5 hard-codes relative_attention_max_distance=128; this model uses "
                         f"{config.relative_attention_max_distance}")


T5_FLAGAI_LAYOUT = FlagAILayout(
    backbone={
        "shared.weight": ("shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight"),
        **_flagai_stack_rules("encoder", decoder=False),
        **_flagai_stack_rules("decoder", decoder=True),
    },
    classes={
        "T5Model": FlagAIClass("T5Model", heads={"lm_head.weight": "lm_head.weight"}),
        # FlagAI's T5EncoderModel has no decoder: only the shared embedding's encoder copy
        "T5EncoderModel": FlagAIClass("T5EncoderModel", heads={"shared.weight": ("shared.weight",
                                                                                 "encoder.embed_tokens.weight")}),
    },
    config_keys={name: name for name in ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_decoder_layers",
                                         "num_heads", "relative_attention_num_buckets", "dropout_rate",
                                         "layer_norm_epsilon", "feed_forward_proj", "initializer_factor",
                                         "decoder_start_token_id", "pad_token_id", "use_cache",
                                         "checkpoint_activations")},
    check=_check_flagai_can_represent,
)
