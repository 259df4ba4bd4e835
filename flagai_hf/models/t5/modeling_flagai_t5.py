"""The T5 family: ``T5Model`` (FlagAI's name for the encoder-decoder LM, alias ``T5ForConditionalGeneration``) and
``T5EncoderModel``, as transformers ``PreTrainedModel``s.

Composition (layer -> block -> model)::

    encoder = shared embedding -> dropout -> N x PreNormBlock(T5SelfAttention, T5FeedForward, RMSNorm, RMSNorm)
              -> RMSNorm -> dropout
    decoder = shared embedding -> dropout -> M x T5DecoderBlock(self-attn, cross-attn, feed-forward, 3 x RMSNorm)
              -> RMSNorm -> dropout
    T5Model = encoder + decoder + lm_head (tied to the embedding: scaled by d_model ** -0.5 first)

T5 specifics kept in this file: no ``1/sqrt(head_dim)`` in the attention scores (T5 folds it into the initialisation),
no biases, and a learned relative position bias (``RelativePositionBias``: bidirectional buckets in the encoder,
causal ones in the decoder) computed once per stack and added, together with the padding / causal mask, to the scores
of every self-attention layer. Self-attention uses one fused ``query_key_value`` projection; cross-attention a
``query`` and a fused ``key_value`` projection whose keys and values are computed once per generation.

``forward`` returns a ``T5Output`` dict: ``logits``, ``hidden_states`` (the decoder's last hidden state, FlagAI style;
with ``output_hidden_states=True`` transformers' tuple of every decoder layer's output), ``encoder_last_hidden_state``,
``cache`` (transformers 5's name; ``past_key_values`` also works) and ``loss`` given ``labels``.
"""

import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import DynamicCache, EncoderDecoderCache
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput

from ...modules.activations import get_activation
from ...modules.attention import (attention_bias, attention_kernel, cached_key_length, padding_mask_for_generate,
                                  split_heads)
from ...modules.blocks import PreNormBlock
from ...modules.checks import GenerationChecks, check_input_ids
from ...modules.embeddings import check_ids_in_range
from ...modules.flagai_api import FlagAIModelMixin
from ...modules.kv_cache import ReservedCacheGeneration, reserved_dynamic_cache
from ...modules.linear import Linear
from ...modules.norm import RMSNorm
from .configuration_flagai_t5 import FlagAIT5Config


@dataclass
class T5EncoderOutput(ModelOutput):
    """``last_hidden_state`` (B, S, d_model); ``logits``: the same tensor (FlagAI's encoder output);
    ``hidden_states``: the last hidden state, or with ``output_hidden_states=True`` the tuple of every layer's input
    plus the final output."""

    last_hidden_state: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    hidden_states: torch.Tensor | tuple[torch.Tensor, ...] | None = None


