"""Fuzz target: config.json -> each family's config class (``from_flagai_dict``: required keys, size checks).

Inputs are raw bytes read as JSON, or dicts of the config's own keys with random values (negative, huge, float,
string, nested, NaN). Only ``ValueError`` (a bad JSON text, a key refused by name) may come out.
"""

import json

import atheris

from _harness import json_value, main

with atheris.instrument_imports(include=["flagai_hf"]):
    from flagai_hf import FlagAIBertConfig, FlagAIGPT2Config, FlagAIT5Config, GLMConfig

CLASSES = (FlagAIBertConfig, GLMConfig, FlagAIGPT2Config, FlagAIT5Config)
KEYS = {cls: sorted({*cls().to_dict(), *(name for key, aliases in cls.required_keys.items() for name in (key, *aliases))})
        for cls in CLASSES}


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    cls = CLASSES[fdp.ConsumeIntInRange(0, len(CLASSES) - 1)]
    if fdp.ConsumeBool():
        try:
            config = json.loads(fdp.ConsumeBytes(fdp.remaining_bytes()))
        except (ValueError, RecursionError):  # not JSON: refused before the config class sees it
            return
    else:
        config = {fdp.PickValueInList(KEYS[cls]): json_value(fdp) for _ in range(fdp.ConsumeIntInRange(0, 12))}
        for key in cls.required_keys:  # usually valid sizes, so the fuzzer reaches the checks behind them
            if fdp.ConsumeProbability() < 0.8:
                config.setdefault(key, fdp.ConsumeIntInRange(1, 8) * 8)
    try:
        cls.from_flagai_dict(config, source="config.json")
    except ValueError:
        pass


if __name__ == "__main__":
    import sys

    main(sys.modules[__name__])
