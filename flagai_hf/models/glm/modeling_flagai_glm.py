"""GLM (2021, autoregressive blank infilling) as transformers ``PreTrainedModel``s, following the GLM spec.

Composition (layer -> block -> model)::

    GLMModel = GLMEmbeddings (word + position + block position, 2-D position ids)
               -> N x PreNormBlock(SelfAttention(fused query_key_value), MLP(tanh GELU), LayerNorm, LayerNorm)
               -> final LayerNorm -> logits = h @ word_embeddings^T (tied)
    heads    = GLMModel (as ``self.glm``) + LM loss | choice scoring | [CLS] pooler + classifier

GLM-only pieces live here: the 2-D position embedding, the attention-mask forms (an integer / ``[B]`` "sep", a 2-D
padding mask, or a 4-D mask) and FlagAI's ``mems`` (per-layer hidden states of earlier segments; they are turned into
a K/V cache by running each layer's input norm and projection on them). ``generate()`` uses a K/V cache.
"""

from dataclasses import dataclass

import torch
from torch import nn
from transformers import DynamicCache, GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.utils import ModelOutput

from ...modules.activations import get_activation
from ...modules.attention import SelfAttention, attention_bias
from ...modules.blocks import PreNormBlock
from ...modules.embeddings import check_ids_in_range
from ...modules.flagai_api import FlagAIModelMixin
from ...modules.heads import Pooler
from ...modules.linear import Linear, linear
from ...modules.mlp import MLP
from .configuration_flagai_glm import GLMConfig


