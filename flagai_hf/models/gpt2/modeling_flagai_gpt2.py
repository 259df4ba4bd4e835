"""GPT-2 as a transformers ``PreTrainedModel``: FlagAI's ``GPT2Model``, a decoder-only language model.

Composition (layer -> block -> model)::

    GPT2Model = TransformerEmbeddings (word + learned position, dropout)
                -> N x PreNormBlock(SelfAttention(fused [q | k | v], causal), MLP(gelu_new), LayerNorm, LayerNorm)
                -> final LayerNorm -> lm_head (tied to the word embeddings)

As in FlagAI, ``GPT2Model`` returns the language-model ``logits`` (B, T, vocab); ``GPT2LMHeadModel`` is the same class
under transformers' name (registered with ``AutoModelForCausalLM``, so ``generate()`` and
``pipeline("text-generation")`` work). ``hidden_states`` is the last hidden state (B, T, h) after the final norm, or
with ``output_hidden_states=True`` the tuple of every block's input plus that final state. ``cache`` is the K/V cache
(a transformers ``DynamicCache``; FlagAI's ``past_key_values`` name is accepted on input). With ``labels`` the loss is
the shifted next-token cross-entropy (labels -100 ignored), as in transformers' ``GPT2LMHeadModel``.

``token_type_ids`` / FlagAI's ``segment_ids`` (which BERT-vocabulary tokenizers of GPT2-base-ch return) are accepted
and ignored: GPT-2 has no token-type embedding, and FlagAI's GPT2 ignored them too.
"""

import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import Cache
from transformers.utils import ModelOutput

from ...modules.activations import get_activation
from ...modules.attention import SelfAttention, cached_key_length, padding_mask_for_generate
from ...modules.blocks import PreNormBlock
from ...modules.checks import GenerationChecks, known_all_true
from ...modules.embeddings import TransformerEmbeddings
from ...modules.flagai_api import FlagAIModelMixin
from ...modules.heads import positions_to_score
from ...modules.kv_cache import ReservedCacheGeneration, reserved_dynamic_cache
from ...modules.linear import Linear
from ...modules.mlp import MLP
from .configuration_flagai_gpt2 import FlagAIGPT2Config


