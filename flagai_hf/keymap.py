"""Checkpoint key maps as data: template rules from other layouts' tensor names to ours.

A rule maps a source template to a target template; ``{i}`` matches a layer index and ``{p}`` a parameter name
(``weight`` / ``bias``; TF-era ``gamma`` / ``beta`` are read as ``weight`` / ``bias``). A target of ``None`` drops the
tensor (e.g. BERT's next-sentence head). A target ``Part(name, index, count)`` is one of ``count`` row blocks that are
concatenated along dim 0 into ``name`` (separate q, k, v -> fused ``query_key_value``); ``Split(names)`` is the way
back (a fused tensor cut into equal row blocks); a tuple of targets writes the tensor under each of them (T5's tied
embedding copies). A name no rule matches is an error that lists it: nothing is guessed.

The way back, flagai_hf -> FlagAI's legacy layout, is data too: a family's ``FlagAILayout`` lists the backbone rules,
for each of our classes the FlagAI class it corresponds to (its backbone prefix and head names), and the config keys
FlagAI reads; ``flagai-hf convert --to flagai`` uses it.
"""

import re
from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class Part:
    """Row block ``index`` of ``count`` of the fused tensor ``name`` (a template like the other targets)."""

    name: str
    index: int
    count: int


@dataclass(frozen=True)
class Split:
    """The tensor's rows cut into ``len(names)`` equal blocks, block ``k`` stored as ``names[k]`` (templates)."""

    names: tuple[str, ...]


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
        """The target (str, Part, Split, a tuple of them, or None) for one source name; raises ``KeyError`` if no rule
        matches."""
        bare = self._strip(name)
        head, _, last = bare.rpartition(".")
        bare = f"{head}.{_PARAM_ALIASES.get(last, last)}" if head else bare
        for pattern, target in self.rules:
            match = pattern.match(bare)
            if match:
                return self._fill(target, match.groupdict())
        raise KeyError(name)

    @classmethod
    def _fill(cls, target, fields: dict):
        """The target with the matched ``{i}`` / ``{p}`` filled in."""
        if target is None:
            return None
        if isinstance(target, Part):
            return Part(target.name.format(**fields), target.index, target.count)
        if isinstance(target, Split):
            return Split(tuple(name.format(**fields) for name in target.names))
        if isinstance(target, tuple):
            return tuple(cls._fill(each, fields) for each in target)
        return target.format(**fields)

    @staticmethod
    def _each(target) -> tuple:
        return target if isinstance(target, tuple) else (target,)

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
            for target in self._each(target):
                if target is None:
                    continue
                if isinstance(target, Part):
                    parts.setdefault(target.name, {})[target.index] = tensor
                    counts[target.name] = target.count
                    continue
                if isinstance(target, Split):
                    if tensor.shape[0] % len(target.names):
                        raise ValueError(f"{name} has {tensor.shape[0]} rows: not {len(target.names)} equal blocks")
                    blocks = zip(target.names, tensor.chunk(len(target.names), dim=0))
                else:
                    blocks = ((target, tensor),)
                for block_name, block in blocks:
                    if block_name in converted and not _same(converted[block_name], block):
                        raise ValueError(
                            f"Checkpoint holds two different tensors for {block_name!r} (one of them is {name!r})"
                        )
                    converted[block_name] = block
        if unknown:
            raise ValueError(f"Checkpoint has tensors with unknown names: {', '.join(sorted(unknown))}")
        for name, blocks in parts.items():
            missing = sorted(set(range(counts[name])) - set(blocks))
            if missing:
                raise ValueError(f"Checkpoint has only some parts of {name!r}: row blocks {missing} are missing")
            converted[name] = torch.cat([blocks[index] for index in range(counts[name])], dim=0)
        return converted


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two tensors hold the same values; meta tensors (a checkpoint read from its headers) by shape."""
    if a.is_meta or b.is_meta:
        return a.shape == b.shape
    return torch.equal(a, b)


def _prefixed(target, prefix: str):
    """``target`` (a template, a ``Split`` or a tuple of them) with ``prefix`` before every name."""
    if isinstance(target, Split):
        return Split(tuple(prefix + name for name in target.names))
    if isinstance(target, tuple):
        return tuple(_prefixed(each, prefix) for each in target)
    return prefix + target


@dataclass(frozen=True)
class FlagAIClass:
    """How one of FlagAI's task classes names its tensors.

    Args:
        name: the FlagAI class (written to the report, e.g. ``BertForClsClassifier``).
        backbone_prefix: what FlagAI puts before the backbone's names: ``model.`` when the task class holds the
            backbone as ``self.model``, ``""`` when it is the backbone or delegates ``state_dict`` to it.
        heads: ``{our head template: FlagAI's template}`` (the same template syntax as ``KeyMap``).
    """

    name: str
    backbone_prefix: str = ""
    heads: dict = field(default_factory=dict)


class FlagAILayout:
    """A family's FlagAI legacy layout as data: writes a model as ``(config_dict, state_dict)`` the way FlagAI's
    classes save them. An instance is a family's ``Family.to_flagai``.

    Args:
        backbone: ``{our backbone template (without the base-model prefix): FlagAI's template}``.
        classes: ``{our class name: FlagAIClass}``; a model's class, or its nearest base class, must be listed.
        config_keys: ``{our config attribute: FlagAI's key}``: every key FlagAI's constructor reads, written even at
            its default value. Other non-default attributes are kept under their own names (FlagAI ignores them;
            flagai_hf reads them back).
        config_defaults: ``{FlagAI key: value}`` FlagAI requires that flagai_hf has no use for, written when the
            config does not hold them.
        check: ``check(config)`` raises ``ValueError`` for what FlagAI's classes cannot represent.
    """

    # transformers bookkeeping that has no meaning in a FlagAI config.json
    _DROPPED_CONFIG_KEYS = ("model_type", "architectures", "transformers_version", "dtype", "torch_dtype", "id2label",
                            "label2id")

    def __init__(self, backbone: dict, classes: dict[str, FlagAIClass], config_keys: dict[str, str],
                 config_defaults: dict | None = None, check=None):
        self.backbone = backbone
        self.classes = classes
        self.config_keys = config_keys
        self.config_defaults = config_defaults or {}
        self.check = check

    def flagai_class(self, model_class: type) -> FlagAIClass:
        for cls in model_class.__mro__:
            if cls.__name__ in self.classes:
                return self.classes[cls.__name__]
        raise ValueError(f"{model_class.__name__} has no FlagAI counterpart; FlagAI layouts exist for "
                         f"{', '.join(self.classes)}")

    def keymap(self, model_class: type, base_model_prefix: str) -> KeyMap:
        """Our names (as ``model_class.state_dict()`` gives them) -> FlagAI's."""
        flagai = self.flagai_class(model_class)
        rules = {ours: _prefixed(theirs, flagai.backbone_prefix) for ours, theirs in self.backbone.items()}
        rules.update(flagai.heads)
        return KeyMap(rules, strip_prefixes=(base_model_prefix + ".",))

    def config(self, config) -> dict:
        """FlagAI's ``config.json`` for ``config``."""
        if self.check is not None:
            self.check(config)
        written = {flagai_key: getattr(config, ours) for ours, flagai_key in self.config_keys.items()}
        for key, value in config.to_diff_dict().items():
            if key not in self.config_keys and key not in written and key not in self._DROPPED_CONFIG_KEYS:
                written[key] = value
        for key, value in self.config_defaults.items():
            written.setdefault(key, value)
        return written

    def __call__(self, model) -> tuple[dict, dict[str, torch.Tensor]]:
        """``(config_dict, state_dict)`` of ``model`` in FlagAI's layout; unknown tensor names raise ``ValueError``."""
        keymap = self.keymap(type(model), model.base_model_prefix)
        return self.config(model.config), keymap.convert(model.state_dict())
