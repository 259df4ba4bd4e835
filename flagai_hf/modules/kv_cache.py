"""A growing K/V cache that appends in place.

transformers' ``DynamicLayer`` appends each step's keys and values with ``torch.cat``, which copies the whole cache:
at GLM-large's 16 heads x 64 dims, 24 layers and ~290 cached positions that is 2 x 24 copies of 1.2 MB per new token,
about a seventh of a batch-1 fp32 decode step on the measured machine (benchmarks/README.md). ``ReservedLayer`` keeps
its keys and values as views into buffers with room for more positions and writes new ones into that room; a
buffer is replaced (the cache copied once) only when it is full, growing by a quarter of its length (at least
``MIN_RESERVE`` positions). Its contents, shapes and results are those of ``DynamicLayer``: every other operation
(``crop``, beam reordering, batch selection, offloading) is ``DynamicLayer``'s own, and one that replaces the tensors
simply makes the next append reserve a new buffer.

``reserve_room(cache)`` switches the self-attention layers of a ``DynamicCache`` (or of an ``EncoderDecoderCache``'s
self-attention half) that hold nothing yet to ``ReservedLayer``; the cache keeps its class. ``ReservedCacheGeneration``
does it for the cache ``generate()`` makes.
"""

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer, EncoderDecoderCache

MIN_RESERVE = 128  # positions reserved at least when a buffer is (re)made


class ReservedLayer(DynamicLayer):
    """``DynamicLayer`` whose ``keys`` / ``values`` (B, heads, T, head_dim) are the first T positions of buffers
    (B, heads, capacity, head_dim); ``update`` writes into the free positions when they suffice."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.key_buffer: torch.Tensor | None = None
        self.value_buffer: torch.Tensor | None = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        length, new = self.keys.shape[-2] if self.keys.dim() == 4 else 0, key_states.shape[-2]
        if _has_room(self.keys, self.key_buffer, key_states) and _has_room(self.values, self.value_buffer,
                                                                           value_states):
            self.key_buffer[..., length:length + new, :] = key_states
            self.value_buffer[..., length:length + new, :] = value_states
        else:  # first append, a full buffer, or tensors replaced by another operation: reserve new buffers
            keys = torch.cat([self.keys, key_states], dim=-2)  # DynamicLayer's result (dtype promotion included)
            values = torch.cat([self.values, value_states], dim=-2)
            capacity = keys.shape[-2] + max(MIN_RESERVE, keys.shape[-2] // 4)
            self.key_buffer, self.value_buffer = _buffer_holding(keys, capacity), _buffer_holding(values, capacity)
        self.keys = self.key_buffer[..., :length + new, :]  # (B, heads, T, head_dim) views
        self.values = self.value_buffer[..., :length + new, :]
        return self.keys, self.values

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Beam search's reordering, within new buffers that keep the room (a plain reorder would make the next
        append reserve again, a second copy per step)."""
        if not (_leads(self.keys, self.key_buffer) and _leads(self.values, self.value_buffer)):
            return super().reorder_cache(beam_idx)
        length = self.keys.shape[-2]
        self.key_buffer = self.key_buffer.index_select(0, beam_idx.to(self.key_buffer.device))
        self.value_buffer = self.value_buffer.index_select(0, beam_idx.to(self.value_buffer.device))
        self.keys, self.values = self.key_buffer[..., :length, :], self.value_buffer[..., :length, :]

    def reset(self) -> None:
        self.key_buffer = self.value_buffer = None
        super().reset()


def _buffer_holding(tensor: torch.Tensor, capacity: int) -> torch.Tensor:
    """A (B, heads, capacity, head_dim) buffer whose first positions hold ``tensor`` (B, heads, T, head_dim)."""
    buffer = tensor.new_empty(*tensor.shape[:-2], capacity, tensor.shape[-1])
    buffer[..., :tensor.shape[-2], :] = tensor
    return buffer


def _leads(current: torch.Tensor | None, buffer: torch.Tensor | None) -> bool:
    """Whether ``current`` is still the leading positions of ``buffer``: no other operation replaced it."""
    return (buffer is not None and current is not None and current.dim() == 4
            and current.data_ptr() == buffer.data_ptr() and current.stride() == buffer.stride()
            and current.shape[:-2] == buffer.shape[:-2])


def _has_room(current: torch.Tensor, buffer: torch.Tensor | None, new: torch.Tensor) -> bool:
    """Whether ``current`` leads ``buffer`` and the buffer has room for ``new`` of the same kind."""
    if not _leads(current, buffer) or new.shape[:-2] != buffer.shape[:-2] or new.shape[-1] != buffer.shape[-1]:
        return False
    if new.dtype != buffer.dtype or new.device != buffer.device:
        return False
    return current.shape[-2] + new.shape[-2] <= buffer.shape[-2]


def reserve_room(cache) -> None:
    """Switch the empty plain ``DynamicLayer`` self-attention layers of ``cache`` to ``ReservedLayer`` (see the
    module docstring); any other cache, or a layer that holds keys already, is left as it is."""
    if isinstance(cache, EncoderDecoderCache):
        cache = cache.self_attention_cache
    if type(cache) is not DynamicCache:
        return
    cache.layers = [ReservedLayer() if type(layer) is DynamicLayer and not layer.is_initialized else layer
                    for layer in cache.layers]
    if cache.layer_class_to_replicate is DynamicLayer:
        cache.layer_class_to_replicate = ReservedLayer


def reserved_dynamic_cache(config=None) -> DynamicCache:
    """``DynamicCache(config=config)`` with ``ReservedLayer`` layers: what a forward with ``use_cache=True`` and no
    cache starts."""
    cache = DynamicCache(config=config)
    reserve_room(cache)
    return cache


class ReservedCacheGeneration:
    """Mixed into a generating model before ``GenerationMixin``: the ``DynamicCache`` that ``generate()`` makes itself
    (no ``cache`` passed, ``cache_implementation`` unset or "dynamic") appends in place (`reserve_room`)."""

    def _prepare_cache_for_generation(self, generation_config, model_kwargs: dict, *args, **kwargs):
        user_cache = model_kwargs.get("cache") is not None
        result = super()._prepare_cache_for_generation(generation_config, model_kwargs, *args, **kwargs)
        if not user_cache and generation_config.cache_implementation in (None, "dynamic"):
            reserve_room(model_kwargs.get("cache"))
        return result