@dataclass
class GLMOutput(ModelOutput):
    """``loss``; ``logits`` (B, T, vocab); ``last_hidden_state`` (B, T, h) after the final norm; ``hidden_states``:
    the last hidden state, or with ``output_hidden_states=True`` every layer's input plus the final output;
    ``mems``: FlagAI's memories (L + 1 tensors (B, m + T, h)) when asked for; ``cache``: the K/V cache."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None
    hidden_states: torch.Tensor | tuple[torch.Tensor, ...] | None = None
    mems: list[torch.Tensor] | None = None
    cache: object | None = None


class GLMEmbeddings(nn.Module):
    """``word[ids] + position[pos] + block_position[block]`` with ``position_ids`` (B, 2, T), then dropout.

    Without block position encoding, ``position_ids`` is (B, T). Both tables have ``max_sequence_length + 1`` rows
    (``max_sequence_length`` without block encoding), as in the released checkpoints.
    """

    def __init__(self, config: GLMConfig):
        super().__init__()
        rows = config.max_position_embeddings + (1 if config.block_position_encoding else 0)
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embeddings = nn.Embedding(rows, config.hidden_size)
        self.block_position_embeddings = nn.Embedding(rows, config.hidden_size) \
            if config.block_position_encoding else None
        self.dropout = nn.Dropout(config.embedding_dropout_prob)

    def default_position_ids(self, batch: int, length: int, past_length: int, device) -> torch.Tensor:
        """Positions ``past .. past + T - 1`` and block positions 0: a causal LM layout (FlagAI's "format A")."""
        positions = torch.arange(past_length, past_length + length, device=device).expand(batch, length)
        if self.block_position_embeddings is None:
            return positions
        return torch.stack([positions, torch.zeros_like(positions)], dim=1)  # (B, 2, T)

    def forward(self, input_ids, position_ids, inputs_embeds=None) -> torch.Tensor:  # -> (B, T, h)
        if inputs_embeds is None:
            check_ids_in_range(input_ids, self.word_embeddings.num_embeddings, "input_ids", "vocab_size")
            inputs_embeds = self.word_embeddings(input_ids)
        rows = self.position_embeddings.num_embeddings
        if self.block_position_embeddings is None:
            check_ids_in_range(position_ids, rows, "position_ids", "max_sequence_length")
            return self.dropout(inputs_embeds + self.position_embeddings(position_ids))
        if position_ids.dim() != 3 or position_ids.shape[1] != 2 or position_ids.shape[2] != inputs_embeds.shape[1]:
            raise ValueError(f"GLM position_ids must be (batch, 2, {inputs_embeds.shape[1]}): positions and block "
                             f"positions; got {tuple(position_ids.shape)}")
        check_ids_in_range(position_ids, rows, "position_ids", "max_sequence_length + 1")
        embeddings = inputs_embeds + self.position_embeddings(position_ids[:, 0]) \
            + self.block_position_embeddings(position_ids[:, 1])
        return self.dropout(embeddings)


def glm_attention_mask(attention_mask, batch: int, length: int, memory_length: int, device) -> torch.Tensor:
    """GLM's mask forms as a boolean keep-mask ``(B, 1, T, m + T)``; keys are ``m`` memory/cached positions then the
    ``T`` new ones.

    - ``None``, a number, a 0-d or 1-d ``[B]`` tensor: FlagAI's "sep". Query ``i`` sees every memory key, the new keys
      ``j <= i`` and every ``j < sep`` (so sep = 0 is causal, sep = T fully bidirectional).
    - 2-D ``(B, m + T)``: a key-padding mask (1 = real token), bidirectional.
    - 4-D ``(B, 1, T, >= m + T)`` with 1 = attend: used as is (its last ``m + T`` columns).
    """
    keys = memory_length + length
    if attention_mask is None or isinstance(attention_mask, int) or attention_mask.dim() <= 1:
        sep = torch.as_tensor(0 if attention_mask is None else attention_mask, device=device).reshape(-1)
        if sep.numel() not in (1, batch):
            raise ValueError(f"A 1-D GLM attention_mask holds one sep per sample: expected {batch} values, got "
                             f"{sep.numel()}")
        query = torch.arange(length, device=device)[:, None]
        key = torch.arange(length, device=device)[None, :]
        new_keys = (key <= query) | (key < sep.expand(batch)[:, None, None])  # (B, T, T)
        memory = torch.ones(batch, length, memory_length, dtype=torch.bool, device=device)
        return torch.cat([memory, new_keys], dim=-1)[:, None]  # (B, 1, T, m + T)
    if attention_mask.dim() == 2:
        if attention_mask.shape != (batch, keys):
            raise ValueError(f"A 2-D GLM attention_mask is a key-padding mask of shape (batch, memory + length) = "
                             f"{(batch, keys)}; got {tuple(attention_mask.shape)}")
        return attention_mask.bool()[:, None, None, :].expand(batch, 1, length, keys)
    if attention_mask.dim() == 4:
        if attention_mask.shape[-2] != length or attention_mask.shape[-1] < keys:
            raise ValueError(f"A 4-D GLM attention_mask must be (batch, 1, {length}, >= {keys}); got "
                             f"{tuple(attention_mask.shape)}")
        return attention_mask[..., -keys:].bool()
    raise ValueError("GLM attention_mask must be a sep (int or [batch]), a 2-D padding mask or a 4-D mask; got "
                     f"shape {tuple(attention_mask.shape)}")


class GLMPreTrainedModel(FlagAIModelMixin, PreTrainedModel):
    config_class = GLMConfig
    base_model_prefix = "glm"
    supports_gradient_checkpointing = True
    _no_split_modules = ["PreNormBlock"]
    _supports_sdpa = True
    _supports_flash_attn = False  # GLM's 2-D blank-infilling masks are arbitrary
    accepts_loss_kwargs = False


class GLMModel(GLMPreTrainedModel):
    """GLM: embeddings, pre-LN blocks, final norm and the tied output projection (``output_predict``)."""

    def __init__(self, config: GLMConfig):
        super().__init__(config)
        hidden = config.hidden_size
        self.embeddings = GLMEmbeddings(config)
        self.layers = nn.ModuleList(
            PreNormBlock(
                attention=SelfAttention(config, hidden, config.num_attention_heads,
                                        dropout=config.attention_dropout_prob, layer_idx=index),
                mlp=MLP(hidden, config.intermediate_size, get_activation(config.hidden_act)),
                attention_norm=nn.LayerNorm(hidden, eps=config.layer_norm_eps),
                mlp_norm=nn.LayerNorm(hidden, eps=config.layer_norm_eps),
                dropout=config.output_dropout_prob,
            )
            for index in range(config.num_hidden_layers)
        )
        self.final_layernorm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value):
        self.embeddings.word_embeddings = value

    def mems_to_cache(self, mems: list[torch.Tensor]) -> DynamicCache:
        """FlagAI's memories (L + 1 hidden-state tensors) as the K/V each layer would compute from them."""
        expected = self.config.num_hidden_layers + 1
        if len(mems) != expected or len({tuple(m.shape) for m in mems}) != 1 or mems[0].dim() != 3:
            shapes = [tuple(m.shape) for m in mems]
            raise ValueError(f"mems must be {expected} tensors of one shape (batch, memory_length, "
                             f"{self.config.hidden_size}); got {len(mems)} with shapes {shapes}")
        cache = DynamicCache(config=self.config)
        for index, layer in enumerate(self.layers):
            _, key, value = layer.attention.project(layer.attention_norm(mems[index]))
            cache.update(key, value, index)
        return cache

    def forward(
        self,
        input_ids: torch.Tensor | None = None,  # (B, T)
        *,
        position_ids: torch.Tensor | None = None,  # (B, 2, T): positions, block positions
        attention_mask=None,  # sep (int / [B]), (B, m + T) padding, or (B, 1, T, m + T); see glm_attention_mask
        mems: list[torch.Tensor] | None = None,  # FlagAI memories: L + 1 tensors (B, m, h)
        cache=None,  # a transformers Cache (generate); exclusive with mems
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,  # (B, T) FlagAI's task "lm": CE at every position, no shift
        use_cache: bool | None = None,
        return_memory: bool = False,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> GLMOutput:
        self.flagai_kwargs(kwargs)
        if labels is not None and not self.config.output_predict:
            raise ValueError("labels need the output projection: this GLMModel has config.output_predict=False")
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids or inputs_embeds")
        if mems is not None and cache is not None:
            raise ValueError("Pass mems (FlagAI memories) or cache (a transformers Cache), not both")
        batch, length = input_ids.shape if input_ids is not None else inputs_embeds.shape[:2]
        device = input_ids.device if input_ids is not None else inputs_embeds.device
        if mems is not None and len(mems) > 0:
            if mems[0].shape[0] != batch:
                raise ValueError(f"mems are for batch {mems[0].shape[0]}, the input has batch {batch}")
            cache = self.mems_to_cache(mems)
        elif cache is None and use_cache:
            cache = DynamicCache(config=self.config)
        past_length = cache.get_seq_length() if cache is not None else 0

        if position_ids is None:
            position_ids = self.embeddings.default_position_ids(batch, length, past_length, device)
        hidden_states = self.embeddings(input_ids, position_ids, inputs_embeds)
        keep = glm_attention_mask(attention_mask, batch, length, past_length, device)
        bias = attention_bias(keep, hidden_states.dtype)

        want_mems = return_memory or bool(mems) or self.config.max_memory_length > 0
        layer_inputs = [hidden_states]
        for layer in self.layers:
            hidden_states = layer(hidden_states, bias, cache=cache)
            layer_inputs.append(hidden_states)
        last_hidden_state = self.final_layernorm(hidden_states)
        logits = linear(last_hidden_state, self.embeddings.word_embeddings.weight) \
            if self.config.output_predict else None
        return GLMOutput(
            loss=self.lm_loss(logits, labels) if labels is not None else None,
            logits=logits,
            last_hidden_state=last_hidden_state,
            hidden_states=tuple(layer_inputs[:-1]) + (last_hidden_state,) if output_hidden_states
            else last_hidden_state,
            mems=self._update_mems(layer_inputs, mems, return_memory) if want_mems else None,
            cache=None if mems else cache,
        )

    @staticmethod
    def lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """FlagAI's GLMModel loss: mean cross-entropy of ``logits[:, i]`` against ``labels[:, i]`` over every position
        (labels are already next-token aligned; only -100, torch's default ``ignore_index``, is skipped)."""
        if labels.shape != logits.shape[:2]:
            raise ValueError(f"labels have shape {tuple(labels.shape)}, expected (batch, length) = "
                             f"{tuple(logits.shape[:2])} like input_ids")
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1))

    def _update_mems(self, layer_inputs, mems, return_memory):
        """New memories: old ones + this segment's layer inputs (detached), the last ``max_memory_length`` kept."""
        new = [hidden.detach() for hidden in layer_inputs]
        if mems:
            new = [torch.cat([old, hidden], dim=1) for old, hidden in zip(mems, new)]
        limit = self.config.max_memory_length
        if limit > 0 and not return_memory:
            new = [hidden[:, -limit:] for hidden in new]
        return new


