"""The BERT / RoBERTa family: ``BertModel`` and FlagAI's task heads, as transformers ``PreTrainedModel``s.

Composition (layer -> block -> model)::

    BertModel = TransformerEmbeddings -> N x PostNormBlock(SelfAttention, MLP, LayerNorm, LayerNorm) -> Pooler
    heads     = BertModel (as ``self.bert``) + LMPredictionHead | Linear | Linear + CRF | GlobalPointer

Every forward takes keyword arguments (FlagAI's ``segment_ids`` is accepted for ``token_type_ids``) and returns a
``ModelOutput`` with ``logits``, ``hidden_states`` and, given ``labels``, ``loss``. ``hidden_states`` is the last
layer's output ``(B, T, h)`` as in FlagAI; with ``output_hidden_states=True`` it is transformers' tuple of every
layer's output instead. When no ``attention_mask`` is given, positions holding ``pad_token_id`` are masked, as FlagAI
did.
"""

from dataclasses import dataclass

import torch
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import (
    CausalLMOutputWithPast,
    MaskedLMOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from transformers.utils import ModelOutput

from ...modules.activations import get_activation
from ...modules.attention import SelfAttention, attention_bias
from ...modules.checks import GenerationChecks, check_input_ids, check_mask_shape, known_all_true
from ...modules.blocks import PostNormBlock
from ...modules.crf import CRF
from ...modules.embeddings import TransformerEmbeddings
from ...modules.flagai_api import FlagAIModelMixin
from ...modules.global_pointer import GlobalPointer, decode_spans, global_pointer_loss
from ...modules.heads import LMPredictionHead, Pooler
from ...modules.linear import Linear
from ...modules.mlp import MLP
from .configuration_flagai_bert import FlagAIBertConfig


@dataclass
class BertModelOutput(ModelOutput):
    """``last_hidden_state`` (B, T, h); ``pooler_output`` (B, h); ``logits``: the last hidden state again (FlagAI's
    ``BertForEmbedding`` output); ``hidden_states``: see the module docstring; ``cache``: the KV cache, if used."""

    last_hidden_state: torch.Tensor | None = None
    pooler_output: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    hidden_states: torch.Tensor | tuple[torch.Tensor, ...] | None = None
    cache: object | None = None


class BertPreTrainedModel(FlagAIModelMixin, PreTrainedModel):
    config_class = FlagAIBertConfig
    base_model_prefix = "bert"
    supports_gradient_checkpointing = True
    _no_split_modules = ["PostNormBlock"]
    _supports_sdpa = True
    _supports_flash_attn = False  # masks are additive float tensors
    accepts_loss_kwargs = False  # our losses are means; Trainer must scale for gradient accumulation itself

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, CRF):
            nn.init.uniform_(module.transitions, -0.1, 0.1)


def _padding_mask(input_ids, attention_mask, pad_token_id):
    """The caller's mask, or (FlagAI's rule) ``input_ids != pad_token_id`` when none is given and pads occur."""
    if attention_mask is None and input_ids is not None and pad_token_id is not None:
        is_pad = input_ids == pad_token_id
        if not known_all_true(~is_pad):
            return ~is_pad
    return attention_mask


class BertModel(BertPreTrainedModel):
    """The BERT encoder: embeddings, post-LN blocks and (optionally) the [CLS] pooler."""

    def __init__(self, config: FlagAIBertConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        hidden = config.hidden_size
        self.embeddings = TransformerEmbeddings(
            config.vocab_size,
            hidden,
            config.max_position_embeddings,
            type_vocab_size=config.type_vocab_size,
            norm=nn.LayerNorm(hidden, eps=config.layer_norm_eps),
            dropout=config.hidden_dropout_prob,
        )
        self.layers = nn.ModuleList(
            PostNormBlock(
                attention=SelfAttention(config, hidden, config.num_attention_heads,
                                        dropout=config.attention_probs_dropout_prob, layer_idx=index),
                mlp=MLP(hidden, config.intermediate_size, get_activation(config.hidden_act)),
                attention_norm=nn.LayerNorm(hidden, eps=config.layer_norm_eps),
                mlp_norm=nn.LayerNorm(hidden, eps=config.layer_norm_eps),
                dropout=config.hidden_dropout_prob,
            )
            for index in range(config.num_hidden_layers)
        )
        self.pooler = Pooler(hidden) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value):
        self.embeddings.word_embeddings = value

    def forward(
        self,
        input_ids: torch.Tensor | None = None,  # (B, T)
        *,
        attention_mask: torch.Tensor | None = None,  # (B, past + T) padding mask, or a 3-D / 4-D mask (1 = attend)
        token_type_ids: torch.Tensor | None = None,  # (B, T)
        position_ids: torch.Tensor | None = None,  # (B, T)
        inputs_embeds: torch.Tensor | None = None,  # (B, T, h)
        cache=None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> BertModelOutput:
        token_type_ids = self.flagai_kwargs(kwargs, token_type_ids)
        past_length = cache.get_seq_length() if cache is not None else 0
        hidden_states = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds, past_length)
        attention_mask = _padding_mask(input_ids, attention_mask, self.config.pad_token_id)
        if attention_mask is not None:
            batch, length = hidden_states.shape[:2]
            keys = past_length + length
            check_mask_shape(attention_mask, {2: (batch, keys), 3: ((1, batch), length, keys),
                                              4: ((1, batch), (1, self.config.num_attention_heads), length, keys)})
        bias = attention_bias(attention_mask, hidden_states.dtype)

        all_hidden_states = (hidden_states,) if output_hidden_states else None
        for layer in self.layers:
            hidden_states = layer(hidden_states, bias, cache=cache)
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
        return BertModelOutput(
            last_hidden_state=hidden_states,
            pooler_output=self.pooler(hidden_states) if self.pooler is not None else None,
            logits=hidden_states,
            hidden_states=all_hidden_states if output_hidden_states else hidden_states,
            cache=cache,
        )


