"""Configuration of the T5 family (FlagAI's T5-base-en / T5-base-ch (T5-PEGASUS), transformers' t5, t5 v1.1 and mT5).

Reads transformers' T5 keys and FlagAI's (FlagAI used the same names; its ``relative_attention_max_distance`` was
hard-coded to 128, the default here). ``feed_forward_proj`` is ``"<act>"`` (one activation, e.g. ``relu``) or
``"gated-<act>"`` (``act(wi_0 x) * wi_1 x``); ``gated-gelu`` means the tanh GELU (``gelu_new``), as in t5 v1.1 / mT5.

Tied or not: ``tie_word_embeddings=True`` (original T5) shares the LM head with the input embedding and scales the
decoder output by ``d_model ** -0.5`` before it; ``False`` (t5 v1.1, mT5, T5-PEGASUS) keeps a separate ``lm_head`` and
does not scale. ``scale_decoder_outputs`` (written by transformers 5, which always ties the head) overrides the scaling.
A FlagAI legacy config (no ``model_type``) never scales: FlagAI's T5 had no such step, so its checkpoints give FlagAI's
logits.
"""

import copy

from transformers import PreTrainedConfig

from ...modules.flagai_api import FlagAIConfigMixin


class FlagAIT5Config(FlagAIConfigMixin, PreTrainedConfig):
    model_type = "flagai_t5"
    keys_to_ignore_at_inference = ["hidden_states", "cache", "past_key_values", "encoder_last_hidden_state"]
    attribute_map = {
        "hidden_size": "d_model",
        "num_attention_heads": "num_heads",
        "num_hidden_layers": "num_layers",
        "head_dim": "d_kv",
    }
    required_keys = {
        "vocab_size": (),
        "d_model": ("hidden_size",),
        "num_layers": ("num_hidden_layers",),
        "num_heads": ("num_attention_heads",),
    }

    @classmethod
    def from_flagai_dict(cls, config: dict, source: str = "config", **overrides):
        if isinstance(config, dict) and "model_type" not in config and "scale_decoder_outputs" not in config:
            overrides.setdefault("scale_decoder_outputs", False)  # FlagAI's T5 (see the module docstring)
        return super().from_flagai_dict(config, source=source, **overrides)

    def __init__(
        self,
        vocab_size: int = 32128,
        d_model: int = 512,
        d_kv: int = 64,
        d_ff: int = 2048,
        num_layers: int = 6,
        num_decoder_layers: int | None = None,
        num_heads: int = 8,
        relative_attention_num_buckets: int = 32,
        relative_attention_max_distance: int = 128,
        dropout_rate: float = 0.1,
        layer_norm_epsilon: float = 1e-6,
        initializer_factor: float = 1.0,
        feed_forward_proj: str = "relu",
        checkpoint_activations: bool = False,
        pad_token_id: int | None = 0,
        eos_token_id: int | None = 1,
        decoder_start_token_id: int | None = 0,
        tie_word_embeddings: bool = True,
        scale_decoder_outputs: bool | None = None,
        use_cache: bool = True,
        is_encoder_decoder: bool = True,
        **kwargs,
    ):
        # transformers' generic names for the same settings (FlagAI-style configs may use them).
        d_model = kwargs.pop("hidden_size", d_model)
        num_layers = kwargs.pop("num_hidden_layers", num_layers)
        num_heads = kwargs.pop("num_attention_heads", num_heads)
        for derived in ("dense_act_fn", "is_gated_act", "is_decoder"):  # recomputed / set per stack
            kwargs.pop(derived, None)

        parts = feed_forward_proj.split("-")
        if len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated"):
            raise ValueError(
                f"feed_forward_proj={feed_forward_proj!r} is not valid; use an activation name ('relu', 'gelu_new', "
                f"...) or 'gated-<activation>' ('gated-gelu', 'gated-relu', ...)"
            )
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.d_kv = d_kv
        self.d_ff = d_ff
        self.num_layers = num_layers
        self.num_decoder_layers = num_decoder_layers if num_decoder_layers is not None else num_layers
        self.num_heads = num_heads
        self.relative_attention_num_buckets = relative_attention_num_buckets
        self.relative_attention_max_distance = relative_attention_max_distance
        self.dropout_rate = dropout_rate
        self.layer_norm_epsilon = layer_norm_epsilon
        self.initializer_factor = initializer_factor
        self.feed_forward_proj = feed_forward_proj
        self.checkpoint_activations = checkpoint_activations
        self.pad_token_id = pad_token_id
        self.eos_token_id = eos_token_id
        self.decoder_start_token_id = decoder_start_token_id
        self.tie_word_embeddings = tie_word_embeddings
        self.scale_decoder_outputs = scale_decoder_outputs  # None: follow tie_word_embeddings
        self.use_cache = use_cache
        super().__init__(is_encoder_decoder=is_encoder_decoder, **kwargs)
        self.check_sizes({"vocab_size": vocab_size, "d_model": d_model, "d_kv": d_kv, "d_ff": d_ff,
                          "num_layers": num_layers, "num_decoder_layers": self.num_decoder_layers,
                          "num_heads": num_heads}, layers=("num_layers", "num_decoder_layers"))

    def get_text_config(self, decoder=None, encoder=None) -> PreTrainedConfig:
        """With ``decoder=True``, a view whose ``num_hidden_layers`` is the decoder's depth (``generate()`` sizes the
        decoder's KV cache from it)."""
        if decoder and not encoder and self.num_decoder_layers != self.num_layers:
            decoder_config = copy.copy(self)
            decoder_config.num_layers = self.num_decoder_layers
            return decoder_config
        return super().get_text_config(decoder=decoder, encoder=encoder)

    @property
    def scales_decoder_outputs(self) -> bool:
        """Whether the decoder output is multiplied by ``d_model ** -0.5`` before the LM head."""
        if self.scale_decoder_outputs is None:
            return bool(self.tie_word_embeddings)
        return bool(self.scale_decoder_outputs)

    @property
    def is_gated_act(self) -> bool:
        """Whether the feed-forward layer is gated (``wi_0`` / ``wi_1``) rather than one ``wi``."""
        return self.feed_forward_proj.startswith("gated-")

    @property
    def dense_act_fn(self) -> str:
        """The feed-forward activation's name; ``gated-gelu`` is the tanh GELU, as t5 v1.1 was trained with."""
        if self.feed_forward_proj == "gated-gelu":
            return "gelu_new"
        return self.feed_forward_proj.split("-")[-1]