class GLMForConditionalGeneration(GLMPreTrainedModel, GenerationMixin):
    """GLM with the language-model loss and ``generate()`` (blank filling, or causal "format A").

    Losses: the Hub form, ``labels`` (B, T) already next-token aligned (no shift; -100 ignored); or FlagAI's form,
    ``target_ids`` with ``loss_mask`` (mean over ``loss_mask``).

    Generation: pass ``position_ids`` (B, 2, s + G) and ``generation_attention_mask`` (B, 1, s + G, s + G) from the
    tokenizer's ``build_inputs_for_generation`` (the context is encoded once, bidirectionally; each new token sits at
    the mask's position with block positions 1..G), or neither for causal generation with positions 0..n-1.
    """

    def __init__(self, config: GLMConfig):
        super().__init__(config)
        self.glm = GLMModel(config)
        self.post_init()

    def get_output_embeddings(self):
        return None  # the output projection is the word embedding matrix itself

    def forward(self, input_ids=None, *, position_ids=None, attention_mask=None, labels=None, target_ids=None,
                loss_mask=None, mems=None, cache=None, inputs_embeds=None, use_cache=None, return_memory=False,
                output_hidden_states=None, **kwargs) -> GLMOutput:
        kwargs.pop("generation_attention_mask", None)
        output = self.glm(input_ids, position_ids=position_ids, attention_mask=attention_mask, mems=mems,
                          cache=cache, inputs_embeds=inputs_embeds, use_cache=use_cache, return_memory=return_memory,
                          output_hidden_states=output_hidden_states, **kwargs)
        logits = output.logits
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                                               ignore_index=-100)
        elif target_ids is not None:
            losses = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                                 target_ids.reshape(-1), reduction="none")
            weights = (loss_mask if loss_mask is not None else torch.ones_like(target_ids)).reshape(-1).float()
            loss = (losses * weights).sum() / weights.sum()
        output.loss = loss
        return output

    def prepare_inputs_for_generation(self, input_ids, next_sequence_length=None, cache=None, attention_mask=None,
                                      inputs_embeds=None, is_first_iteration=False, position_ids=None,
                                      generation_attention_mask=None, **kwargs):
        """Slice the full-length 2-D positions and 4-D mask to the tokens of this step.

        Without them (causal generation), positions count the non-padding tokens and the mask is causal + padding.
        """
        past = cache.get_seq_length() if cache is not None else 0
        total = input_ids.shape[1]
        new_ids = input_ids[:, past:]
        if generation_attention_mask is not None:
            if generation_attention_mask.shape[-1] < total:
                raise ValueError(f"generation_attention_mask covers {generation_attention_mask.shape[-1]} positions "
                                 f"but generation reached {total}: raise max_gen_length in "
                                 "build_inputs_for_generation or lower max_new_tokens")
            mask = generation_attention_mask[:, :, past:total, :total]
        else:
            padding = attention_mask.bool() if attention_mask is not None else torch.ones_like(input_ids,
                                                                                                dtype=torch.bool)
            causal = torch.ones(total, total, dtype=torch.bool, device=input_ids.device).tril()[past:total]
            mask = (causal[None] & padding[:, None, :])[:, None]  # (B, 1, T_new, total)
        if position_ids is not None and position_ids.dim() == 2:  # transformers' own 1-D positions: make GLM's
            position_ids = None
        if position_ids is not None:
            if position_ids.shape[-1] < total:
                raise ValueError(f"position_ids cover {position_ids.shape[-1]} positions but generation reached "
                                 f"{total}: raise max_gen_length in build_inputs_for_generation")
            positions = position_ids[..., past:total]
        elif attention_mask is not None and self.config.block_position_encoding:
            counted = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, past:total]
            positions = torch.stack([counted, torch.zeros_like(counted)], dim=1)
        else:
            positions = None
        return {"input_ids": new_ids, "position_ids": positions, "attention_mask": mask, "cache": cache,
                "use_cache": kwargs.get("use_cache", True)}

    def _expand_inputs_for_generation(self, expand_size=1, is_encoder_decoder=False, input_ids=None,
                                      **model_kwargs):
        """Beams and multiple returns: GLM's (B, 2, T) ``position_ids`` repeat along the batch (dim 0), where
        transformers would take a 3-D ``position_ids`` for multimodal (3, B, T) ones."""
        position_ids = model_kwargs.pop("position_ids", None)
        input_ids, model_kwargs = super()._expand_inputs_for_generation(expand_size, is_encoder_decoder, input_ids,
                                                                        **model_kwargs)
        if position_ids is not None:
            model_kwargs["position_ids"] = position_ids.repeat_interleave(expand_size, dim=0)
        return input_ids, model_kwargs

    def _update_model_kwargs_for_generation(self, outputs, model_kwargs, is_encoder_decoder=False,
                                            num_new_tokens=1):
        """Keep the full-length ``position_ids`` / ``generation_attention_mask`` as they are (transformers would append
        ``last + 1`` positions, wrong for GLM's mask position)."""
        kept = {key: model_kwargs.pop(key) for key in ("position_ids", "generation_attention_mask")
                if key in model_kwargs}
        model_kwargs = super()._update_model_kwargs_for_generation(outputs, model_kwargs, is_encoder_decoder,
                                                                   num_new_tokens)
        model_kwargs.update(kept)
        return model_kwargs