def _token_loss(logits, labels, attention_mask):
    """Mean cross-entropy over positions whose label is not -100 and that are not padding."""
    if attention_mask is not None and attention_mask.dim() == 2:
        labels = labels.masked_fill(attention_mask[:, -labels.shape[1]:] == 0, -100)
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                                       ignore_index=-100)


class BertForMaskedLM(BertPreTrainedModel):
    """BERT with the masked-LM head (``lm_head.decoder`` tied to the word embeddings unless the config unties it)."""

    _tied_weights_keys = {"lm_head.decoder.weight": "bert.embeddings.word_embeddings.weight"}

    def __init__(self, config: FlagAIBertConfig):
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.lm_head = LMPredictionHead(config.hidden_size, config.vocab_size, get_activation(config.hidden_act),
                                        nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps))
        self.post_init()

    def get_output_embeddings(self):
        return self.lm_head.decoder

    def set_output_embeddings(self, new_embeddings):
        self.lm_head.decoder = new_embeddings

    def forward(self, input_ids=None, *, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_hidden_states=None, **kwargs) -> MaskedLMOutput:
        token_type_ids = self.flagai_kwargs(kwargs, token_type_ids)
        out = self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                        position_ids=position_ids, inputs_embeds=inputs_embeds,
                        output_hidden_states=output_hidden_states)
        logits = self.lm_head(out.last_hidden_state)  # (B, T, vocab)
        loss = _token_loss(logits, labels, None) if labels is not None else None
        return MaskedLMOutput(loss=loss, logits=logits, hidden_states=out.hidden_states)


class BertForSequenceClassification(BertPreTrainedModel):
    """Pooled [CLS] -> dropout -> Linear: classification, and semantic matching on sentence pairs (FlagAI's
    ``BertForClsClassifier``). ``num_labels == 1`` is regression (MSE)."""

    def __init__(self, config: FlagAIBertConfig):
        super().__init__(config)
        self.bert = BertModel(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, *, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_hidden_states=None, **kwargs) -> SequenceClassifierOutput:
        token_type_ids = self.flagai_kwargs(kwargs, token_type_ids)
        out = self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                        position_ids=position_ids, inputs_embeds=inputs_embeds,
                        output_hidden_states=output_hidden_states)
        logits = self.classifier(self.dropout(out.pooler_output))  # (B, num_labels)
        loss = None
        if labels is not None:
            if self.config.num_labels == 1:
                loss = nn.functional.mse_loss(logits.squeeze(-1).float(), labels.float())
            else:
                loss = nn.functional.cross_entropy(logits.float(), labels.view(-1))
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states)


BertForClsClassifier = BertForSequenceClassification


class BertForSequenceLabeling(BertPreTrainedModel):
    """Token classification (NER with softmax): per-token Linear over the last hidden states."""

    def __init__(self, config: FlagAIBertConfig):
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def emissions(self, input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                  output_hidden_states):
        out = self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                        position_ids=position_ids, inputs_embeds=inputs_embeds,
                        output_hidden_states=output_hidden_states)
        return self.classifier(self.dropout(out.last_hidden_state)), out  # (B, T, num_labels)

    def forward(self, input_ids=None, *, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_hidden_states=None, **kwargs) -> TokenClassifierOutput:
        token_type_ids = self.flagai_kwargs(kwargs, token_type_ids)
        attention_mask = _padding_mask(input_ids, attention_mask, self.config.pad_token_id)
        logits, out = self.emissions(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                                     output_hidden_states)
        loss = _token_loss(logits, labels, attention_mask) if labels is not None else None
        return TokenClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states)