@dataclass
class T5Output(ModelOutput):
    """See the module docstring. With ``output_hidden_states=True``, ``decoder_hidden_states`` and
    ``encoder_hidden_states`` are transformers' per-layer tuples (``generate()`` reads them); attention probabilities
    are not returned."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    hidden_states: torch.Tensor | tuple[torch.Tensor, ...] | None = None
    cache: EncoderDecoderCache | None = None
    encoder_last_hidden_state: torch.Tensor | None = None
    decoder_hidden_states: tuple[torch.Tensor, ...] | None = None
    encoder_hidden_states: tuple[torch.Tensor, ...] | None = None
    decoder_attentions: tuple[torch.Tensor, ...] | None = None
    cross_attentions: tuple[torch.Tensor, ...] | None = None
    encoder_attentions: tuple[torch.Tensor, ...] | None = None


# ------------------------------------------------------------------------------------------------------------ layers


def relative_position_bucket(relative_position: torch.Tensor, bidirectional: bool, num_buckets: int,
                             max_distance: int) -> torch.Tensor:
    """The bucket of each offset ``key_position - query_position`` (any shape, long).

    Half of the buckets (all of them when ``bidirectional`` is False, where keys after the query fall in bucket 0)
    hold exact distances ``0 .. n/2 - 1``; the other half cover ``n/2 .. max_distance`` on a log scale; farther offsets
    share the last bucket. Bidirectional buckets use a second, equal set for keys after the query.
    """
    bucket = torch.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        bucket = bucket + (relative_position > 0).long() * num_buckets
        distance = relative_position.abs()
    else:
        distance = (-relative_position).clamp(min=0)
    exact = num_buckets // 2
    log_ratio = torch.log(distance.float() / exact) / math.log(max_distance / exact)
    far = (exact + (log_ratio * (num_buckets - exact)).long()).clamp(max=num_buckets - 1)
    return bucket + torch.where(distance < exact, distance, far)


class RelativePositionBias(nn.Module):
    """A learned scalar per (bucket, head) added to the attention scores: ``weight`` is (num_buckets, heads).

    Args:
        num_buckets, max_distance: see ``relative_position_bucket``.
        num_heads: attention heads.
        bidirectional: True in the encoder (keys before and after the query differ), False in the decoder.
    """

    def __init__(self, num_buckets: int, max_distance: int, num_heads: int, bidirectional: bool):
        super().__init__()
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.bidirectional = bidirectional
        self.weight = nn.Parameter(torch.empty(num_buckets, num_heads))

    def forward(self, query_length: int, key_length: int, past_length: int = 0) -> torch.Tensor:
        """The bias (1, heads, Tq, Tk) for queries at ``past_length ..`` and keys at ``0 .. key_length - 1``."""
        device = self.weight.device
        query_position = torch.arange(past_length, past_length + query_length, device=device)[:, None]
        key_position = torch.arange(key_length, device=device)[None, :]
        buckets = relative_position_bucket(key_position - query_position, self.bidirectional, self.num_buckets,
                                           self.max_distance)  # (Tq, Tk)
        bias = nn.functional.embedding(buckets, self.weight)  # (Tq, Tk, heads)
        return bias.permute(2, 0, 1)[None]  # (1, heads, Tq, Tk)


def _attend(module: nn.Module, query, key, value, attention_mask, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """The configured attention kernel with T5's scaling of 1; returns ``(output (B, Tq, heads, head_dim), probs)``."""
    attention = attention_kernel(module, query)
    return attention(module, query, key, value, attention_mask, dropout=module.dropout if module.training else 0.0,
                     scaling=1.0, **kwargs)


class T5SelfAttention(nn.Module):
    """T5 self-attention: fused ``query_key_value`` (d_model -> 3 * heads * d_kv, no bias), output ``dense``.

    The additive mask it receives already holds the relative position bias (and the causal / padding mask), so the
    scores are ``q k^T + mask``, unscaled.
    """

    def __init__(self, config, d_model: int, num_heads: int, head_dim: int, dropout: float = 0.0,
                 layer_idx: int | None = None):
        super().__init__()
        self.config = config  # ``config._attn_implementation`` selects the kernel
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.dropout = dropout
        self.is_causal = False  # the decoder's causal pattern is in the mask, which is never None here
        self.layer_idx = layer_idx
        self.query_key_value = Linear(d_model, 3 * num_heads * head_dim, bias=False)
        self.dense = Linear(num_heads * head_dim, d_model, bias=False)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, cache=None,
                **kwargs) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, length, _ = hidden_states.shape
        query, key, value = split_heads(self.query_key_value(hidden_states), 3, self.num_heads, self.head_dim)
        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx)  # (B, heads, past + T, head_dim)
        output, probs = _attend(self, query, key, value, attention_mask, **kwargs)
        return self.dense(output.reshape(batch, length, -1)), probs  # (B, T, heads, head_dim) -> (B, T, d_model)


class T5CrossAttention(nn.Module):
    """Decoder-to-encoder attention: ``query`` from the decoder, fused ``key_value`` from the encoder output.

    With an ``EncoderDecoderCache`` the encoder's keys and values are computed on the first call and read back after.
    """

    def __init__(self, config, d_model: int, num_heads: int, head_dim: int, dropout: float = 0.0,
                 layer_idx: int | None = None):
        super().__init__()
        self.config = config
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.dropout = dropout
        self.is_causal = False  # read by sdpa when no mask is given
        self.layer_idx = layer_idx
        self.query = Linear(d_model, num_heads * head_dim, bias=False)
        self.key_value = Linear(d_model, 2 * num_heads * head_dim, bias=False)
        self.dense = Linear(num_heads * head_dim, d_model, bias=False)

    def forward(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor,
                attention_mask: torch.Tensor | None = None, cache: EncoderDecoderCache | None = None,
                **kwargs) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, length, _ = hidden_states.shape
        query = self.query(hidden_states).view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)
        if cache is not None and cache.is_updated.get(self.layer_idx):
            layer = cache.cross_attention_cache.layers[self.layer_idx]
            key, value = layer.keys, layer.values  # (B, heads, S, head_dim)
        else:
            key, value = split_heads(self.key_value(encoder_hidden_states), 2, self.num_heads, self.head_dim)
            if cache is not None:
                key, value = cache.cross_attention_cache.update(key, value, self.layer_idx)
                cache.is_updated[self.layer_idx] = True
        output, probs = _attend(self, query, key, value, attention_mask, **kwargs)
        return self.dense(output.reshape(batch, length, -1)), probs