GLMForSeq2Seq = GLMForConditionalGeneration


class GLMForMultipleChoice(GLMPreTrainedModel):
    """Scores each choice by the sum of its tokens' log-probabilities (the Hub's ``GLMForMultipleChoice``).

    ``choice_ids`` / ``choice_indices``: (B, C, L) — each choice's target token ids and the positions whose logits
    predict them, padded with -100. ``logits`` (B, C) are the summed log-probabilities; ``labels`` (B,) the right
    choice (cross-entropy over choices).
    """

    def __init__(self, config: GLMConfig):
        super().__init__(config)
        self.glm = GLMModel(config)
        self.post_init()

    def forward(self, input_ids=None, *, position_ids=None, attention_mask=None, choice_ids=None,
                choice_indices=None, labels=None, mems=None, output_hidden_states=None, **kwargs):
        if choice_ids is None or choice_indices is None:
            raise ValueError("GLMForMultipleChoice needs choice_ids and choice_indices (see "
                             "build_inputs_for_multiple_choice)")
        if choice_ids.shape != choice_indices.shape or choice_ids.dim() != 3:
            raise ValueError(f"choice_ids and choice_indices must both be (batch, choices, length); got "
                             f"{tuple(choice_ids.shape)} and {tuple(choice_indices.shape)}")
        output = self.glm(input_ids, position_ids=position_ids, attention_mask=attention_mask, mems=mems,
                          output_hidden_states=output_hidden_states, **kwargs)
        log_probs = output.logits.float().log_softmax(-1)  # (B, T, vocab)
        valid = choice_ids != -100
        batch_index = torch.arange(log_probs.shape[0], device=log_probs.device)[:, None, None]
        picked = log_probs[batch_index, choice_indices.clamp(min=0), choice_ids.clamp(min=0)]  # (B, C, L)
        scores = (picked * valid).sum(-1)  # (B, C)
        loss = nn.functional.cross_entropy(scores, labels) if labels is not None else None
        return GLMOutput(loss=loss, logits=scores, last_hidden_state=output.last_hidden_state,
                         hidden_states=output.hidden_states, mems=output.mems)


