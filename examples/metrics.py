"""Small, dependency-free text-generation metrics shared by the examples: ROUGE-N and ROUGE-L F1.

For Chinese the unit is the **character** (``rouge_chinese``): no word segmenter is needed, and this is how title
generation on Chinese news (e.g. LCSTS) is commonly scored. Definitions (Lin, 2004), for one candidate ``c`` and one
reference ``r`` given as token sequences:

* ROUGE-N: the n-grams of each side counted as multisets; ``overlap = sum over n-grams g of min(count_c(g),
  count_r(g))`` (clipped counts), ``precision = overlap / #n-grams(c)``, ``recall = overlap / #n-grams(r)``.
* ROUGE-L: ``lcs = length of the longest common subsequence of c and r``, ``precision = lcs / len(c)``,
  ``recall = lcs / len(r)``.
* ``F1 = 2 P R / (P + R)`` (0 when ``P + R == 0``; a side too short to hold an n-gram gives 0).

Corpus scores are the **mean of the per-pair F1** (as the ``rouge`` / ``rouge-score`` packages report them).
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence


def ngrams(tokens: Sequence, n: int) -> Counter:
    """The multiset of the n-grams (tuples) of ``tokens``."""
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def f1(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def rouge_n(candidate: Sequence, reference: Sequence, n: int = 1) -> dict[str, float]:
    """ROUGE-N of one candidate against one reference: ``{"p", "r", "f"}`` from clipped n-gram overlap."""
    cand, ref = ngrams(candidate, n), ngrams(reference, n)
    overlap = sum((cand & ref).values())  # Counter & Counter keeps min(count_c, count_r): the clipped counts
    precision = overlap / sum(cand.values()) if cand else 0.0
    recall = overlap / sum(ref.values()) if ref else 0.0
    return {"p": precision, "r": recall, "f": f1(precision, recall)}


def lcs_length(a: Sequence, b: Sequence) -> int:
    """Length of the longest common subsequence (dynamic programming, O(len(a) * len(b)) time, O(len(b)) memory)."""
    if not a or not b:
        return 0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(candidate: Sequence, reference: Sequence) -> dict[str, float]:
    """ROUGE-L of one candidate against one reference: ``{"p", "r", "f"}`` from the LCS length."""
    lcs = lcs_length(candidate, reference)
    precision = lcs / len(candidate) if candidate else 0.0
    recall = lcs / len(reference) if reference else 0.0
    return {"p": precision, "r": recall, "f": f1(precision, recall)}


def chinese_chars(text: str) -> list[str]:
    """Characters of ``text`` for character-level ROUGE: NFKC-normalised (full-width ``１９９８``/``，`` become
    ``1998``/``,``, as the GLM tokenizer writes them), whitespace dropped."""
    return [ch for ch in unicodedata.normalize("NFKC", text) if not ch.isspace()]


def rouge_chinese(candidates: Iterable[str], references: Iterable[str]) -> dict[str, float]:
    """Character-level ROUGE-1/2/L F1 of paired strings, averaged over the pairs.

    Returns ``{"rouge1", "rouge2", "rougeL"}`` (F1 in [0, 1]) and ``"pairs"`` (the number of pairs)."""
    candidates, references = list(candidates), list(references)
    if len(candidates) != len(references):
        raise ValueError(f"{len(candidates)} candidates but {len(references)} references")
    totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for candidate, reference in zip(candidates, references):
        c, r = chinese_chars(candidate), chinese_chars(reference)
        totals["rouge1"] += rouge_n(c, r, 1)["f"]
        totals["rouge2"] += rouge_n(c, r, 2)["f"]
        totals["rougeL"] += rouge_l(c, r)["f"]
    count = len(candidates)
    scores = {name: (total / count if count else 0.0) for name, total in totals.items()}
    scores["pairs"] = count
    return scores


def rouge_with_lead_baseline(candidates: list[str], references: list[str], lead: list[str],
                             lead_chars: int) -> tuple[dict[str, float], dict[str, float]]:
    """``rouge_chinese`` of the candidates and of the lead baseline (``lead``: each source's first ``lead_chars``
    characters) against the same references, both printed; returns ``(scores, lead_scores)``."""
    rouge = rouge_chinese(candidates, references)
    print(f"held-out ROUGE ({rouge['pairs']} pairs, character level, F1): ROUGE-1 {rouge['rouge1']:.4f}  "
          f"ROUGE-2 {rouge['rouge2']:.4f}  ROUGE-L {rouge['rougeL']:.4f}")
    baseline = rouge_chinese(lead, references)
    print(f"lead-{lead_chars} baseline (first {lead_chars} characters of the body): ROUGE-1 "
          f"{baseline['rouge1']:.4f}  ROUGE-2 {baseline['rouge2']:.4f}  ROUGE-L {baseline['rougeL']:.4f}")
    return rouge, baseline


__all__ = ["ngrams", "f1", "rouge_n", "lcs_length", "rouge_l", "chinese_chars", "rouge_chinese",
           "rouge_with_lead_baseline"]