class T5FeedForward(nn.Module):
    """``wo(dropout(act(wi x)))``, or gated (t5 v1.1 / mT5) ``wo(dropout(act(wi_0 x) * wi_1 x))``; no biases."""

    def __init__(self, d_model: int, d_ff: int, activation: nn.Module, gated: bool, dropout: float = 0.0):
        super().__init__()
        self.gated = gated
        if gated:
            self.wi_0 = Linear(d_model, d_ff, bias=False)
            self.wi_1 = Linear(d_model, d_ff, bias=False)
        else:
            self.wi = Linear(d_model, d_ff, bias=False)
        self.activation = activation
        self.dropout = nn.Dropout(dropout)
        self.wo = Linear(d_ff, d_model, bias=False)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:  # (B, T, d_model) -> (B, T, d_model)
        if self.gated:
            inner = self.activation(self.wi_0(hidden_states)) * self.wi_1(hidden_states)
        else:
            inner = self.activation(self.wi(hidden_states))
        return self.wo(self.dropout(inner))


# ------------------------------------------------------------------------------------------------------------ blocks


class T5DecoderBlock(GradientCheckpointingLayer):
    """Pre-norm decoder block: self-attention, cross-attention, feed-forward, each ``x + dropout(layer(norm(x)))``."""

    def __init__(self, attention: nn.Module, cross_attention: nn.Module, mlp: nn.Module, attention_norm: nn.Module,
                 cross_attention_norm: nn.Module, mlp_norm: nn.Module, dropout: float = 0.0):
        super().__init__()
        self.attention_norm = attention_norm
        self.attention = attention
        self.cross_attention_norm = cross_attention_norm
        self.cross_attention = cross_attention
        self.mlp_norm = mlp_norm
        self.mlp = mlp
        self.dropout = nn.Dropout(dropout)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None,
                encoder_hidden_states: torch.Tensor, encoder_attention_mask: torch.Tensor | None,
                cache: EncoderDecoderCache | None = None) -> torch.Tensor:  # (B, T, h) -> (B, T, h)
        self_cache = cache.self_attention_cache if cache is not None else None
        attended, _ = self.attention(self.attention_norm(hidden_states), attention_mask, cache=self_cache)
        hidden_states = hidden_states + self.dropout(attended)
        attended, _ = self.cross_attention(self.cross_attention_norm(hidden_states), encoder_hidden_states,
                                           encoder_attention_mask, cache=cache)
        hidden_states = hidden_states + self.dropout(attended)
        return hidden_states + self.dropout(self.mlp(self.mlp_norm(hidden_states)))


# ------------------------------------------------------------------------------------------------------------ stacks


def _feed_forward(config: FlagAIT5Config) -> T5FeedForward:
    return T5FeedForward(config.d_model, config.d_ff, get_activation(config.dense_act_fn), config.is_gated_act,
                         config.dropout_rate)


