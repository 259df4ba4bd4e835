"""The input checks shared by every family: tensor values, forward input shapes, ``generate()`` settings.

- ``check_values`` / ``known_all_true``: checks on tensor values that stay inside a ``torch.compile`` graph (below).
- ``check_input_ids`` / ``check_mask_shape``: shapes of a forward's ids and attention mask (Python ints, so they never
  break a graph), as ``ValueError``s naming the argument, the shape got and what is accepted.
- ``GenerationChecks``: a mixin for generating models: ``num_beams`` larger than the vocabulary is refused, and
  ``generate()`` stops at the position table (``PositionTableStop``) with a warning.

For value checks: reading a tensor's values on the host (``bool(t.any())``, ``int(t.max())``) makes dynamo break the graph. Eagerly
these helpers do exactly that, so bad input raises the usual ``ValueError``; while compiling they become in-graph
assertions (a ``RuntimeError`` with the same message when the compiled code runs) or skip a shortcut that only saves
work.
"""

import torch
from transformers import StoppingCriteria, StoppingCriteriaList
from transformers.utils import logging

logger = logging.get_logger(__name__)


def check_values(holds: torch.Tensor, message: str) -> None:
    """Raise ``ValueError(message)`` unless the 0-d bool tensor ``holds`` is true; under ``torch.compile`` an in-graph
    assertion with the same message."""
    if torch.compiler.is_compiling():
        torch._assert_async(holds, message)
    elif not bool(holds):
        raise ValueError(message)


def known_all_true(mask: torch.Tensor) -> bool:
    """Whether every element of ``mask`` is known to be true, so a caller may drop the mask (a fast path). Never
    while compiling: the mask is then kept, which gives the same result without reading its values on the host."""
    return not torch.compiler.is_compiling() and bool(mask.all())


# ------------------------------------------------------------------------------------------ shapes of forward inputs
# Shapes are Python ints (or symbolic ints under torch.compile, where a check is a guard, not a graph break).


def check_input_ids(input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None = None,
                    name: str = "input_ids") -> tuple[int, int]:
    """``(batch, length)`` of a forward's input: ``input_ids`` (B, T), else ``inputs_embeds`` (B, T, h). A ``ValueError``
    naming the argument and the shape got when it has another number of dimensions, an empty batch (B = 0) or no
    tokens (T = 0)."""
    if input_ids is not None:
        tensor, what, dims = input_ids, name, 2
        layout = "(batch, length)" + (" (one sequence: pass ids[None])" if input_ids.dim() == 1 else "")
    else:
        tensor, what, dims = inputs_embeds, f"the inputs_embeds for {name}", 3
        layout = "(batch, length, hidden)"
    if tensor.dim() != dims:
        raise ValueError(f"{what} must be {dims}-D {layout}; got shape {tuple(tensor.shape)}")
    batch, length = tensor.shape[:2]
    if batch == 0:
        raise ValueError(f"{what} is an empty batch (shape {tuple(tensor.shape)}): at least one sequence is needed")
    if length == 0:
        raise ValueError(f"{what} has sequence length 0 (shape {tuple(tensor.shape)}): at least one token per "
                         "sequence is needed")
    return batch, length


def check_mask_shape(mask: torch.Tensor, accepted: dict[int, tuple], name: str = "attention_mask") -> None:
    """A ``ValueError`` naming ``name``, the shape got and what is accepted unless ``mask`` has one of the ``accepted``
    shapes: ``{number of dims: shape}``, each size an int, a tuple of allowed ints, or ``None`` (any)."""
    def fits(shape, pattern):
        return len(shape) == len(pattern) and all(
            want is None or (size in want if isinstance(want, tuple) else size == want)
            for size, want in zip(shape, pattern))

    if not fits(tuple(mask.shape), accepted.get(mask.dim(), ())):
        def spell(pattern):
            return "(" + ", ".join("any" if want is None else " or ".join(map(str, want)) if isinstance(want, tuple)
                                   else str(want) for want in pattern) + ")"
        forms = " or ".join(f"{dims}-D {spell(pattern)}" for dims, pattern in accepted.items())
        raise ValueError(f"{name} must be {forms} to match the input ids; got shape {tuple(mask.shape)}")


# ------------------------------------------------------------------------------------------ generate() settings


class PositionTableStop(StoppingCriteria):
    """Stops ``generate()`` when the model has been fed ``limit`` positions (the end of its position table): the
    sequences then hold ``limit + 1`` tokens, the last one predicted from position ``limit - 1`` and never fed. Warns
    when that cuts the generation short of ``max_length`` (set by ``GenerationChecks._get_stopping_criteria``)."""

    def __init__(self, limit: int, model_name: str):
        self.limit = limit
        self.model_name = model_name
        self.max_length = None
        self.warned = False

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        done = input_ids.shape[-1] > self.limit
        if done and not self.warned and (self.max_length is None or self.max_length > self.limit + 1):
            self.warned = True
            logger.warning(f"{self.model_name}.generate stops at the position table ({self.limit} positions): "
                           f"{input_ids.shape[-1]} tokens returned (the last one predicted from the last position), "
                           f"not the {self.max_length} asked for")
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


class GenerationChecks:
    """Mixed into a generating model before ``GenerationMixin``: ``generate()`` refuses ``num_beams`` larger than the
    vocabulary, and stops where the model's position table ends (``generation_position_limit``), returning what was
    generated with a warning, instead of failing in the forward."""

    def generation_position_limit(self, model_kwargs: dict) -> int | None:
        """The most positions the model can be fed (prompt + generated): ``config.max_position_embeddings``
        (GPT2's ``n_positions``); ``None`` for models without one (T5's relative positions)."""
        return getattr(self.config, "max_position_embeddings", None)

    def generate(self, inputs=None, generation_config=None, stopping_criteria=None, **kwargs):
        limit = self.generation_position_limit(kwargs)
        if limit is not None:
            stopping_criteria = StoppingCriteriaList([*(stopping_criteria or []),
                                                      PositionTableStop(limit, type(self).__name__)])
        return super().generate(inputs, generation_config, stopping_criteria=stopping_criteria, **kwargs)

    def _get_stopping_criteria(self, generation_config, stopping_criteria, *args, **kwargs):
        for criterion in stopping_criteria or []:
            if isinstance(criterion, PositionTableStop):
                criterion.max_length = generation_config.max_length
        return super()._get_stopping_criteria(generation_config, stopping_criteria, *args, **kwargs)

    def _prepare_generated_length(self, generation_config, *args, **kwargs):
        vocab_size = self.config.get_text_config(decoder=True).vocab_size
        if generation_config.num_beams is not None and generation_config.num_beams > vocab_size:
            raise ValueError(f"num_beams={generation_config.num_beams} is larger than the vocabulary "
                             f"(vocab_size={vocab_size}): beam search keeps num_beams different tokens per step; "
                             f"use num_beams <= {vocab_size}")
        return super()._prepare_generated_length(generation_config, *args, **kwargs)