class BertForSequenceLabelingCRF(BertForSequenceLabeling):
    """Token classification with a linear-chain CRF over the per-token scores (``logits`` are the emissions).

    The loss is the CRF negative log-likelihood over positions that are not padding and whose label is not -100
    (those are skipped, e.g. [CLS]/[SEP]); ``decode`` gives the Viterbi tags under the same kind of mask.
    """

    def __init__(self, config: FlagAIBertConfig):
        super().__init__(config)
        self.crf = CRF(config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, *, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_hidden_states=None, **kwargs) -> TokenClassifierOutput:
        token_type_ids = self.flagai_kwargs(kwargs, token_type_ids)
        attention_mask = _padding_mask(input_ids, attention_mask, self.config.pad_token_id)
        logits, out = self.emissions(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                                     output_hidden_states)
        loss = None
        if labels is not None:
            mask = labels != -100
            if attention_mask is not None:
                mask &= attention_mask.bool()
            loss = self.crf.neg_log_likelihood(logits, labels, mask)
        return TokenClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states)

    @torch.no_grad()
    def decode(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Viterbi tags ``(B, T)`` for emissions ``logits`` over ``mask`` positions; -100 elsewhere."""
        return self.crf.decode(logits, mask.bool())


class BertForSequenceLabelingGP(BertPreTrainedModel):
    """Span NER with GlobalPointer: ``logits`` ``(B, num_labels, T, T)`` score every (start, end) span per type.

    ``labels`` are ``(B, num_labels, T, T)`` 0/1 span indicators; the loss is the multilabel categorical
    cross-entropy. ``decode`` returns the spans scoring above a threshold.
    """

    def __init__(self, config: FlagAIBertConfig):
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.global_pointer = GlobalPointer(config.hidden_size, config.num_labels, inner_dim=config.inner_dim)
        self.post_init()

    def forward(self, input_ids=None, *, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_hidden_states=None, **kwargs) -> TokenClassifierOutput:
        token_type_ids = self.flagai_kwargs(kwargs, token_type_ids)
        attention_mask = _padding_mask(input_ids, attention_mask, self.config.pad_token_id)
        out = self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                        position_ids=position_ids, inputs_embeds=inputs_embeds,
                        output_hidden_states=output_hidden_states)
        logits = self.global_pointer(out.last_hidden_state, attention_mask)  # (B, types, T, T)
        loss = global_pointer_loss(logits, labels) if labels is not None else None
        return TokenClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states)

    @staticmethod
    def decode(logits: torch.Tensor, threshold: float = 0.0) -> list[list[tuple[int, int, int]]]:
        """Per batch item, the sorted ``(type, start, end)`` spans scoring above ``threshold``."""
        return decode_spans(logits, threshold)


def unilm_attention_mask(token_type_ids: torch.Tensor, past_length: int) -> torch.Tensor:
    """UniLM's seq2seq mask, True = attend, shape ``(B, 1, T, past + T)``.

    Source tokens (type 0) attend to every source token; target tokens (type 1) attend causally to everything up to
    themselves. With a cache (``past_length > 0``) only target tokens can be appended, each seeing every cached key.
    """
    batch, length = token_type_ids.shape
    device = token_type_ids.device
    if past_length > 0:
        if not bool((token_type_ids == 1).all()):
            raise ValueError("With a cache, UniLM accepts only target tokens (token_type_ids == 1)")
        query_pos = torch.arange(past_length, past_length + length, device=device)
        key_pos = torch.arange(past_length + length, device=device)
        return (key_pos[None, :] <= query_pos[:, None]).expand(batch, 1, length, past_length + length)
    is_target = token_type_ids.bool()
    causal = torch.ones(length, length, dtype=torch.bool, device=device).tril()
    source_to_source = ~is_target[:, :, None] & ~is_target[:, None, :]  # (B, T, T)
    target_causal = is_target[:, :, None] & causal  # (B, T, T)
    return (source_to_source | target_causal)[:, None]  # (B, 1, T, T)


class BertForSeq2seq(BertPreTrainedModel, GenerationChecks, GenerationMixin):
    """UniLM: BERT with the LM head and the seq2seq mask from ``token_type_ids`` (0 = source, 1 = target).

    ``labels`` follow the causal-LM convention (usually ``labels = input_ids``, (B, T)): logits at position i are
    scored against ``labels[i + 1]`` where token i + 1 is a non-padding target token, as FlagAI did. FlagAI's own
    batches carry the already shifted ``labels = input_ids[:, 1:]`` (B, T - 1); those are accepted as well (logits at
    position i against ``labels[i]``), with the same loss. ``generate()`` works with
    a KV cache: the prompt (all source) is encoded bidirectionally once, then each new token is a target token.
    """

    _tied_weights_keys = {"lm_head.decoder.weight": "bert.embeddings.word_embeddings.weight"}

    def __init__(self, config: FlagAIBertConfig):
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.lm_head = LMPredictionHead(config.hidden_size, config.vocab_size, get_activation(config.hidden_act),
                                        nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps))
        self.post_init()

    def get_output_embeddings(self):
        return self.lm_head.decoder

    def set_output_embeddings(self, new_embeddings):
        self.lm_head.decoder = new_embeddings

    def forward(self, input_ids=None, *, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, cache=None, use_cache=None, output_hidden_states=None,
                **kwargs) -> CausalLMOutputWithPast:
        token_type_ids = self.flagai_kwargs(kwargs, token_type_ids)
        check_input_ids(input_ids, inputs_embeds)
        reference = input_ids if input_ids is not None else inputs_embeds[..., 0]
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(reference, dtype=torch.long)
        past_length = cache.get_seq_length() if cache is not None else 0
        if attention_mask is not None and attention_mask.dim() != 2:
            raise ValueError("BertForSeq2seq builds its own seq2seq mask; attention_mask must be a 2-D padding mask")
        if attention_mask is not None:
            check_mask_shape(attention_mask, {2: (reference.shape[0], past_length + reference.shape[1])})
        elif past_length == 0:  # FlagAI's rule (pad ids are padding), for a whole sequence: a cache's keys are not ids
            attention_mask = _padding_mask(input_ids, attention_mask, self.config.pad_token_id)

        mask = unilm_attention_mask(token_type_ids, past_length)  # (B, 1, T, past + T)
        if attention_mask is not None:
            mask = mask & attention_mask.bool()[:, None, None, :]
        out = self.bert(input_ids, attention_mask=mask, token_type_ids=token_type_ids, position_ids=position_ids,
                        inputs_embeds=inputs_embeds, cache=cache, output_hidden_states=output_hidden_states)
        logits = self.lm_head(out.last_hidden_state)  # (B, T, vocab)

        loss = None
        if labels is not None:
            length = token_type_ids.shape[1]
            if labels.shape[1] == length:  # causal-LM convention: shift here
                labels = labels[:, 1:]
            elif labels.shape[1] != length - 1:  # FlagAI's seq2seq_collate_fn: labels = input_ids[:, 1:]
                raise ValueError(f"BertForSeq2seq labels must be (batch, {length}) like input_ids or FlagAI's shifted "
                                 f"(batch, {length - 1}); got {tuple(labels.shape)}")
            targets = labels.masked_fill(token_type_ids[:, 1:] == 0, -100)
            loss = _token_loss(logits[:, :-1], targets, attention_mask)
        return CausalLMOutputWithPast(loss=loss, logits=logits, hidden_states=out.hidden_states, cache=out.cache)

    def prepare_inputs_for_generation(self, input_ids, next_sequence_length=None, cache=None, attention_mask=None,
                                      inputs_embeds=None, is_first_iteration=False, **kwargs):
        inputs = super().prepare_inputs_for_generation(
            input_ids, next_sequence_length=next_sequence_length, cache=cache, attention_mask=attention_mask,
            inputs_embeds=inputs_embeds, is_first_iteration=is_first_iteration, **kwargs)
        if attention_mask is not None and "position_ids" not in kwargs:  # left padding: count real tokens only
            positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
            inputs["position_ids"] = positions[:, -inputs["input_ids"].shape[1]:]
        return inputs

    def _update_model_kwargs_for_generation(self, outputs, model_kwargs, is_encoder_decoder=False,
                                            num_new_tokens=1):
        """Generated tokens are target tokens: extend ``token_type_ids`` with ones (transformers repeats the last)."""
        token_type_ids = model_kwargs.pop("token_type_ids", None)
        if token_type_ids is None:  # first step: the prompt, all source tokens, just went through the model
            token_type_ids = torch.zeros(outputs.logits.shape[:2], dtype=torch.long, device=outputs.logits.device)
        model_kwargs = super()._update_model_kwargs_for_generation(outputs, model_kwargs, is_encoder_decoder,
                                                                   num_new_tokens)
        ones = token_type_ids.new_ones((token_type_ids.shape[0], num_new_tokens))
        model_kwargs["token_type_ids"] = torch.cat([token_type_ids, ones], dim=-1)
        return model_kwargs