class T5Stack(nn.Module):
    """The encoder (bidirectional) or decoder (causal, with cross-attention) layers over given embeddings.

    The embedding table is the model's ``shared``: the stack takes ``inputs_embeds``.
    """

    main_input_name = "input_ids"  # what generate() feeds the model's encoder side (read as ``model.encoder``'s)

    def __init__(self, config: FlagAIT5Config, is_decoder: bool):
        super().__init__()
        self.is_decoder = is_decoder
        d_model, eps, dropout = config.d_model, config.layer_norm_epsilon, config.dropout_rate
        self.relative_position_bias = RelativePositionBias(
            config.relative_attention_num_buckets, config.relative_attention_max_distance, config.num_heads,
            bidirectional=not is_decoder)

        def attention(cls, index):
            return cls(config, d_model, config.num_heads, config.d_kv, dropout=dropout, layer_idx=index)

        if is_decoder:
            self.layers = nn.ModuleList(
                T5DecoderBlock(attention(T5SelfAttention, index), attention(T5CrossAttention, index),
                               _feed_forward(config), RMSNorm(d_model, eps), RMSNorm(d_model, eps),
                               RMSNorm(d_model, eps), dropout=dropout)
                for index in range(config.num_decoder_layers)
            )
        else:
            self.layers = nn.ModuleList(
                PreNormBlock(attention(T5SelfAttention, index), _feed_forward(config), RMSNorm(d_model, eps),
                             RMSNorm(d_model, eps), dropout=dropout)
                for index in range(config.num_layers)
            )
        self.final_norm = RMSNorm(d_model, eps)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        inputs_embeds: torch.Tensor,  # (B, T, d_model)
        attention_mask: torch.Tensor | None = None,  # (B, past + T), 1 = attend
        encoder_hidden_states: torch.Tensor | None = None,  # (B, S, d_model), decoder only
        encoder_attention_mask: torch.Tensor | None = None,  # (B, S)
        cache: EncoderDecoderCache | None = None,  # decoder only
        output_hidden_states: bool = False,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """The final hidden states (B, T, d_model) and, if asked, the tuple of every layer's input plus the output."""
        batch, length = inputs_embeds.shape[:2]
        dtype = inputs_embeds.dtype
        self_cache = cache.self_attention_cache if cache is not None else None
        past = int(self_cache.get_seq_length()) if self_cache is not None else 0
        keys = cached_key_length(self_cache, length)  # past + T, or a static cache's whole length
        keep = None
        if attention_mask is not None:
            if attention_mask.dim() != 2 or attention_mask.shape != (batch, past + length):
                raise ValueError(
                    f"attention_mask must be (batch, {past + length}) = ({batch}, {past + length}) for {past} cached and "
                    f"{length} new positions; "
                    f"got shape {tuple(attention_mask.shape)}"
                )
            padding = nn.functional.pad(attention_mask.bool(), (0, keys - past - length))  # unwritten slots: False
            keep = padding[:, None, None, :]  # (B, 1, 1, keys)
        if self.is_decoder:
            query_position = torch.arange(past, past + length, device=inputs_embeds.device)[:, None]
            causal = torch.arange(keys, device=inputs_embeds.device)[None, :] <= query_position
            keep = causal[None, None] if keep is None else keep & causal  # (B or 1, 1, T, keys)
        mask = attention_bias(keep, dtype)  # additive, or None when nothing is masked
        bias = self.relative_position_bias(length, keys, past).to(dtype)  # (1, heads, T, keys)
        if mask is not None:
            bias = bias + mask
        encoder_bias = attention_bias(encoder_attention_mask, dtype) if self.is_decoder else None

        hidden_states = self.dropout(inputs_embeds)
        all_hidden_states = () if output_hidden_states else None
        for layer in self.layers:
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            if self.is_decoder:
                hidden_states = layer(hidden_states, bias, encoder_hidden_states, encoder_bias, cache=cache)
            else:
                hidden_states = layer(hidden_states, bias)
        hidden_states = self.dropout(self.final_norm(hidden_states))
        if output_hidden_states:
            all_hidden_states += (hidden_states,)
        return hidden_states, all_hidden_states


# ------------------------------------------------------------------------------------------------------------ models


