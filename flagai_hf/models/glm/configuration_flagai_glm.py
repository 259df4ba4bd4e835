"""Configuration of GLM (2021, blank infilling): FlagAI's GLM-large-ch / GLM-large-en / GLM-10b-ch and the THUDM Hub
checkpoints (``model_type: "glm"``, not transformers' GLM-4).

Reads FlagAI's keys (``num_layers``, ``max_sequence_length``, ``embedding_dropout_prob``, ``attention_dropout_prob``,
``output_dropout_prob``, ``max_memory_length``, ``checkpoint_activations``, ``block_position_encoding``,
``output_predict``, ``class_num``, ...), which the THUDM Hub configs share, and transformers' standard names
(``num_hidden_layers``, ...). ``hidden_act`` is ``"gelu_tanh"`` by default — the tanh GELU the released checkpoints
were trained with (FlagAI, THUDM) — or ``"gelu"``, the exact GELU of the Hub remote code.

Special ids default to the Chinese layout of the Hub (``cog-pretrain.model``): ``<|endoftext|>`` 50000 (pad, eos),
``[MASK]`` 50003, ``<|startofpiece|>`` 50006, ``<|endofpiece|>`` 50007, ``[sMASK]`` 50008, ``[gMASK]`` 50009.
"""

from transformers import PreTrainedConfig

from ...modules.flagai_api import FlagAIConfigMixin

# Keys in FlagAI / THUDM configs that have no effect here (model parallelism, p-tuning, relative encoding that no
# released checkpoint uses); they are accepted and kept as attributes.
UNUSED_FLAGAI_KEYS = ("parallel_output", "checkpoint_num_layers", "spell_func", "spell_length", "pool_token")


class GLMConfig(FlagAIConfigMixin, PreTrainedConfig):
    model_type = "flagai_glm"
    keys_to_ignore_at_inference = ["hidden_states", "last_hidden_state", "cache", "mems", "attentions"]
    attribute_map = {"num_layers": "num_hidden_layers", "max_sequence_length": "max_position_embeddings"}
    required_keys = {
        "vocab_size": (),
        "hidden_size": (),
        "num_hidden_layers": ("num_layers",),
        "num_attention_heads": (),
        "max_position_embeddings": ("max_sequence_length",),
    }

    def __init__(
        self,
        vocab_size: int = 50048,
        hidden_size: int = 1024,
        num_hidden_layers: int = 24,
        num_attention_heads: int = 16,
        max_position_embeddings: int = 1024,
        hidden_act: str = "gelu_tanh",
        embedding_dropout_prob: float = 0.1,
        attention_dropout_prob: float = 0.1,
        output_dropout_prob: float = 0.1,
        layer_norm_eps: float = 1e-5,
        initializer_range: float = 0.02,
        block_position_encoding: bool = True,
        output_predict: bool = True,
        max_memory_length: int = 0,
        relative_encoding: bool = False,
        attention_scale: float = 1.0,
        checkpoint_activations: bool = False,
        classifier_dropout: float = 0.1,
        pad_token_id: int | None = 50000,
        eos_token_id: int | None = 50007,
        bos_token_id: int | None = None,
        sop_token_id: int = 50006,
        mask_token_ids: tuple[int, ...] | list[int] = (50003, 50008, 50009),
        tie_word_embeddings: bool = True,
        use_cache: bool = True,
        **kwargs,
    ):
        if "num_layers" in kwargs:
            num_hidden_layers = kwargs.pop("num_layers")
        if "max_sequence_length" in kwargs:
            max_position_embeddings = kwargs.pop("max_sequence_length")
        class_num = kwargs.pop("class_num", None)
        if class_num is not None and "id2label" not in kwargs:
            kwargs["num_labels"] = class_num
        if relative_encoding:
            raise ValueError("relative_encoding=True (Transformer-XL attention) is not supported: no released GLM "
                             "checkpoint uses it")
        if attention_scale != 1.0:
            raise ValueError(f"attention_scale={attention_scale} is not supported; released GLM checkpoints use 1.0")

        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.max_position_embeddings = max_position_embeddings
        self.intermediate_size = 4 * hidden_size
        self.hidden_act = hidden_act
        self.embedding_dropout_prob = embedding_dropout_prob
        self.attention_dropout_prob = attention_dropout_prob
        self.output_dropout_prob = output_dropout_prob
        self.layer_norm_eps = layer_norm_eps
        self.initializer_range = initializer_range
        self.block_position_encoding = block_position_encoding
        self.output_predict = output_predict
        self.max_memory_length = max_memory_length
        self.relative_encoding = relative_encoding
        self.attention_scale = attention_scale
        self.checkpoint_activations = checkpoint_activations
        self.classifier_dropout = classifier_dropout
        self.pad_token_id = pad_token_id
        self.eos_token_id = eos_token_id
        self.bos_token_id = bos_token_id
        self.sop_token_id = sop_token_id
        self.mask_token_ids = list(mask_token_ids)
        self.tie_word_embeddings = tie_word_embeddings
        self.use_cache = use_cache
        self.is_decoder = True
        self.add_cross_attention = False
        super().__init__(**kwargs)
        self.check_sizes({"vocab_size": vocab_size, "hidden_size": hidden_size, "num_hidden_layers": num_hidden_layers,
                          "num_attention_heads": num_attention_heads,
                          "max_position_embeddings": max_position_embeddings},
                         heads=("num_attention_heads", "hidden_size"), layers=("num_hidden_layers",))
