"""Checkpoint key maps as data: template rules from other layouts' tensor names to ours.

A rule maps a source template to a target template; ``{i}`` matches a layer index and ``{p}`` a parameter name
(``weight`` / ``bias``; TF-era ``gamma`` / ``beta`` are read as ``weight`` / ``bias``). A target of ``None`` drops the
tensor (e.g. BERT's next-sentence head). A target ``Part(name, index, count)`` is one of ``count`` row blocks that are
concatenated along dim 0 into ``name`` (separate q, k, v -> fused ``query_key_value``). A name no rule matches is an
error that lists it: nothing is guessed.
"""

import re
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Part:
    """Row block ``index`` of ``count`` of the fused tensor ``name`` (a template like the other targets)."""

    name: str
    index: int
    count: int


_PARAM_ALIASES = {"gamma": "weight", "beta": "bias"}


class KeyMap:
    """Renames a state dict with template rules (see the module docstring).

    Args:
        rules: ``{source template: target template | Part | None}``, tried in order.
        strip_prefixes: wrapper prefixes removed from every name first (``bert.``, FlagAI's ``model.``).
    """

    def __init__(self, rules: dict, strip_prefixes: tuple[str, ...] = ()):
        self.strip_prefixes = strip_prefixes
        self.rules = [(self._compile(source), target) for source, target in rules.items()]

    @staticmethod
    def _compile(template: str) -> re.Pattern:
        pattern = re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{p\}", r"(?P<p>weight|bias)")
        return re.compile(pattern + "$")

    def _strip(self, name: str) -> str:
        for prefix in self.strip_prefixes:
            if name.startswith(prefix):
                return name[len(prefix):]
        return name

    def target(self, name: str):
        """The target (str, Part or None) for one source name; raises ``KeyError`` if no rule matches."""
        bare = self._strip(name)
        head, _, last = bare.rpartition(".")
        bare = f"{head}.{_PARAM_ALIASES.get(last, last)}" if head else bare
        for pattern, target in self.rules:
            match = pattern.match(bare)
            if match:
                if target is None:
                    return None
                fields = match.groupdict()
                if isinstance(target, Part):
                    return Part(target.name.format(**fields), target.index, target.count)
                return target.format(**fields)
        raise KeyError(name)

    def convert(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Rename (and fuse) every tensor; raises ``ValueError`` listing names no rule knows or that conflict."""
        converted: dict[str, torch.Tensor] = {}
        parts: dict[str, dict[int, torch.Tensor]] = {}
        counts: dict[str, int] = {}
        unknown = []
        for name, tensor in state_dict.items():
            try:
                target = self.target(name)
            except KeyError:
                unknown.append(name)
                continue
            if target is None:
                continue
            if isinstance(target, Part):
                parts.setdefault(target.name, {})[target.index] = tensor
                counts[target.name] = target.count
                continue
            if target in converted and not torch.equal(converted[target], tensor):
                raise ValueError(f"Checkpoint holds two different tensors for {target!r} (one of them is {name!r})")
            converted[target] = tensor
        if unknown:
            raise ValueError(f"Checkpoint has tensors with unknown names: {', '.join(sorted(unknown))}")
        for name, blocks in parts.items():
            missing = sorted(set(range(counts[name])) - set(blocks))
            if missing:
                raise ValueError(f"Checkpoint has only some parts of {name!r}: row blocks {missing} are missing")
            converted[name] = torch.cat([blocks[index] for index in range(counts[name])], dim=0)
        return converted
