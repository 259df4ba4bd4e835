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
from transformers import DynamicCache, GenerationConfig, GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.utils import ModelOutput, logging

from ...modules.activations import get_activation
from ...modules.attention import SelfAttention, attention_bias, cached_key_length
from ...modules.blocks import PreNormBlock
from ...modules.checks import GenerationChecks, check_input_ids, check_values
from ...modules.embeddings import check_ids_in_range
from ...modules.flagai_api import FlagAIModelMixin, folder_file
from ...modules.heads import Pooler, positions_to_score
from ...modules.kv_cache import ReservedCacheGeneration, reserved_dynamic_cache
from ...modules.linear import Linear, linear
from ...modules.mlp import MLP
from .configuration_flagai_glm import GLMConfig

logger = logging.get_logger(__name__)


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


def glm_attention_mask(attention_mask, batch: int, length: int, memory_length: int, device,
                       key_length: int | None = None) -> torch.Tensor:
    """GLM's mask forms as a boolean keep-mask ``(B, 1, T, key_length)``; keys are ``m`` memory/cached positions, the
    ``T`` new ones, then (a ``StaticCache``: ``key_length`` > ``m + T``) the cache's unwritten slots, never attended.

    - ``None``, a number, a 0-d or 1-d ``[B]`` tensor: FlagAI's "sep". Query ``i`` sees every memory key, the new keys
      ``j <= i`` and every ``j < sep`` (so sep = 0 is causal, sep = T fully bidirectional).
    - 2-D ``(B, m + T)``: a key-padding mask (1 = real token), bidirectional.
    - 4-D ``(B, 1, T, key_length)`` or ``(B, 1, T, >= m + T)`` with 1 = attend: used as is, or its last ``m + T``
      columns.
    Only the first and last forms have shapes that do not depend on ``m``, so a compiled decode step over a static
    cache takes one of them (``generate()`` passes the 4-D one).
    """
    keys = memory_length + length
    key_length = keys if key_length is None else key_length
    if attention_mask is None or isinstance(attention_mask, int) or attention_mask.dim() <= 1:
        if isinstance(attention_mask, int) and not 0 <= attention_mask <= length:
            raise ValueError(f"A GLM attention_mask given as an integer sep must be in 0..{length} (the input "
                             f"length); got {attention_mask}")
        sep = torch.as_tensor(0 if attention_mask is None else attention_mask, device=device).reshape(-1)
        if sep.numel() not in (1, batch):
            raise ValueError(f"A 1-D GLM attention_mask holds one sep per sample: expected {batch} values, got "
                             f"{sep.numel()}")
        if isinstance(attention_mask, torch.Tensor):
            check_values(((sep >= 0) & (sep <= length)).all(),
                         f"A GLM attention_mask given as sep (int or [batch]) must be in 0..{length} (the input length)")
        query = torch.arange(length, device=device)[:, None]
        # A key's index among the new keys: memory keys are negative (seen by every query), unwritten slots >= T.
        key = torch.arange(key_length, device=device)[None, :] - memory_length
        return ((key <= query) | (key < sep.expand(batch)[:, None, None]))[:, None]  # (B, 1, T, key_length)
    if attention_mask.dim() == 4 and attention_mask.shape[0] in (1, batch) and attention_mask.shape[-2] == length \
            and attention_mask.shape[-1] == key_length:
        return attention_mask.bool()
    if attention_mask.dim() == 2:
        if attention_mask.shape != (batch, keys):
            raise ValueError(f"A 2-D GLM attention_mask is a key-padding mask of shape (batch, memory + length) = "
                             f"{(batch, keys)}; got {tuple(attention_mask.shape)}")
        keep = attention_mask.bool()[:, None, None, :].expand(batch, 1, length, keys)
    elif attention_mask.dim() == 4:
        if attention_mask.shape[0] not in (1, batch) or attention_mask.shape[-2] != length \
                or attention_mask.shape[-1] < keys:
            raise ValueError(f"A 4-D GLM attention_mask must be ({batch}, 1, {length}, >= {keys}); got "
                             f"{tuple(attention_mask.shape)}")
        keep = attention_mask[..., -keys:].bool()
    else:
        raise ValueError("GLM attention_mask must be a sep (int or [batch]), a 2-D padding mask or a 4-D mask; got "
                         f"shape {tuple(attention_mask.shape)}")
    return nn.functional.pad(keep, (0, key_length - keys), value=False) if key_length > keys else keep