class GLMForSequenceClassification(GLMPreTrainedModel):
    """Classification from the first token: dropout -> tanh(dense) -> dropout -> Linear (Hub and FlagAI layout).

    The loss is FlagAI's: cross-entropy over ``num_labels`` classes, or with one logit (``num_labels == 1``) binary
    cross-entropy with logits on 0/1 ``labels``."""

    def __init__(self, config: GLMConfig):
        super().__init__(config)
        self.glm = GLMModel(config)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.pooler = Pooler(config.hidden_size)
        self.classifier = Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, *, position_ids=None, attention_mask=None, labels=None, mems=None,
                output_hidden_states=None, **kwargs) -> SequenceClassifierOutput:
        output = self.glm(input_ids, position_ids=position_ids, attention_mask=attention_mask, mems=mems,
                          output_hidden_states=output_hidden_states, **kwargs)
        pooled = self.pooler(self.dropout(output.last_hidden_state))  # (B, h) from token 0
        logits = self.classifier(self.dropout(pooled))  # (B, num_labels)
        loss = None
        if labels is not None and self.config.num_labels == 1:
            loss = nn.functional.binary_cross_entropy_with_logits(logits.squeeze(-1).float(), labels.float())
        elif labels is not None:
            loss = nn.functional.cross_entropy(logits.float(), labels)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=output.hidden_states)
