"""Configuration of the BERT / RoBERTa family (FlagAI's RoBERTa-base-ch, BERT-base-en, and transformers' BERT).

Reads transformers' BERT keys and FlagAI's: ``layernorm_epsilon`` (for ``layer_norm_eps``), ``num_layers`` (for
``num_hidden_layers``), ``class_num`` (for ``num_labels``), ``inner_dim`` (GlobalPointer), ``checkpoint_activations``.
Two FlagAI differences are documented rather than copied: FlagAI ignored ``intermediate_size`` (always
``4 * hidden_size``) — here it is read when present and defaults to ``4 * hidden_size``; and FlagAI's layer-norm epsilon
fell back to 1e-6 when a config had neither key — here the fallback is BERT's own 1e-12.
"""

from transformers import PreTrainedConfig

from ...modules.flagai_api import FlagAIConfigMixin


class FlagAIBertConfig(FlagAIConfigMixin, PreTrainedConfig):
    model_type = "flagai_bert"
    keys_to_ignore_at_inference = ["hidden_states", "last_hidden_state", "pooler_output", "cache", "attentions"]
    attribute_map = {"num_layers": "num_hidden_layers"}
    required_keys = {
        "vocab_size": (),
        "hidden_size": (),
        "num_hidden_layers": ("num_layers",),
        "num_attention_heads": (),
    }

    def __init__(
        self,
        vocab_size: int = 30522,
        hidden_size: int = 768,
        num_hidden_layers: int = 12,
        num_attention_heads: int = 12,
        intermediate_size: int | None = None,
        hidden_act: str = "gelu",
        hidden_dropout_prob: float = 0.1,
        attention_probs_dropout_prob: float = 0.1,
        max_position_embeddings: int = 512,
        type_vocab_size: int = 2,
        initializer_range: float = 0.02,
        layer_norm_eps: float | None = None,
        inner_dim: int = 64,
        checkpoint_activations: bool = False,
        pad_token_id: int | None = 0,
        bos_token_id: int | None = None,
        eos_token_id: int | None = None,
        tie_word_embeddings: bool = True,
        use_cache: bool = True,
        is_decoder: bool = False,
        **kwargs,
    ):
        # FlagAI's names for the same settings.
        if "num_layers" in kwargs:
            num_hidden_layers = kwargs.pop("num_layers")
        layernorm_epsilon = kwargs.pop("layernorm_epsilon", None)
        class_num = kwargs.pop("class_num", None)
        if class_num is not None and "id2label" not in kwargs:
            kwargs["num_labels"] = class_num

        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size if intermediate_size is not None else 4 * hidden_size
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.max_position_embeddings = max_position_embeddings
        self.type_vocab_size = type_vocab_size
        self.initializer_range = initializer_range
        self.layer_norm_eps = next(eps for eps in (layer_norm_eps, layernorm_epsilon, 1e-12) if eps is not None)
        self.inner_dim = inner_dim
        self.checkpoint_activations = checkpoint_activations
        self.pad_token_id = pad_token_id
        self.bos_token_id = bos_token_id
        self.eos_token_id = eos_token_id
        self.tie_word_embeddings = tie_word_embeddings
        self.use_cache = use_cache
        self.is_decoder = is_decoder
        super().__init__(**kwargs)
        self.check_sizes({"vocab_size": vocab_size, "hidden_size": hidden_size, "num_hidden_layers": num_hidden_layers,
                          "num_attention_heads": num_attention_heads, "intermediate_size": self.intermediate_size,
                          "max_position_embeddings": max_position_embeddings},
                         heads=("num_attention_heads", "hidden_size"), layers=("num_hidden_layers",))