class GLMGenerationConfig(GenerationConfig):
    """The generation config a GLM model starts with: its config's ids, and ``eos_token_id`` = ``[eop, eos]``
    (`GLMConfig.generation_eos_token_ids`), so a filled span stops at ``<|endofpiece|>`` while the config and the
    tokenizer share one eos. Saved as a plain ``generation_config.json``."""

    @classmethod
    def from_model_config(cls, model_config) -> GenerationConfig:
        generation_config = super().from_model_config(model_config)
        if isinstance(model_config, dict):
            model_config = GLMConfig.from_dict(model_config)
        stop = model_config.generation_eos_token_ids
        if stop:
            generation_config.eos_token_id = stop if len(stop) > 1 else stop[0]
            generation_config._original_object_hash = hash(generation_config)  # these are the defaults, not edits
        return generation_config


class GLMPreTrainedModel(FlagAIModelMixin, PreTrainedModel):
    config_class = GLMConfig
    generation_config_class = GLMGenerationConfig
    base_model_prefix = "glm"
    supports_gradient_checkpointing = True
    _no_split_modules = ["PreNormBlock"]
    _supports_sdpa = True
    _supports_flash_attn = False  # GLM's 2-D blank-infilling masks are arbitrary
    accepts_loss_kwargs = False

    def adjust_generation_fn(self, generation_config, from_auto_class, from_pipeline, pretrained_model_name_or_path,
                             *args, **kwargs):
        """transformers' loading of the generation config; a folder without ``generation_config.json`` (a saved
        ``GLMModel``, a FlagAI or THUDM folder) gets GLM's defaults (`GLMGenerationConfig`), not a copy of
        ``config.json``, which has no place for the eop stop id."""
        super().adjust_generation_fn(generation_config, from_auto_class, from_pipeline, pretrained_model_name_or_path,
                                     *args, **kwargs)
        if generation_config is None and pretrained_model_name_or_path is not None and folder_file(
                pretrained_model_name_or_path, "generation_config.json", kwargs) is None:
            self.generation_config = GLMGenerationConfig.from_model_config(self.config)


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
        cache = reserved_dynamic_cache(self.config)
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
        logits_to_keep: int | torch.Tensor = 0,  # compute logits only for the last n positions (0 = all)
        **kwargs,
    ) -> GLMOutput:
        self.flagai_kwargs(kwargs)
        if labels is not None and not self.config.output_predict:
            raise ValueError("labels need the output projection: this GLMModel has config.output_predict=False")
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids or inputs_embeds")
        if mems is not None and cache is not None:
            raise ValueError("Pass mems (FlagAI memories) or cache (a transformers Cache), not both")
        batch, length = check_input_ids(input_ids, inputs_embeds)
        device = input_ids.device if input_ids is not None else inputs_embeds.device
        if mems is not None and len(mems) > 0:
            if mems[0].shape[0] != batch:
                raise ValueError(f"mems are for batch {mems[0].shape[0]}, the input has batch {batch}")
            cache = self.mems_to_cache(mems)
        elif cache is None and use_cache:
            cache = reserved_dynamic_cache(self.config)
        past_length = int(cache.get_seq_length()) if cache is not None else 0
        key_length = cached_key_length(cache, length)  # past + T, or a static cache's whole length

        if position_ids is None:
            position_ids = self.embeddings.default_position_ids(batch, length, past_length, device)
        hidden_states = self.embeddings(input_ids, position_ids, inputs_embeds)
        keep = glm_attention_mask(attention_mask, batch, length, past_length, device, key_length)
        bias = attention_bias(keep, hidden_states.dtype)

        want_mems = return_memory or bool(mems) or self.config.max_memory_length > 0
        layer_inputs = [hidden_states]
        for layer in self.layers:
            hidden_states = layer(hidden_states, bias, cache=cache)
            layer_inputs.append(hidden_states)
        last_hidden_state = self.final_layernorm(hidden_states)
        scored = positions_to_score(last_hidden_state, logits_to_keep)
        logits = linear(scored, self.embeddings.word_embeddings.weight) if self.config.output_predict else None
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
        (labels are already next-token aligned; only -100, torch's default ``ignore_index``, is skipped), in float32
        or wider."""
        if labels.shape != logits.shape[:2]:
            raise ValueError(f"labels have shape {tuple(labels.shape)}, expected (batch, length) = "
                             f"{tuple(logits.shape[:2])} like input_ids (a loss needs every position's logits: "
                             "logits_to_keep=0)")
        logits = logits.reshape(-1, logits.shape[-1])
        return nn.functional.cross_entropy(logits.to(torch.promote_types(logits.dtype, torch.float32)),
                                           labels.reshape(-1))

    def _update_mems(self, layer_inputs, mems, return_memory):
        """New memories: old ones + this segment's layer inputs (detached), the last ``max_memory_length`` kept."""
        new = [hidden.detach() for hidden in layer_inputs]
        if mems:
            new = [torch.cat([old, hidden], dim=1) for old, hidden in zip(mems, new)]
        limit = self.config.max_memory_length
        if limit > 0 and not return_memory:
            new = [hidden[:, -limit:] for hidden in new]
        return new


def seq2seq_blank_filling(input_ids: torch.Tensor, attention_mask: torch.Tensor, config: GLMConfig,
                          span_length: int, span_start: torch.Tensor | None = None):
    """GLM's blank-filling layout of a plain seq2seq source batch: what ``build_inputs_for_generation`` lays out for
    the same sources right-padded (GLM spec §8), built from either pad side with shapes that depend only on the input
    shapes (no host sync, one ``torch.compile`` graph).

    A source is taken as the GLM tokenizer writes it, ``[CLS] text <end>``. One without a mask token
    (``config.mask_token_ids``: ``[MASK], [sMASK], [gMASK]``) gets ``[gMASK]`` before its last real token — the
    layout of ``tokenizer(text + "[gMASK]")``, of `GLMSeq2SeqCollator` and of the text2text pipeline. Columns are the
    ``s`` source columns as given, one slot holding that ``[gMASK]`` (a hidden pad where the source has a mask), then
    ``L = span_length`` span columns. Real tokens take positions ``0..`` in order (padding skipped); every span column
    sits at the position of the row's first mask token, with block positions ``1, 2, ..`` counted from ``span_start``
    (B,) (0 by default; later for left-padded targets). Every query sees the real context; span column ``j`` also sees
    span columns ``span_start..j``.

    Returns the context ids (B, s + 1), ``position_ids`` (B, 2, s + 1 + L) and the boolean keep-mask
    (B, 1, s + 1 + L, s + 1 + L).
    """
    batch, length = input_ids.shape
    device = input_ids.device
    real = attention_mask.bool()  # (B, s)
    is_mask = torch.isin(input_ids, torch.tensor(config.mask_token_ids, device=device)) & real
    appended = ~is_mask.any(-1)  # (B,) rows that get [gMASK]
    counted = real.long().cumsum(-1) - 1  # (B, s) index of each real token among the real ones
    last = (real.long().sum(-1) - 1).clamp(min=0)  # (B,) that of the last real token: the appended [gMASK]'s position
    positions = (counted + ((counted == last[:, None]) & appended[:, None]).long()).clamp(min=0)  # the end moves on
    first_mask = positions.gather(1, is_mask.long().argmax(-1, keepdim=True))[:, 0]  # argmax: the first mask token
    mask_position = torch.where(appended, last, first_mask)  # (B,)

    pad = config.pad_token_id if config.pad_token_id is not None else 0
    slot = torch.where(appended, config.mask_token_ids[-1], pad)[:, None]  # (B, 1)
    context_ids = torch.cat([input_ids, slot], dim=1)  # (B, s + 1)
    context_keys = torch.cat([real, appended[:, None]], dim=1)  # (B, s + 1)

    columns = torch.arange(span_length, device=device)[None]  # (1, L)
    start = torch.zeros(batch, 1, dtype=torch.long, device=device) if span_start is None else span_start[:, None]
    in_span = columns >= start  # (B, L)
    positions = torch.cat([positions, last[:, None], mask_position[:, None].expand(batch, span_length)], dim=1)
    blocks = torch.cat([torch.zeros(batch, length + 1, dtype=torch.long, device=device),
                        (columns - start + 1).clamp(min=1)], dim=1)
    position_ids = torch.stack([positions, blocks], dim=1)  # (B, 2, s + 1 + L)

    total = length + 1 + span_length
    sees_context = context_keys[:, None, :].expand(batch, total, length + 1)  # (B, T, s + 1)
    causal = torch.ones(span_length, span_length, dtype=torch.bool, device=device).tril()
    span_keys = torch.cat([torch.zeros(batch, length + 1, span_length, dtype=torch.bool, device=device),
                           causal[None] & in_span[:, None, :]], dim=1)  # (B, T, L)
    keep = torch.cat([sees_context, span_keys], dim=2)[:, None]  # (B, 1, T, T)
    return context_ids, position_ids, keep


class GLMForConditionalGeneration(GLMPreTrainedModel, GenerationChecks, ReservedCacheGeneration, GenerationMixin):
    """GLM with the language-model loss and ``generate()``, fed in either of two forms.

    **Seq2seq form** (what a standard seq2seq script builds, e.g. with ``DataCollatorForSeq2Seq``): ``input_ids``
    (B, s) is the source only, ``attention_mask`` its 2-D (B, s) padding mask (either pad side), and ``labels``
    (B, L) the target ids, padded with -100 on either side (``tokenizer(text_target=...)`` of a GLM tokenizer gives
    ``target + <|endofpiece|>``). The model lays the batch out for blank filling itself (`seq2seq_blank_filling`):
    ``[gMASK]`` before the end token of a source without ``[MASK]`` / ``[sMASK]`` / ``[gMASK]``, 2-D positions, the span
    ``[sop] + labels[:-1]`` at the first mask's position, causal within itself and seeing the whole source. The loss
    equals the tokenizer's ``build_inputs_for_generation(source, targets=...)`` layout; ``logits`` are the span's
    (B, L, vocab), aligned with ``labels`` (hidden states cover the built layout).

    **GLM's own layout**: anything else — ``position_ids`` (B, 2, T) given, or ``attention_mask`` as a sep (int /
    [B]) or a 4-D mask, or no ``attention_mask``, or ``mems`` / ``cache``. ``labels`` (B, T) are then next-token
    aligned with ``input_ids`` (no shift; -100 ignored), or FlagAI's ``target_ids`` with ``loss_mask`` (mean over
    ``loss_mask``). So the forms are told apart by: ``labels`` with a 2-D ``attention_mask`` and no ``position_ids``
    is the seq2seq form; without ``labels`` the input runs as given.

    Generation, likewise: ``generate(input_ids, attention_mask)`` on a plain source fills the blank as above and
    returns, as an encoder-decoder does, only the target side: ``[sop]`` then the new tokens (``max_length`` /
    ``min_length`` count the ``[sop]``), the tokens ``build_inputs_for_generation`` + ``generate`` give. With
    ``position_ids`` (B, 2, s + G) and/or ``generation_attention_mask`` (B, 1, s + G, s + G) from
    ``build_inputs_for_generation`` (or written by hand, e.g. FlagAI's causal "format A": positions ``0..``, block
    positions 0, no mask), the input runs as given and the output holds the prompt, as a decoder-only model's does.
    """

    def __init__(self, config: GLMConfig):
        super().__init__(config)
        self.glm = GLMModel(config)
        self.post_init()

    def get_output_embeddings(self):
        return None  # the output projection is the word embedding matrix itself

    @staticmethod
    def is_seq2seq_batch(input_ids, position_ids, attention_mask, labels, target_ids, mems, cache) -> bool:
        """Whether a forward call holds the seq2seq form (see the class docstring): ``labels`` with a 2-D
        ``attention_mask``, no ``position_ids`` and nothing of GLM's own layout."""
        return (labels is not None and input_ids is not None and position_ids is None and target_ids is None
                and not mems and cache is None and torch.is_tensor(attention_mask) and attention_mask.dim() == 2)

    def forward(self, input_ids=None, *, position_ids=None, attention_mask=None, labels=None, target_ids=None,
                loss_mask=None, mems=None, cache=None, inputs_embeds=None, use_cache=None, return_memory=False,
                output_hidden_states=None, logits_to_keep=0, **kwargs) -> GLMOutput:
        kwargs.pop("generation_attention_mask", None)
        if self.is_seq2seq_batch(input_ids, position_ids, attention_mask, labels, target_ids, mems, cache):
            return self._seq2seq_forward(input_ids, attention_mask, labels, output_hidden_states, **kwargs)
        if labels is not None and input_ids is not None and labels.shape != input_ids.shape:
            raise ValueError(f"labels have shape {tuple(labels.shape)} and input_ids {tuple(input_ids.shape)}: in "
                             "GLM's own layout labels are next-token aligned with input_ids; for a seq2seq batch "
                             "(source input_ids, target labels) pass the source's 2-D attention_mask and no "
                             "position_ids")
        output = self.glm(input_ids, position_ids=position_ids, attention_mask=attention_mask, mems=mems,
                          cache=cache, inputs_embeds=inputs_embeds, use_cache=use_cache, return_memory=return_memory,
                          output_hidden_states=output_hidden_states, logits_to_keep=logits_to_keep, **kwargs)
        logits = output.logits
        if target_ids is not None and labels is None and not (isinstance(logits_to_keep, int) and logits_to_keep == 0):
            raise ValueError("target_ids need every position's logits: pass logits_to_keep=0 with a loss")
        loss = None
        if labels is not None:
            loss = GLMModel.lm_loss(logits, labels)
        elif target_ids is not None:
            losses = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                                 target_ids.reshape(-1), reduction="none")
            weights = (loss_mask if loss_mask is not None else torch.ones_like(target_ids)).reshape(-1).float()
            loss = (losses * weights).sum() / weights.sum()
        output.loss = loss
        return output

    def generation_position_limit(self, model_kwargs: dict) -> int:
        """The most positions ``generate()`` can feed: the given ``position_ids`` / ``generation_attention_mask``
        (blank filling: ``build_inputs_for_generation`` sized them), else the position table (causal generation counts
        positions 0, 1, ...)."""
        given = [model_kwargs[key].shape[-1] for key in ("position_ids", "generation_attention_mask")
                 if isinstance(model_kwargs.get(key), torch.Tensor) and model_kwargs[key].dim() >= 3]
        if given:
            return min(given)
        return self.config.max_position_embeddings + (1 if self.config.block_position_encoding else 0)

    def _seq2seq_forward(self, input_ids, attention_mask, labels, output_hidden_states, **kwargs) -> GLMOutput:
        """The seq2seq form: source ``input_ids`` / ``attention_mask`` (B, s), target ``labels`` (B, L)."""
        batch, length = input_ids.shape
        if attention_mask.shape != input_ids.shape or labels.dim() != 2 or labels.shape[0] != batch:
            raise ValueError(f"A seq2seq batch is input_ids and attention_mask (batch, source length) and labels "
                             f"(batch, target length); got input_ids {tuple(input_ids.shape)}, attention_mask "
                             f"{tuple(attention_mask.shape)}, labels {tuple(labels.shape)}")
        span = labels.shape[1]
        start = (labels != -100).long().argmax(-1)  # (B,) the first target token: leading -100 are left padding
        context_ids, position_ids, keep = seq2seq_blank_filling(input_ids, attention_mask, self.config, span, start)
        pad = self.config.pad_token_id if self.config.pad_token_id is not None else 0
        previous = torch.cat([torch.full_like(labels[:, :1], pad), labels[:, :-1]], dim=1)  # (B, L) labels moved right
        previous = previous.masked_fill(previous == -100, pad)
        columns = torch.arange(span, device=labels.device)[None]
        span_ids = torch.where(columns == start[:, None], self.config.sop_token_id, previous)  # [sop] + labels[:-1]
        output = self.glm(torch.cat([context_ids, span_ids], dim=1), position_ids=position_ids, attention_mask=keep,
                          use_cache=False, output_hidden_states=output_hidden_states, **kwargs)
        output.logits = output.logits[:, length + 1:]  # (B, L, vocab): the span, aligned with labels
        output.loss = GLMModel.lm_loss(output.logits, labels)
        return output

    def generate(self, inputs=None, generation_config=None, **kwargs):
        """``GenerationMixin.generate``; on a plain source (no ``position_ids`` / ``generation_attention_mask``) it
        fills the blank and returns ``[sop]`` + the new tokens (see the class docstring)."""
        source = inputs if inputs is not None else kwargs.get("input_ids")
        if (source is None or kwargs.get("position_ids") is not None or kwargs.get("inputs_embeds") is not None
                or kwargs.get("generation_attention_mask") is not None):
            return super().generate(inputs, generation_config, **kwargs)
        for name in ("input_ids", "position_ids", "generation_attention_mask"):  # absent or None
            kwargs.pop(name, None)
        kwargs.pop("labels", None)  # Seq2SeqTrainer(predict_with_generate) passes the batch's labels along
        attention_mask = kwargs.pop("attention_mask", None)
        if attention_mask is None:
            attention_mask = torch.ones_like(source)
        if source.dim() != 2 or attention_mask.shape != source.shape:
            raise ValueError(f"generate() on a plain source takes input_ids and attention_mask (batch, source "
                             f"length); got {tuple(source.shape)} and {tuple(attention_mask.shape)}")
        if not self.config.mask_token_ids or self.config.sop_token_id is None:
            raise ValueError("generate() on a plain source fills a [gMASK] blank, but this GLMConfig has no "
                             f"mask_token_ids ({self.config.mask_token_ids}) or sop_token_id "
                             f"({self.config.sop_token_id}); set them, or pass position_ids (and "
                             "generation_attention_mask) for GLM's explicit layout")
        span = self._new_token_budget(generation_config, kwargs)
        context_ids, position_ids, keep = seq2seq_blank_filling(source, attention_mask, self.config, span)
        prompt = torch.cat([context_ids, torch.full_like(source[:, :1], self.config.sop_token_id)], dim=1)
        output = super().generate(prompt, generation_config, position_ids=position_ids, generation_attention_mask=keep,
                                  attention_mask=keep[:, 0, prompt.shape[1] - 1, :prompt.shape[1]].long(), **kwargs)
        context = context_ids.shape[1]
        if isinstance(output, torch.Tensor):
            return output[:, context:]
        output.sequences = output.sequences[:, context:]
        return output

    def _new_token_budget(self, generation_config, kwargs: dict) -> int:
        """The most tokens a plain-source ``generate()`` may add, set as ``max_new_tokens`` in ``kwargs``.

        As for an encoder-decoder's decoder, a ``max_length`` / ``min_length`` counts the first output token (here
        ``[sop]``), not the source: they become ``max_new_tokens`` / ``min_new_tokens`` of one less."""
        config = generation_config if generation_config is not None else self.generation_config

        def setting(name):
            return kwargs[name] if kwargs.get(name) is not None else getattr(config, name, None)

        defaults = config._get_default_generation_params()
        budget = setting("max_new_tokens")
        if budget is None:
            budget = (setting("max_length") or defaults["max_length"]) - 1
        if setting("min_new_tokens") is None and (setting("min_length") or 0) > 1:
            kwargs["min_new_tokens"] = setting("min_length") - 1
        kwargs.pop("max_length", None)
        kwargs.pop("min_length", None)
        if budget < 1:
            raise ValueError(f"generate() on a plain source needs room for a new token: max_new_tokens={budget} "
                             "(max_length counts the [sop] that starts the output)")
        room = self.config.max_position_embeddings  # block positions 1 .. budget are fed: the table has room + 1 rows
        if self.config.block_position_encoding and budget > room:
            logger.warning(f"{type(self).__name__}.generate stops at the block position table ({room + 1} "
                           f"positions): [sop] + {room} new tokens at most, not the {budget} asked for")
            budget = room
        kwargs["max_new_tokens"] = budget
        return budget

    def prepare_inputs_for_generation(self, input_ids, next_sequence_length=None, cache=None, attention_mask=None,
                                      inputs_embeds=None, is_first_iteration=False, position_ids=None,
                                      generation_attention_mask=None, **kwargs):
        """Slice the full-length 2-D positions and 4-D mask to the tokens of this step.

        Without them (causal generation), positions count the non-padding tokens and the mask is causal + padding.
        """
        past = int(cache.get_seq_length()) if cache is not None else 0
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
        key_slots = cached_key_length(cache, total - past)  # total, or a static cache's whole length
        if key_slots > total:  # unwritten static-cache slots: masked, and the mask's width stays fixed while decoding
            mask = nn.functional.pad(mask, (0, key_slots - total), value=False)
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
                "use_cache": kwargs.get("use_cache", True), "logits_to_keep": kwargs.get("logits_to_keep", 0)}

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
    """Scores each choice by the sum of its tokens' log-probabilities as the span that fills a blank (the Hub's
    ``GLMForMultipleChoice``; FlagAI's ``GLMForMultiTokenCloze`` without length penalty). Two input forms:

    - Standard (``AutoModelForMultipleChoice``, run_swag): ``input_ids`` / ``attention_mask`` (B, C, T), each row the
      tokenizer's pair ``[CLS] context [SEP] choice <end>`` right-padded (``tokenizer(contexts, choices)``; ``<end>``
      is ``<|endoftext|>`` in Chinese, ``[SEP]`` in English). Each row is read the GLM way (`blank_filling_rows`):
      ``[CLS] context [MASK] <end>`` bidirectionally, then ``[sop] choice[:-1]`` at the mask's position with block
      positions ``1..n``, causal — the same numbers as the Hub form with the context ``context + "[MASK]"``.
    - Hub / FlagAI: ``input_ids`` (B, T), ``position_ids``, ``attention_mask`` and ``choice_ids`` / ``choice_indices``
      (B, C, L) from the tokenizer's ``build_inputs_for_multiple_choice`` (all choices in one row): each choice's
      target ids and the positions whose logits predict them, padded with -100.

    ``logits`` (B, C) are the summed log-probabilities; ``labels`` (B,) the right choice (cross-entropy over choices).
    """

    def __init__(self, config: GLMConfig):
        super().__init__(config)
        self.glm = GLMModel(config)
        self.post_init()

    def forward(self, input_ids=None, *, position_ids=None, attention_mask=None, choice_ids=None,
                choice_indices=None, labels=None, mems=None, output_hidden_states=None, token_type_ids=None,
                **kwargs) -> GLMOutput:
        if choice_ids is None and choice_indices is None and input_ids is not None and input_ids.dim() == 3:
            batch, num_choices, length = input_ids.shape
            if position_ids is not None:
                raise ValueError("The standard (batch, choices, length) form lays out GLM's position_ids itself; "
                                 "pass input_ids and attention_mask only")
            ids, positions, sep, targets = self.blank_filling_rows(input_ids.reshape(-1, length), attention_mask)
            output = self.glm(ids, position_ids=positions, attention_mask=sep, mems=mems,
                              output_hidden_states=output_hidden_states, **kwargs)
            log_probs = output.logits.float().log_softmax(-1)  # (B * C, T, vocab)
            picked = log_probs.gather(-1, targets.clamp(min=0)[..., None])[..., 0]  # (B * C, T)
            scores = (picked * (targets != -100)).sum(-1).reshape(batch, num_choices)  # (B, C)
        else:
            if choice_ids is None or choice_indices is None:
                raise ValueError("GLMForMultipleChoice takes input_ids (batch, choices, length) with attention_mask "
                                 "(tokenizer(contexts, choices) per choice), or 2-D input_ids with choice_ids and "
                                 "choice_indices (build_inputs_for_multiple_choice); got input_ids of shape "
                                 f"{None if input_ids is None else tuple(input_ids.shape)} and "
                                 f"choice_ids {'given' if choice_ids is not None else 'missing'}, choice_indices "
                                 f"{'given' if choice_indices is not None else 'missing'}")
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
        if labels is not None and (labels.dim() != 1 or labels.shape[0] != scores.shape[0]):
            raise ValueError(f"labels must be (batch,) = ({scores.shape[0]},), the index of the right choice; got "
                             f"{tuple(labels.shape)}")
        loss = nn.functional.cross_entropy(scores, labels) if labels is not None else None
        return GLMOutput(loss=loss, logits=scores, last_hidden_state=output.last_hidden_state,
                         hidden_states=output.hidden_states, mems=output.mems)

    def blank_filling_rows(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None):
        """Pair rows ``[CLS] context [SEP] choice <end> pad..`` (N, T) rewritten in place as GLM reads a choice:
        ``[CLS] context [MASK] <end>`` then ``[sop] choice[:-1]`` (the same length), with

        - ``position_ids`` (N, 2, T): ``0..s+1`` then the mask's position ``s``; block positions 0 then ``1..n``;
        - ``sep`` (N,): the ``s + 2`` tokens of the context part are read bidirectionally, the choice causally;
        - ``targets`` (N, T): the choice token each position predicts (``choice[k]`` at the position of ``[sop]`` /
          ``choice[k-1]``), -100 elsewhere.

        ``s`` is the index of the first ``[SEP]`` (``config.sep_token_id``) before the row's last real token."""
        config = self.config
        needed = {"sep_token_id": config.sep_token_id, "sop_token_id": config.sop_token_id,
                  "mask_token_ids": config.mask_token_ids}
        missing = [name for name, value in needed.items() if value in (None, [])]
        if missing:
            raise ValueError(f"The (batch, choices, length) form needs config.{', config.'.join(missing)} (the "
                             "tokenizer's [SEP], <|startofpiece|> and [MASK] ids)")
        rows, length = input_ids.shape
        device = input_ids.device
        if attention_mask is None:
            real = torch.ones_like(input_ids, dtype=torch.bool)
        else:
            if attention_mask.shape[:-1].numel() != rows or attention_mask.shape[-1] != length:
                raise ValueError(f"attention_mask must be (batch, choices, length) like input_ids; got "
                                 f"{tuple(attention_mask.shape)} for {rows} rows of length {length}")
            real = attention_mask.reshape(rows, length).bool()
        last = real.sum(-1) - 1  # (N,) index of the end token
        index = torch.arange(length, device=device).expand(rows, length)  # (N, T)
        if not torch.equal(real, index <= last[:, None]):
            raise ValueError("GLMForMultipleChoice needs right-padded rows (attention_mask 1..1 0..0): pad with "
                             "padding_side='right'")
        is_sep = (input_ids == config.sep_token_id) & (index < last[:, None])
        if not bool(is_sep.any(-1).all()) or bool((last < 2).any()):
            raise ValueError(f"Every row of the (batch, choices, length) form must be a pair [CLS] context [SEP] "
                             f"choice <end>, as tokenizer(contexts, choices) writes it; a row has no [SEP] "
                             f"(config.sep_token_id={config.sep_token_id}) before its last token")
        sep = is_sep.int().argmax(-1)  # (N,) first [SEP]
        if bool((last - sep < 2).any()):
            raise ValueError("A row of the (batch, choices, length) form has an empty choice after its [SEP]")
        s, e = sep[:, None], last[:, None]
        shifted = input_ids.gather(1, (index - 2).clamp(min=0))  # choice[k-1] sits 2 to the right of where it was
        end = input_ids.gather(1, e).expand(rows, length)
        ids = torch.where(index < s, input_ids, shifted)
        ids = torch.where(index == s, config.mask_token_ids[0], ids)
        ids = torch.where(index == s + 1, end, ids)
        ids = torch.where(index == s + 2, config.sop_token_id, ids)
        ids = torch.where(index > e, input_ids, ids)  # padding stays
        clipped = torch.minimum(index, e)  # padding repeats the last position
        positions = torch.where(clipped < s + 2, clipped, s)
        blocks = torch.where(clipped < s + 2, 0, clipped - s - 1)
        previous = input_ids.gather(1, (index - 1).clamp(min=0))
        targets = torch.where((index >= s + 2) & (index <= e), previous, -100)
        return ids, torch.stack([positions, blocks], dim=1), sep + 2, targets


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
