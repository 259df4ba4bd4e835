"""Configuration of the GPT2 family: FlagAI's GPT2-base-ch / GPT2-base-en / GPT2-xlarge-en and transformers' GPT-2.

Reads transformers' GPT-2 keys (``n_embd``, ``n_layer``, ``n_head``, ``n_positions``, ``n_inner``,
``activation_function``, ``layer_norm_epsilon``, ``resid_pdrop`` / ``embd_pdrop`` / ``attn_pdrop``,
``scale_attn_weights``, ``scale_attn_by_inverse_layer_idx``, ...), which FlagAI's configs share, plus FlagAI's
``checkpoint_activations``, ``hidden_size`` (must equal ``n_embd``) and ``do_layer_norm_before`` (FlagAI's GPT2 block
is always pre-LN, so only ``True`` is accepted). ``attribute_map`` gives transformers' standard names
(``hidden_size``, ``num_hidden_layers``, ``num_attention_heads``, ``max_position_embeddings``). transformers' other
GPT-2 keys (``summary_*`` of the double-heads model, ``reorder_and_upcast_attn``, a mixed-precision option that does
not change fp32 results) are kept as attributes and have no effect; ``add_cross_attention=True`` is refused.

Two FlagAI differences are documented rather than copied: FlagAI ignored the dropout and ``layer_norm_epsilon`` keys
of its config files (always 0.1 / 1e-5) — here they are read when present, with the same defaults; and FlagAI always
treated id 0 as padding — here ``pad_token_id`` (``None`` for the English GPT-2 vocabulary, 0 for GPT2-base-ch's
BERT vocabulary) decides which ids are masked when no ``attention_mask`` is given.
"""

from transformers import PreTrainedConfig

from ...modules.flagai_api import FlagAIConfigMixin


class FlagAIGPT2Config(FlagAIConfigMixin, PreTrainedConfig):
    model_type = "flagai_gpt2"
    keys_to_ignore_at_inference = ["hidden_states", "last_hidden_state", "cache", "past_key_values", "attentions"]
    attribute_map = {
        "hidden_size": "n_embd",
        "num_hidden_layers": "n_layer",
        "num_attention_heads": "n_head",
        "max_position_embeddings": "n_positions",
    }
    required_keys = {
        "vocab_size": (),
        "n_embd": ("hidden_size",),
        "n_layer": ("num_hidden_layers",),
        "n_head": ("num_attention_heads",),
        "n_positions": ("max_position_embeddings",),
    }

    def __init__(
        self,
        vocab_size: int = 50257,
        n_positions: int = 1024,
        n_embd: int | None = None,
        n_layer: int = 12,
        n_head: int = 12,
        n_inner: int | None = None,
        activation_function: str = "gelu_new",
        resid_pdrop: float = 0.1,
        embd_pdrop: float = 0.1,
        attn_pdrop: float = 0.1,
        layer_norm_epsilon: float = 1e-5,
        initializer_range: float = 0.02,
        scale_attn_weights: bool = True,
        scale_attn_by_inverse_layer_idx: bool = False,
        checkpoint_activations: bool = False,
        do_layer_norm_before: bool = True,
        bos_token_id: int | None = 50256,
        eos_token_id: int | None = 50256,
        pad_token_id: int | None = None,
        tie_word_embeddings: bool = True,
        use_cache: bool = True,
        **kwargs,
    ):
        # transformers' standard names (attribute_map) and FlagAI's ``hidden_size`` for the same settings.
        hidden_size = kwargs.pop("hidden_size", None)
        if n_embd is not None and hidden_size is not None and hidden_size != n_embd:
            raise ValueError(f"hidden_size ({hidden_size}) and n_embd ({n_embd}) differ; GPT-2 has one width")
        n_embd = next(width for width in (n_embd, hidden_size, 768) if width is not None)
        n_layer = kwargs.pop("num_hidden_layers", n_layer)
        n_head = kwargs.pop("num_attention_heads", n_head)
        n_positions = kwargs.pop("max_position_embeddings", n_positions)
        if kwargs.get("add_cross_attention"):
            raise ValueError("add_cross_attention=True (GPT-2 as an encoder-decoder's decoder) is not supported")
        if not do_layer_norm_before:
            raise ValueError("do_layer_norm_before=False is not supported: FlagAI's GPT2 block is always pre-LN "
                             "(layer norm before attention and MLP)")

        self.vocab_size = vocab_size
        self.n_positions = n_positions
        self.n_embd = n_embd
        self.n_layer = n_layer
        self.n_head = n_head
        self.n_inner = n_inner
        self.activation_function = activation_function
        self.resid_pdrop = resid_pdrop
        self.embd_pdrop = embd_pdrop
        self.attn_pdrop = attn_pdrop
        self.layer_norm_epsilon = layer_norm_epsilon
        self.initializer_range = initializer_range
        self.scale_attn_weights = scale_attn_weights
        self.scale_attn_by_inverse_layer_idx = scale_attn_by_inverse_layer_idx
        self.checkpoint_activations = checkpoint_activations
        self.do_layer_norm_before = do_layer_norm_before
        self.bos_token_id = bos_token_id
        self.eos_token_id = eos_token_id
        self.pad_token_id = pad_token_id
        self.tie_word_embeddings = tie_word_embeddings
        self.use_cache = use_cache
        self.is_decoder = True
        self.add_cross_attention = False
        super().__init__(**kwargs)
        self.check_sizes({"vocab_size": vocab_size, "n_positions": n_positions, "n_embd": n_embd, "n_layer": n_layer,
                          "n_head": n_head}, heads=("n_head", "n_embd"), layers=("n_layer",))

