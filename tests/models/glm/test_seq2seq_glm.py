"""GLM as a standard seq2seq model: the batch ``DataCollatorForSeq2Seq`` builds from ``tokenizer(sources,
text_target=targets)`` (source ids + 2-D mask, target labels padded with -100, either pad side) gives the loss of GLM's
explicit blank-filling layout from ``build_inputs_for_generation``; ``generate()`` on the plain source gives the tokens
the explicit layout gives; ``Seq2SeqTrainer(predict_with_generate=True)`` and the text2text pipeline run on it with no
GLM code, also in a process that cannot import flagai_hf (a plain ``save_pretrained`` folder, remote code)."""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import DataCollatorForSeq2Seq, pipeline

from flagai_hf import GLMChineseTokenizer, GLMConfig, GLMEnglishTokenizer, GLMForConditionalGeneration
from material import english_vocab

WORKER = Path(__file__).with_name("seq2seq_worker.py")
PLAIN = ["新华社北京电，今天天气很好。", "人民日报报道", "清华大学是一所大学，位于北京市海淀区。"]
MASKED = ["清华大学位于[MASK]。", "[sMASK]他说完就走了。", "一减一等于零，对吗？答案：[gMASK]"]
TARGETS = ["北京天气", "今天的新闻很多", "海淀"]


@pytest.fixture(scope="module")
def tokenizer():
    return GLMChineseTokenizer()


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = GLMConfig(vocab_size=50048, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                       max_position_embeddings=64)
    return GLMForConditionalGeneration(config).eval()


@pytest.fixture(scope="module")
def model64(model):
    """The model in float64: the two layouts then agree far below 1e-6 (in float32 they differ by up to one ulp of
    the loss, ~1e-6 at 10.8: the same terms summed in a different order)."""
    return copy.deepcopy(model).double()


def seq2seq_batch(tokenizer, sources, targets, side):
    """What a standard seq2seq script builds (run_summarization's preprocessing + DataCollatorForSeq2Seq)."""
    features = tokenizer(sources, text_target=targets)
    rows = [{key: features[key][i] for key in ("input_ids", "attention_mask", "labels")} for i in range(len(sources))]
    tokenizer.padding_side = side
    try:
        return DataCollatorForSeq2Seq(tokenizer, return_tensors="pt")(rows)
    finally:
        tokenizer.padding_side = "right"


def explicit_sources(tokenizer, sources):
    """The sources with their blank written: ``[gMASK]`` at the end of a text without one (right padding)."""
    masks = tokenizer.convert_ids_to_tokens(tokenizer.mask_token_ids)
    texts = [text if any(m in text for m in masks) else text + "[gMASK]" for text in sources]
    return tokenizer(texts, return_tensors="pt", padding=True)


@pytest.mark.parametrize("language", ["zh", "en"])
def test_text_target_is_the_span_glm_generates(tokenizer, language):
    """``tokenizer(text_target=...)``: ids + <|endofpiece|>, no [CLS] / end token (truncation keeps the eop); the
    tokenizer is back in input mode afterwards."""
    tok = tokenizer if language == "zh" else GLMEnglishTokenizer(vocab_file=english_vocab())
    text = "今天的新闻很多" if language == "zh" else "the news of the day"
    plain = tok(text, add_special_tokens=False)["input_ids"]
    encoded = tok(text, text_target=text)
    assert encoded["labels"] == plain + [tok.eop_token_id]
    assert encoded["input_ids"] == tok.build_inputs_with_special_tokens(plain) != encoded["labels"]
    assert tok(text_target=text, max_length=3, truncation=True)["input_ids"][-1] == tok.eop_token_id
    assert tok(text)["input_ids"] == encoded["input_ids"]  # input mode again


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("sources", [PLAIN, MASKED, PLAIN[:2] + MASKED[2:]], ids=["plain", "masked", "mixed"])
def test_seq2seq_batch_loss_equals_the_explicit_layout(model64, tokenizer, sources, side):
    batch = seq2seq_batch(tokenizer, sources, TARGETS, side)
    assert (batch["labels"] == -100).any() and (batch["attention_mask"] == 0).any()  # padded on both sides
    explicit = tokenizer.build_inputs_for_generation(explicit_sources(tokenizer, sources), targets=TARGETS)
    with torch.no_grad():
        ours = model64(**batch)
        reference = model64(**explicit)
    assert abs(ours.loss.item() - reference.loss.item()) <= 1e-6
    # The logits are the span's, aligned with the labels: the reference's at its label positions, row by row.
    assert ours.logits.shape[:2] == batch["labels"].shape
    for row in range(len(sources)):
        got = ours.logits[row][batch["labels"][row] != -100]
        expected = reference.logits[row][explicit["labels"][row] != -100]
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-9)