class T5PreTrainedModel(FlagAIModelMixin, PreTrainedModel):
    config_class = FlagAIT5Config
    base_model_prefix = "transformer"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["PreNormBlock", "T5DecoderBlock"]
    _supports_sdpa = True
    _supports_flash_attn = False  # the position bias is an additive float mask
    accepts_loss_kwargs = False

    def _init_weights(self, module):
        """T5's initialisation (std scaled by ``initializer_factor``): it stands in for the missing 1/sqrt(d_kv)."""
        config = self.config
        factor, d_model, d_kv, heads = config.initializer_factor, config.d_model, config.d_kv, config.num_heads
        if isinstance(module, RMSNorm):
            init.ones_(module.weight)
        elif isinstance(module, RelativePositionBias):
            init.normal_(module.weight, std=factor * d_model**-0.5)
        elif isinstance(module, T5SelfAttention):
            _normal_rows(module.query_key_value.weight,
                         [factor * (d_model * d_kv) ** -0.5, factor * d_model**-0.5, factor * d_model**-0.5])
            init.normal_(module.dense.weight, std=factor * (heads * d_kv) ** -0.5)
        elif isinstance(module, T5CrossAttention):
            init.normal_(module.query.weight, std=factor * (d_model * d_kv) ** -0.5)
            init.normal_(module.key_value.weight, std=factor * d_model**-0.5)
            init.normal_(module.dense.weight, std=factor * (heads * d_kv) ** -0.5)
        elif isinstance(module, T5FeedForward):
            for name in ("wi", "wi_0", "wi_1"):
                if hasattr(module, name):
                    init.normal_(getattr(module, name).weight, std=factor * d_model**-0.5)
            init.normal_(module.wo.weight, std=factor * config.d_ff**-0.5)
        elif isinstance(module, (T5Model, T5EncoderModel)):
            init.normal_(module.shared.weight, std=factor)
            if isinstance(module, T5Model) and not config.tie_word_embeddings:
                init.normal_(module.lm_head.weight, std=factor)

    def _embed(self, input_ids, inputs_embeds, name: str) -> torch.Tensor:
        """Look ``input_ids`` up in the shared table (checking the vocabulary range), or pass ``inputs_embeds``."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError(f"Pass exactly one of {name} or the matching inputs_embeds")
        check_input_ids(input_ids, inputs_embeds, name)
        if inputs_embeds is not None:
            return inputs_embeds
        check_ids_in_range(input_ids, self.shared.num_embeddings, name, "vocab_size")
        return self.shared(input_ids)

    def encode(self, input_ids=None, attention_mask=None, inputs_embeds=None, output_hidden_states=None,
               **kwargs) -> T5EncoderOutput:
        """Run the encoder: ``last_hidden_state`` (B, S, d_model)."""
        hidden_states, all_hidden_states = self.encoder(
            self._embed(input_ids, inputs_embeds, "input_ids"), attention_mask,
            output_hidden_states=bool(output_hidden_states))
        return T5EncoderOutput(last_hidden_state=hidden_states, logits=hidden_states,
                               hidden_states=all_hidden_states if output_hidden_states else hidden_states)


def _normal_rows(weight: torch.Tensor, stds: list[float]) -> None:
    """Initialise the equal row blocks of a fused projection with their own std (unless already loaded)."""
    if getattr(weight, "_is_hf_initialized", False):
        return
    with torch.no_grad():
        for block, std in zip(weight.chunk(len(stds), dim=0), stds):
            block.normal_(mean=0.0, std=std)


class _EncoderEntry(nn.Module):
    """What ``get_encoder()`` returns for ``generate()``: the shared embedding and the encoder, called with ids."""

    main_input_name = "input_ids"

    def __init__(self, model: T5PreTrainedModel):
        super().__init__()
        self.shared = model.shared
        self.encoder = model.encoder
        self._encode = model.encode

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, output_hidden_states=None,
                **kwargs) -> T5EncoderOutput:
        return self._encode(input_ids, attention_mask, inputs_embeds, output_hidden_states)


def shift_right(labels: torch.Tensor, decoder_start_token_id: int | None, pad_token_id: int | None) -> torch.Tensor:
    """Decoder inputs from labels: ``[start, labels[:-1]]`` with -100 replaced by ``pad_token_id``."""
    if decoder_start_token_id is None or pad_token_id is None:
        raise ValueError("Shifting labels into decoder_input_ids needs config.decoder_start_token_id and pad_token_id")
    shifted = labels.new_full(labels.shape, decoder_start_token_id)
    shifted[:, 1:] = labels[:, :-1]
    return shifted.masked_fill(shifted == -100, pad_token_id)


class T5Model(T5PreTrainedModel, GenerationChecks, ReservedCacheGeneration, GenerationMixin):
    """T5 encoder-decoder with the LM head (FlagAI's ``T5Model``; transformers' ``T5ForConditionalGeneration``).

    ``labels`` (B, L) give the mean cross-entropy over positions whose label is not -100; without
    ``decoder_input_ids`` they are shifted right behind ``decoder_start_token_id`` to make them.
    """

    _tied_weights_keys = {"lm_head.weight": "shared.weight"}

    def __init__(self, config: FlagAIT5Config):
        super().__init__(config)
        self.shared = nn.Embedding(config.vocab_size, config.d_model)
        self.encoder = T5Stack(config, is_decoder=False)
        self.decoder = T5Stack(config, is_decoder=True)
        self.lm_head = Linear(config.d_model, config.vocab_size, bias=False)
        self.post_init()

    create_masks_for_generate = padding_mask_for_generate  # static caches: 2-D decoder masks reach forward as they are

    def get_input_embeddings(self):
        return self.shared

    def set_input_embeddings(self, value):
        self.shared = value

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, new_embeddings):
        self.lm_head = new_embeddings

    def get_encoder(self, modality=None):
        return _EncoderEntry(self)

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return shift_right(labels, self.config.decoder_start_token_id, self.config.pad_token_id)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,  # (B, S)
        *,
        attention_mask: torch.Tensor | None = None,  # (B, S), 1 = attend
        decoder_input_ids: torch.Tensor | None = None,  # (B, T)
        decoder_attention_mask: torch.Tensor | None = None,  # (B, past + T)
        encoder_outputs=None,  # a T5EncoderOutput / tuple whose first item is (B, S, d_model)
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,  # (B, T), -100 = ignored
        cache: EncoderDecoderCache | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> T5Output:
        if cache is None:
            cache = kwargs.pop("past_key_values", None)
        self.flagai_kwargs({k: v for k, v in kwargs.items() if k not in ("decoder_position_ids",)})
        if encoder_outputs is None:
            encoder_outputs = self.encode(input_ids, attention_mask, inputs_embeds, output_hidden_states)
        encoder_hidden_states = encoder_outputs[0]

        if labels is not None and decoder_input_ids is None and decoder_inputs_embeds is None:
            decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)
        if decoder_input_ids is None and decoder_inputs_embeds is None:
            raise ValueError("T5Model needs decoder_input_ids (or decoder_inputs_embeds, or labels to shift right)")
        if use_cache is None:
            use_cache = self.config.use_cache and not self.training
        if cache is None and use_cache:
            cache = EncoderDecoderCache(reserved_dynamic_cache(), DynamicCache())  # self-attention, cross-attention
        elif cache is not None and not isinstance(cache, EncoderDecoderCache):
            raise TypeError(f"T5Model's cache must be an EncoderDecoderCache, got {type(cache).__name__}")

        hidden_states, all_hidden_states = self.decoder(
            self._embed(decoder_input_ids, decoder_inputs_embeds, "decoder_input_ids"), decoder_attention_mask,
            encoder_hidden_states, attention_mask, cache=cache, output_hidden_states=bool(output_hidden_states))
        head_input = hidden_states * self.config.d_model**-0.5 if self.config.scales_decoder_outputs \
            else hidden_states
        logits = self.lm_head(head_input)  # (B, T, vocab)

        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                               labels.to(logits.device).reshape(-1), ignore_index=-100)
        encoder_all = encoder_outputs.hidden_states if output_hidden_states and isinstance(
            encoder_outputs, T5EncoderOutput) else None
        return T5Output(
            loss=loss,
            logits=logits,
            hidden_states=all_hidden_states if output_hidden_states else hidden_states,
            cache=cache,
            encoder_last_hidden_state=encoder_hidden_states,
            decoder_hidden_states=all_hidden_states,
            encoder_hidden_states=encoder_all,
        )


T5ForConditionalGeneration = T5Model


class T5EncoderModel(T5PreTrainedModel):
    """The T5 encoder alone (sentence embeddings, classification backbones): ``last_hidden_state`` / ``logits``."""

    def __init__(self, config: FlagAIT5Config):
        super().__init__(config)
        self.shared = nn.Embedding(config.vocab_size, config.d_model)
        self.encoder = T5Stack(config, is_decoder=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.shared

    def set_input_embeddings(self, value):
        self.shared = value

    def forward(self, input_ids: torch.Tensor | None = None, *, attention_mask: torch.Tensor | None = None,
                inputs_embeds: torch.Tensor | None = None, output_hidden_states: bool | None = None,
                **kwargs) -> T5EncoderOutput:
        self.flagai_kwargs(kwargs)
        return self.encode(input_ids, attention_mask, inputs_embeds, output_hidden_states)
