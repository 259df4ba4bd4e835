"""What the fuzz targets share: running one under atheris, random JSON-ish values, and the tokenizer checks.

Each ``fuzz/<target>.py`` defines ``TestOneInput(data: bytes)``, which feeds ``data`` to one parser of untrusted bytes
and lets only the parser's documented exceptions pass: any other exception (``TypeError``, ``KeyError``,
``AttributeError``, ``RecursionError``, ...) or a broken invariant is a finding. ``python fuzz/<target>.py`` hands
the command line to libFuzzer (``-atheris_runs=N``, ``-seed=S``, ``-max_total_time=T``, corpus folders); the
regression inputs of each target live in ``fuzz/corpus/<target>/`` and run first.
"""

import os
import sys
from pathlib import Path

import atheris
from transformers.utils import logging as hf_logging

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "fuzz" / "corpus"
# Instrumented for coverage feedback: our package, and for the tokenizer targets transformers' Python tokenizer layers
# (the Rust ``tokenizers`` and sentencepiece cores are not Python and stay opaque).
TOKENIZER_MODULES = ["flagai_hf", "transformers.tokenization_utils_base", "transformers.tokenization_python",
                     "transformers.tokenization_utils_sentencepiece", "transformers.tokenization_utils_tokenizers"]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the brief run forks one process per target
hf_logging.set_verbosity_error()  # config warnings on every input would drown the fuzzer's output


def main(module) -> None:
    """Fuzz ``module.TestOneInput`` with the command line's libFuzzer options. Without corpus folders given, new
    inputs go to a fresh temporary folder, and the target's regression corpus ``fuzz/corpus/<target>`` is read."""
    import tempfile

    argv = list(sys.argv)
    if not any(not arg.startswith("-") for arg in argv[1:]):
        work = tempfile.mkdtemp(prefix=f"fuzz_{Path(module.__file__).stem}_")
        seeds = CORPUS / Path(module.__file__).stem
        argv += [work, *([str(seeds)] if seeds.is_dir() else [])]
        print(f"fuzz: new inputs go to {work}", file=sys.stderr)
    if hasattr(module, "prepare"):
        module.prepare()
    atheris.Setup(argv, module.TestOneInput)
    atheris.Fuzz()


def json_value(fdp, depth: int = 0):
    """A random JSON value (numbers at the edges: negatives, huge, floats, inf/nan), nested at most 3 deep."""
    kind = fdp.ConsumeIntInRange(0, 9 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return fdp.ConsumeBool()
    if kind == 2:
        return fdp.ConsumeIntInRange(-3, 70)
    if kind == 3:
        return fdp.ConsumeInt(8)
    if kind == 4:
        return fdp.ConsumeRegularFloat() if fdp.ConsumeBool() else fdp.PickValueInList([float("inf"), float("nan"),
                                                                                         -0.0, 1e308, 0.5])
    if kind in (5, 6):
        return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 12))
    if kind == 7:
        return [json_value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 4))]
    return {fdp.ConsumeUnicodeNoSurrogates(6): json_value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 4))}


def material(*parts: str) -> str:
    """A file of the offline test material (tests/material.py locates it)."""
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        import material as located
    finally:
        sys.path.pop(0)
    return getattr(located, parts[0])(*parts[1:])


def check_tokenizer(tokenizer, data: bytes, lossless: bool = False) -> None:
    """Encode fuzzed text (alone, as a pair, truncated) and decode fuzzed ids; with ``lossless`` (byte-level BPE),
    decode(encode(text)) must give the text back."""
    fdp = atheris.FuzzedDataProvider(data)
    size = len(tokenizer)
    text = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 200))
    ids = tokenizer(text, add_special_tokens=fdp.ConsumeBool())["input_ids"]
    if not all(isinstance(i, int) and 0 <= i < size for i in ids):
        raise AssertionError(f"encode({text!r}) gave ids outside 0..{size - 1}: {ids}")
    decoded = tokenizer.decode(ids)
    if not isinstance(decoded, str):
        raise AssertionError(f"decode gave {type(decoded).__name__}")
    if lossless and tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) != text:
        raise AssertionError(f"decode(encode({text!r})) is not the text")
    other = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 50))
    limit = fdp.ConsumeIntInRange(8, 64)
    pair = tokenizer(text, other, truncation=True, max_length=limit)["input_ids"]
    if len(pair) > limit:
        raise AssertionError(f"a pair truncated to {limit} has {len(pair)} ids")
    fuzzed = [fdp.ConsumeIntInRange(0, size - 1) for _ in range(fdp.ConsumeIntInRange(0, 40))]
    if not isinstance(tokenizer.decode(fuzzed, skip_special_tokens=fdp.ConsumeBool()), str):
        raise AssertionError("decode of in-vocabulary ids gave no string")
    tokenizer.convert_ids_to_tokens(fuzzed)