def test_the_seq2seq_form_is_told_apart_by_labels_with_a_2d_mask(model, tokenizer):
    batch = seq2seq_batch(tokenizer, PLAIN, TARGETS, "right")
    with torch.no_grad():
        plain = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    assert plain.logits.shape[:2] == batch["input_ids"].shape  # no labels: the input runs as given
    with pytest.raises(ValueError, match="pass the source's 2-D attention_mask"):
        model(input_ids=batch["input_ids"], labels=batch["labels"])


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("options", [dict(do_sample=False), dict(num_beams=2, do_sample=False)],
                         ids=["greedy", "beams"])
def test_generate_on_a_plain_source_equals_build_inputs_for_generation(model, tokenizer, side, options):
    sources = PLAIN[:2] + MASKED[:1]
    tokenizer.padding_side = side
    try:
        batch = tokenizer(sources, return_tensors="pt", padding=True)
    finally:
        tokenizer.padding_side = "right"
    explicit = tokenizer.build_inputs_for_generation(explicit_sources(tokenizer, sources), max_gen_length=6)
    kwargs = dict(max_new_tokens=5, eos_token_id=tokenizer.eop_token_id, pad_token_id=tokenizer.pad_token_id,
                  **options)
    with torch.no_grad():
        ours = model.generate(**batch, **kwargs)
        reference = model.generate(**explicit, **kwargs)
        counted = model.generate(**batch, max_length=6, **{k: v for k, v in kwargs.items() if k != "max_new_tokens"})
        as_dict = model.generate(**batch, return_dict_in_generate=True, output_scores=True, **kwargs)
    expected = reference[:, explicit["input_ids"].shape[1] - 1:]  # [sop] + the new tokens
    assert torch.equal(ours, expected)
    assert (ours[:, 0] == tokenizer.sop_token_id).all() and ours.shape[1] > 1
    assert torch.equal(counted, ours)  # max_length counts the [sop], as an encoder-decoder's decoder_start
    assert torch.equal(as_dict.sequences, ours) and len(as_dict.scores) == ours.shape[1] - 1


def test_text2text_pipeline_equals_generate_on_the_plain_source(model, tokenizer):
    pipe = pipeline("flagai-text2text-generation", model=model, tokenizer=tokenizer)
    texts = [record["generated_text"] for record in pipe(PLAIN, batch_size=3, max_new_tokens=5)]
    batch = tokenizer(PLAIN, return_tensors="pt", padding=True)
    with torch.no_grad():
        output = model.generate(**batch, max_new_tokens=5, eos_token_id=tokenizer.eop_token_id,
                                pad_token_id=tokenizer.pad_token_id)
    expected = []
    for row in output[:, 1:].tolist():
        row = row[:row.index(tokenizer.eop_token_id)] if tokenizer.eop_token_id in row else row
        expected.append(tokenizer.decode(row, skip_special_tokens=True))
    assert texts == expected and any(expected)


def test_standard_seq2seq_script_in_a_flagai_hf_free_process(model, tokenizer, tmp_path):
    """A plain save_pretrained folder; the worker (flagai_hf blocked) runs run_summarization's calls: tokenizer with
    text_target, DataCollatorForSeq2Seq, the model's loss and generate(), Seq2SeqTrainer 2 steps with
    predict_with_generate, then predict. Before training its loss and tokens equal this process's."""
    folder = tmp_path / "glm"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    sources, targets = PLAIN + MASKED, TARGETS * 2
    batch = seq2seq_batch(tokenizer, sources, targets, "right")
    with torch.no_grad():
        loss = model(**batch).loss.item()
        generated = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                   max_new_tokens=5, eos_token_id=tokenizer.eop_token_id,
                                   pad_token_id=tokenizer.pad_token_id)
    job = {"folder": str(folder), "sources": sources, "targets": targets, "output_dir": str(tmp_path / "run"),
           "max_new_tokens": 5}
    (tmp_path / "job.json").write_text(json.dumps(job, ensure_ascii=False), encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(WORKER), str(tmp_path / "job.json"), str(tmp_path / "out.pt")],
                          capture_output=True, text=True, env=env, timeout=240, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = torch.load(tmp_path / "out.pt")
    assert "flagai_hf" not in out["model_class"] and "transformers_modules" in out["model_class"]
    assert abs(out["loss"] - loss) <= 1e-6
    assert torch.equal(out["generated"], generated)
    assert len(out["train_losses"]) == 2 and all(value == value for value in out["train_losses"])  # finite, 2 steps
    assert "eval_loss" in out["eval_metrics"] and "eval_exact" in out["eval_metrics"]
    assert out["predictions"] == out["generated_after_training"]  # predict_with_generate == generate()
    assert len(out["predictions"]) == len(sources)
