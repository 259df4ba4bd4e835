"""Character-level ROUGE of examples/metrics.py against values computed by hand (the arithmetic is in the comments)."""

import os

import pytest
from example_common import load_module  # examples/ is on sys.path (tests/conftest.py)

_PATH = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "metrics.py")


metrics = load_module("flagai_examples_metrics", _PATH)


def chars(text):
    return list(text)


def test_subsequence_title():
    # candidate 李鹏考察企业 (6 chars), reference 李鹏在北京考察企业 (9 chars).
    cand, ref = chars("李鹏考察企业"), chars("李鹏在北京考察企业")
    # ROUGE-1: all 6 candidate chars occur in the reference: P = 6/6, R = 6/9, F = 2 * 1 * 2/3 / (5/3) = 0.8
    r1 = metrics.rouge_n(cand, ref, 1)
    assert r1["p"] == pytest.approx(1.0) and r1["r"] == pytest.approx(2 / 3) and r1["f"] == pytest.approx(0.8)
    # ROUGE-2: candidate bigrams 李鹏 鹏考 考察 察企 企业 (5); reference 李鹏 鹏在 在北 北京 京考 考察 察企 企业 (8);
    # common: 李鹏 考察 察企 企业 = 4 -> P = 4/5, R = 4/8, F = 2 * 0.8 * 0.5 / 1.3 = 8/13
    r2 = metrics.rouge_n(cand, ref, 2)
    assert r2["p"] == pytest.approx(0.8) and r2["r"] == pytest.approx(0.5) and r2["f"] == pytest.approx(8 / 13)
    # ROUGE-L: the candidate is a subsequence of the reference: LCS = 6 -> same as ROUGE-1
    rl = metrics.rouge_l(cand, ref)
    assert rl["p"] == pytest.approx(1.0) and rl["r"] == pytest.approx(2 / 3) and rl["f"] == pytest.approx(0.8)


def test_clipped_counts():
    # candidate 的的的的, reference 的确的: the candidate's 4 的 are clipped to the reference's 2.
    cand, ref = chars("的的的的"), chars("的确的")
    # ROUGE-1: overlap 2, P = 2/4, R = 2/3, F = 2 * 1/2 * 2/3 / (7/6) = 4/7
    assert metrics.rouge_n(cand, ref, 1)["f"] == pytest.approx(4 / 7)
    # ROUGE-2: {的的: 3} vs {的确: 1, 确的: 1}: nothing in common
    assert metrics.rouge_n(cand, ref, 2)["f"] == 0.0
    # ROUGE-L: LCS = 2 (的 ... 的) -> P = 2/4, R = 2/3, F = 4/7
    assert metrics.rouge_l(cand, ref)["f"] == pytest.approx(4 / 7)


def test_order_matters_for_rouge2_and_rougeL_only():
    cand, ref = chars("北京上海"), chars("上海北京")
    assert metrics.rouge_n(cand, ref, 1)["f"] == pytest.approx(1.0)
    # bigrams 北京 京上 上海 vs 上海 海北 北京: 2 common of 3 each -> F = 2/3
    assert metrics.rouge_n(cand, ref, 2)["f"] == pytest.approx(2 / 3)
    # LCS = 2 (北京 or 上海) -> P = R = F = 1/2
    assert metrics.rouge_l(cand, ref)["f"] == pytest.approx(0.5)


def test_lcs_length():
    assert metrics.lcs_length("ABCBDAB", "BDCABA") == 4  # the textbook example (BCBA)
    assert metrics.lcs_length("", "abc") == 0
    assert metrics.lcs_length("abc", "abc") == 3
    assert metrics.lcs_length("abc", "def") == 0


def test_degenerate_inputs():
    assert metrics.rouge_n([], chars("标题"), 1) == {"p": 0.0, "r": 0.0, "f": 0.0}
    assert metrics.rouge_l([], chars("标题"))["f"] == 0.0
    # one character holds no bigram
    assert metrics.rouge_n(chars("标"), chars("标题"), 2)["f"] == 0.0
    assert metrics.rouge_n(chars("标题"), chars("标题"), 2)["f"] == pytest.approx(1.0)


def test_rouge_chinese_normalises_and_averages():
    # NFKC: full-width digits equal ASCII ones; whitespace is ignored.
    assert metrics.chinese_chars("１９９８ 年，") == ["1", "9", "9", "8", "年", ","]
    same = metrics.rouge_chinese(["１９９８年"], ["1998 年"])
    assert same["rouge1"] == pytest.approx(1.0) and same["rouge2"] == pytest.approx(1.0)
    assert same["rougeL"] == pytest.approx(1.0) and same["pairs"] == 1
    # the mean of the per-pair F1: pair 1 as in test_subsequence_title, pair 2 as in test_order_matters...
    scores = metrics.rouge_chinese(["李鹏考察企业", "北京上海"], ["李鹏在北京考察企业", "上海北京"])
    assert scores["rouge1"] == pytest.approx((0.8 + 1.0) / 2)
    assert scores["rouge2"] == pytest.approx((8 / 13 + 2 / 3) / 2)
    assert scores["rougeL"] == pytest.approx((0.8 + 0.5) / 2)
    assert scores["pairs"] == 2
    assert metrics.rouge_chinese([], [])["rouge1"] == 0.0
    with pytest.raises(ValueError):
        metrics.rouge_chinese(["a"], [])