@dataclass
class GPT2Output(ModelOutput):
    """``loss``; ``logits`` (B, T, vocab), or (B, n, vocab) with ``logits_to_keep=n``; ``last_hidden_state`` (B, T, h)
    after the final norm; ``hidden_states``: see the module docstring; ``cache``: the K/V cache when one is used."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None
    hidden_states: torch.Tensor | tuple[torch.Tensor, ...] | None = None
    cache: Cache | None = None


def causal_attention_bias(
    padding_mask: torch.Tensor | None,  # (B, past + T), 1 = real token, or None
    batch: int,
    length: int,
    past_length: int,
    key_length: int,  # key slots attended: past + T, or a static cache's whole length
    dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor:  # (B, 1, T, key_length)
    """The additive causal + padding mask: query ``i`` (at position ``past + i``) sees keys ``j <= past + i`` that are
    not padding (so never a static cache's unwritten slots); masked entries hold the dtype's minimum."""
    keys = past_length + length  # padding_mask is (B, keys): GPT2Model._padding_mask checked it
    query_position = torch.arange(past_length, keys, device=device)[:, None]
    key_position = torch.arange(key_length, device=device)[None, :]
    keep = (key_position <= query_position)[None, None]  # (1, 1, T, key_length)
    if padding_mask is not None:
        padding = nn.functional.pad(padding_mask.bool(), (0, key_length - keys))  # unwritten slots: False
        keep = keep & padding[:, None, None, :]  # (B, 1, T, key_length)
    bias = torch.zeros(keep.shape, dtype=dtype, device=device)
    return bias.masked_fill_(~keep, torch.finfo(dtype).min).expand(batch, 1, length, key_length)


class GPT2PreTrainedModel(FlagAIModelMixin, PreTrainedModel):
    config_class = FlagAIGPT2Config
    base_model_prefix = "gpt2"
    supports_gradient_checkpointing = True
    _no_split_modules = ["PreNormBlock"]
    _supports_sdpa = True
    _supports_flash_attn = False  # masks are additive float tensors
    accepts_loss_kwargs = False  # the loss is a mean; Trainer must scale for gradient accumulation itself

    def _init_weights(self, module):
        super()._init_weights(module)
        # GPT-2's scaled init: the two residual projections of each block get std / sqrt(2 * n_layer).
        # (transformers initialises only modules holding parameters themselves, so this looks at the Linear.)
        layers = getattr(self, "layers", ())
        if isinstance(module, nn.Linear) and any(module is layer.attention.dense or module is layer.mlp.dense_4h_to_h
                                                 for layer in layers):
            std = self.config.initializer_range / math.sqrt(2 * self.config.n_layer)
            init.normal_(module.weight, mean=0.0, std=std)


class GPT2Model(GPT2PreTrainedModel, GenerationChecks, ReservedCacheGeneration, GenerationMixin):
    """GPT-2: embeddings, pre-LN causal blocks, final LayerNorm and the tied output projection (see the module
    docstring)."""

    _tied_weights_keys = {"lm_head.weight": "embeddings.word_embeddings.weight"}

    def __init__(self, config: FlagAIGPT2Config):
        super().__init__(config)
        hidden = config.n_embd
        inner = config.n_inner if config.n_inner is not None else 4 * hidden
        self.embeddings = TransformerEmbeddings(config.vocab_size, hidden, config.n_positions,
                                                dropout=config.embd_pdrop)
        self.layers = nn.ModuleList(
            PreNormBlock(
                attention=self._attention(config, index),
                mlp=MLP(hidden, inner, get_activation(config.activation_function)),
                attention_norm=nn.LayerNorm(hidden, eps=config.layer_norm_epsilon),
                mlp_norm=nn.LayerNorm(hidden, eps=config.layer_norm_epsilon),
                dropout=config.resid_pdrop,
            )
            for index in range(config.n_layer)
        )
        self.final_layernorm = nn.LayerNorm(hidden, eps=config.layer_norm_epsilon)
        self.lm_head = Linear(hidden, config.vocab_size, bias=False)
        self.post_init()

    @staticmethod
    def _attention(config: FlagAIGPT2Config, index: int) -> SelfAttention:
        """Causal self-attention of layer ``index``, with GPT-2's optional scaling variants."""
        attention = SelfAttention(config, config.n_embd, config.n_head, dropout=config.attn_pdrop, is_causal=True,
                                  layer_idx=index)
        if not config.scale_attn_weights:
            attention.scaling = 1.0
        if config.scale_attn_by_inverse_layer_idx:
            attention.scaling /= index + 1
        return attention

    create_masks_for_generate = padding_mask_for_generate  # static caches: the 2-D mask reaches forward as it is

    def get_input_embeddings(self):
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value):
        self.embeddings.word_embeddings = value

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, new_embeddings):
        self.lm_head = new_embeddings

    def forward(
        self,
        input_ids: torch.Tensor | None = None,  # (B, T)
        *,
        attention_mask: torch.Tensor | None = None,  # (B, past + T) padding mask, 1 = real token
        position_ids: torch.Tensor | None = None,  # (B, T); default: past .. past + T - 1
        inputs_embeds: torch.Tensor | None = None,  # (B, T, h), instead of input_ids
        labels: torch.Tensor | None = None,  # (B, T), usually input_ids; -100 = ignored
        cache: Cache | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,  # compute logits only for the last n positions (0 = all)
        token_type_ids: torch.Tensor | None = None,  # accepted and ignored (see the module docstring)
        **kwargs,
    ) -> GPT2Output:
        cache = kwargs.pop("past_key_values", cache)  # FlagAI's (and transformers 4's) name
        self.flagai_kwargs(kwargs, token_type_ids)
        if cache is not None and not isinstance(cache, Cache):
            raise TypeError(f"cache / past_key_values must be a transformers Cache (e.g. the `cache` of an earlier "
                            f"output); got {type(cache).__name__}")
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids or inputs_embeds")
        if cache is None and use_cache:
            cache = reserved_dynamic_cache(self.config)
        past_length = int(cache.get_seq_length()) if cache is not None else 0

        hidden_states = self.embeddings(input_ids, position_ids=position_ids, inputs_embeds=inputs_embeds,
                                        past_length=past_length)
        batch, length = hidden_states.shape[:2]
        key_length = cached_key_length(cache, length)
        attention_mask = self._padding_mask(input_ids, attention_mask, past_length, batch, length)
        bias = None
        # sdpa applies the causal pattern itself when it gets no mask (is_causal) and the queries start at key 0;
        # a single new token may see every cached key (unless a static cache has unwritten slots).
        skippable = key_length == past_length + length and (
            length == 1 or (past_length == 0 and self.config._attn_implementation == "sdpa"))
        if attention_mask is not None or not skippable:
            bias = causal_attention_bias(attention_mask, batch, length, past_length, key_length, hidden_states.dtype,
                                         hidden_states.device)

        layer_inputs = ()
        for layer in self.layers:
            if output_hidden_states:
                layer_inputs += (hidden_states,)
            hidden_states = layer(hidden_states, bias, cache=cache)
        hidden_states = self.final_layernorm(hidden_states)

        logits = self.lm_head(positions_to_score(hidden_states, logits_to_keep))  # (B, T or kept, vocab)
        loss = self.lm_loss(logits, labels) if labels is not None else None
        return GPT2Output(
            loss=loss,
            logits=logits,
            last_hidden_state=hidden_states,
            hidden_states=layer_inputs + (hidden_states,) if output_hidden_states else hidden_states,
            cache=cache,
        )

    def _padding_mask(self, input_ids, attention_mask, past_length, batch, length):
        """The caller's mask; without one, ``input_ids != pad_token_id`` when the config has a pad id that occurs
        (FlagAI's rule, with its pad id 0 made explicit) and nothing is cached; all-ones masks are dropped."""
        if attention_mask is None and input_ids is not None and past_length == 0 \
                and self.config.pad_token_id is not None:
            is_pad = input_ids == self.config.pad_token_id
            if not known_all_true(~is_pad):
                attention_mask = ~is_pad
        if attention_mask is not None and attention_mask.dim() != 2:
            raise ValueError(f"GPT2 builds its own causal mask; attention_mask must be a 2-D padding mask "
                             f"(batch, cached + new tokens), got shape {tuple(attention_mask.shape)}")
        if attention_mask is not None and attention_mask.shape != (batch, past_length + length):
            raise ValueError(f"attention_mask must be (batch, cached + new tokens) = ({batch}, {past_length + length}); "
                             f"got {tuple(attention_mask.shape)}")
        if attention_mask is not None and known_all_true(attention_mask.bool()):
            return None
        return attention_mask

    @staticmethod
    def lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of the logits at position ``i`` against ``labels[i + 1]``, skipping -100 labels."""
        if logits.shape[1] != labels.shape[1]:
            raise ValueError(f"labels cover {labels.shape[1]} positions but logits {logits.shape[1]}: "
                             "compute the loss with logits_to_keep=0")
        # Shift the labels, not the logits: slicing (B, T, vocab) logits would copy them (and their gradient).
        next_labels = nn.functional.pad(labels[:, 1:], (0, 1), value=-100)  # (B, T): the last position has none
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), next_labels.reshape(-1),
                                           ignore_index=-100)


# transformers' name for the same model: GPT2Model already is the language model (FlagAI's meaning).
GPT2LMHeadModel = GPT2Model
