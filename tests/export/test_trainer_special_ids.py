"""Trainer contracts: GLM pairs (run_glue) and multiple choice (run_swag) through ``Trainer`` in a process without
flagai_hf; for every family, ``Trainer.save_model`` leaves config / generation config / tokenizer special ids as they
were (no "Updated tokens" rewrite); tokenizers carry the model's position limit as ``model_max_length``."""

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from export_fixtures import config_of, tokenizer_of, worker_env
from material import english_vocab, gpt2_vocab_files
from special_ids import Messages, disagreements, special_ids
from transformers import AutoModel, AutoTokenizer, Trainer, TrainingArguments, default_data_collator

from flagai_hf import (
    BertForSequenceClassification,
    FlagAIBertConfig,
    FlagAIGPT2Config,
    FlagAIGPT2Tokenizer,
    GLMConfig,
    GLMEnglishTokenizer,
    GLMForConditionalGeneration,
    GLMForMultipleChoice,
    GLMForSequenceClassification,
    GLMSeq2SeqCollator,
    GPT2LMHeadModel,
    T5ForConditionalGeneration,
)

WORKER = Path(__file__).resolve().with_name("trainer_worker.py")
ZH = ["北京是中国的首都", "上海是一座美丽的城市", "今天天气很好", "我们一起去公园散步吧"]
EN = ["the capital of china is beijing", "shanghai is a big city", "the weather is nice today", "let us walk"]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine: one thread is fastest (restored by conftest)."""
    torch.set_num_threads(1)


def test_glue_pairs_and_swag_choices_train_without_flagai_hf(tmp_path):
    tokenizer = tokenizer_of("glm")
    config = config_of("glm", tokenizer)  # max_position_embeddings=64
    sources = {}
    for task, cls in (("glue", GLMForSequenceClassification), ("swag", GLMForMultipleChoice)):
        torch.manual_seed(0)
        sources[task] = tmp_path / f"glm-{task}"
        cls(config).save_pretrained(sources[task])  # folders as a user saves them: model + tokenizer
        tokenizer.save_pretrained(sources[task])
    swag_rows = [{"sent1": ZH[i], "sent2": "所以", **{f"ending{k}": ZH[(i + k) % 4] for k in range(4)}, "label": i}
                 for i in range(4)]
    job = {"glue": {"source": str(sources["glue"]), "output": str(tmp_path / "glue-out"),
                    "rows": [[ZH[i], ZH[(i + 1) % 4], i % 2] for i in range(4)]},
           "swag": {"source": str(sources["swag"]), "output": str(tmp_path / "swag-out"), "rows": swag_rows}}
    work = tmp_path / "worker"
    work.mkdir()
    (work / "job.json").write_text(json.dumps(job, ensure_ascii=False))
    done = subprocess.run([sys.executable, str(WORKER), "job.json", "results.json"], cwd=work,
                          env=worker_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"worker failed:\n{done.stderr[-6000:]}"
    results = json.loads((work / "results.json").read_text())
    for task, shape in (("glue", [4, 2]), ("swag", [4, 4])):
        result = results[task]
        assert result["model_class"].startswith("transformers_modules"), result["model_class"]
        assert len(result["losses"]) == 2 and result["finite"], result["losses"]
        assert result["predictions_shape"] == shape
        assert result["max_seq_length"] == 64  # the position table, not min(128, 1e30)
        assert result["before"]["tokenizer"]["model_max_length"] == 64
        assert result["after"] == result["before"], (result["before"], result["after"])
        assert result["disagreements"] == []
        assert not [m for m in result["warnings"] if "Updated tokens" in m], result["warnings"]


def _rows(tokenizer, texts, labels=None, length=16):
    encoded = tokenizer(texts, padding="max_length", max_length=length, truncation=True,
                        return_token_type_ids=False)
    rows = []
    for i in range(len(texts)):
        row = {key: values[i] for key, values in encoded.items()}
        if labels is None:
            row["labels"] = [t if m else -100 for t, m in zip(row["input_ids"], row["attention_mask"])]
        else:
            row["labels"] = labels[i]
        rows.append(row)
    return rows


def _families(tmp_path):
    """``name -> (model, tokenizer, training rows, collator)`` for every family's trained head."""
    bert_zh, glm_zh = tokenizer_of("bert"), tokenizer_of("glm")
    glm_en = GLMEnglishTokenizer(vocab_file=english_vocab())
    vocab, merges = gpt2_vocab_files()
    gpt2_en = FlagAIGPT2Tokenizer(vocab_file=vocab, merges_file=merges, pad_token="<|endoftext|>")
    t5_zh = tokenizer_of("t5")
    glm_en_config = GLMConfig(vocab_size=30592, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                              max_position_embeddings=64)  # the English layout's ids come from the vocabulary size
    gpt2_zh_config = FlagAIGPT2Config(vocab_size=len(bert_zh), n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                      bos_token_id=bert_zh.cls_token_id, eos_token_id=bert_zh.sep_token_id,
                                      pad_token_id=bert_zh.pad_token_id)
    seq2seq = [{"source": text + "[MASK]", "target": ZH[(i + 1) % 4]} for i, text in enumerate(ZH)]
    seq2seq_en = [{"source": text + " [MASK]", "target": EN[(i + 1) % 4]} for i, text in enumerate(EN)]
    t5_rows = _rows(t5_zh, ZH)
    return {
        "bert": (BertForSequenceClassification(FlagAIBertConfig(
            vocab_size=21128, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=512, num_labels=2)), bert_zh, _rows(bert_zh, ZH, [0, 1, 0, 1]), None),
        "glm-zh": (GLMForConditionalGeneration(config_of("glm", glm_zh)), glm_zh, seq2seq,
                   GLMSeq2SeqCollator(glm_zh, max_source_length=24, max_target_length=12)),
        "glm-en": (GLMForConditionalGeneration(glm_en_config), glm_en, seq2seq_en,
                   GLMSeq2SeqCollator(glm_en, max_source_length=24, max_target_length=12)),
        "gpt2-en": (GPT2LMHeadModel(config_of("gpt2", gpt2_en)), gpt2_en, _rows(gpt2_en, EN), None),
        "gpt2-zh": (GPT2LMHeadModel(gpt2_zh_config), bert_zh, _rows(bert_zh, ZH), None),
        "t5-zh": (T5ForConditionalGeneration(config_of("t5", t5_zh)), t5_zh, t5_rows, None),
    }


def test_trainer_save_model_keeps_every_familys_special_ids(tmp_path):
    handler = Messages()
    logging.getLogger("transformers").addHandler(handler)
    try:
        for name, (model, tokenizer, rows, collator) in _families(tmp_path).items():
            source, output = tmp_path / name, tmp_path / f"{name}-trained"
            model.save_pretrained(source)
            tokenizer.save_pretrained(source)
            before = special_ids(source)
            assert disagreements(before) == [], (name, before)
            loaded = type(model).from_pretrained(source)
            args = TrainingArguments(output_dir=str(tmp_path / f"{name}-run"), max_steps=2,
                                     per_device_train_batch_size=2, save_strategy="no", report_to="none",
                                     use_cpu=True, disable_tqdm=True, remove_unused_columns=collator is None)
            start = len(handler.messages)
            trainer = Trainer(model=loaded, args=args, train_dataset=rows, processing_class=tokenizer,
                              data_collator=collator or default_data_collator)
            trainer.train()
            trainer.save_model(str(output))
            updated = [m for m in handler.messages[start:] if "Updated tokens" in m]
            assert updated == [], (name, updated)
            assert special_ids(output) == before, (name, before, special_ids(output))
            if loaded.can_generate():
                saved = json.loads((output / "generation_config.json").read_text())
                assert saved["eos_token_id"] == loaded.generation_config.eos_token_id
    finally:
        logging.getLogger("transformers").removeHandler(handler)


def test_glm_generation_stops_at_eop_and_eos_from_its_defaults(tmp_path):
    tokenizer = tokenizer_of("glm")
    model = GLMForConditionalGeneration(config_of("glm", tokenizer))
    assert model.config.eos_token_id == tokenizer.eos_token_id == 50000
    assert (model.config.eop_token_id, model.config.sep_token_id, model.config.decoder_start_token_id) == \
        (tokenizer.eop_token_id, tokenizer.sep_token_id, tokenizer.sop_token_id)
    assert model.generation_config.eos_token_id == [tokenizer.eop_token_id, tokenizer.eos_token_id]
    model.save_pretrained(tmp_path / "glm")
    saved = json.loads((tmp_path / "glm" / "generation_config.json").read_text())
    assert saved["eos_token_id"] == [50007, 50000]
    # a backbone folder has no generation_config.json: the generating head still gets GLM's stop ids, not config.json's
    AutoModel.from_pretrained(tmp_path / "glm").save_pretrained(tmp_path / "backbone")
    assert not (tmp_path / "backbone" / "generation_config.json").exists()
    head = GLMForConditionalGeneration.from_pretrained(tmp_path / "backbone")
    assert head.generation_config.eos_token_id == [50007, 50000]
    edited = GLMForConditionalGeneration(config_of("glm", tokenizer))
    edited.generation_config.eos_token_id = 50000  # a saved generation config is taken as it is
    edited.save_pretrained(tmp_path / "edited")
    assert GLMForConditionalGeneration.from_pretrained(tmp_path / "edited").generation_config.eos_token_id == 50000


@pytest.mark.parametrize("vocab_size, expected", [
    (50048, dict(pad_token_id=50000, eos_token_id=50000, sep_token_id=50001, sop_token_id=50006,
                 eop_token_id=50007, mask_token_ids=[50003, 50008, 50009])),
    (30592, dict(pad_token_id=0, eos_token_id=0, sep_token_id=102, sop_token_id=30522, eop_token_id=30523,
                 mask_token_ids=[103, 30525, 30524])),
    (64, dict(pad_token_id=None, eos_token_id=None, sep_token_id=None, sop_token_id=None, eop_token_id=None,
              mask_token_ids=[])),
])
def test_glm_config_special_ids_follow_the_vocabulary_layout(vocab_size, expected):
    config = GLMConfig(vocab_size=vocab_size, hidden_size=8, num_hidden_layers=1, num_attention_heads=2)
    assert {key: getattr(config, key) for key in expected} == expected
    assert config.decoder_start_token_id == expected["sop_token_id"]
    if vocab_size == 30592:  # the layout is the English tokenizer's
        tokenizer = GLMEnglishTokenizer(vocab_file=english_vocab())
        assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.sep_token_id, tokenizer.sop_token_id,
                tokenizer.eop_token_id, tokenizer.mask_token_ids) == tuple(expected.values())


def test_tokenizer_model_max_length_comes_from_the_position_table(tmp_path):
    bert_tokenizer, glm_tokenizer = tokenizer_of("bert"), tokenizer_of("glm")
    bert = BertForSequenceClassification(FlagAIBertConfig(vocab_size=21128, hidden_size=16, num_hidden_layers=1,
                                                          num_attention_heads=2, intermediate_size=32,
                                                          max_position_embeddings=512))  # bert-base-chinese table
    glm = GLMForConditionalGeneration(GLMConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                                max_position_embeddings=1024))  # GLM-large: 1025 rows
    # saved alongside a model, in either order
    bert.save_pretrained(tmp_path / "bert")
    bert_tokenizer.save_pretrained(tmp_path / "bert")
    glm_tokenizer.save_pretrained(tmp_path / "glm")
    glm.save_pretrained(tmp_path / "glm")
    for folder, limit in (("bert", 512), ("glm", 1024)):
        saved = json.loads((tmp_path / folder / "tokenizer_config.json").read_text())
        assert saved["model_max_length"] == limit
        assert AutoTokenizer.from_pretrained(tmp_path / folder).model_max_length == limit
    assert bert_tokenizer.model_max_length == glm_tokenizer.model_max_length == int(1e30)  # the objects unchanged

    # a tokenizer folder without a limit takes the config's (a THUDM Hub config names it max_sequence_length)
    glm_tokenizer.save_pretrained(tmp_path / "thudm")
    assert json.loads((tmp_path / "thudm" / "tokenizer_config.json").read_text())["model_max_length"] == int(1e30)
    (tmp_path / "thudm" / "config.json").write_text(json.dumps({"model_type": "glm", "max_sequence_length": 1024}))
    assert AutoTokenizer.from_pretrained(tmp_path / "thudm").model_max_length == 1024
    # the caller's value and the tokenizer's own limit win; T5 has no position table, so no limit
    assert AutoTokenizer.from_pretrained(tmp_path / "glm", model_max_length=256).model_max_length == 256
    own = tokenizer_of("bert")
    own.model_max_length = 128
    bert.save_pretrained(tmp_path / "own")
    own.save_pretrained(tmp_path / "own")
    assert AutoTokenizer.from_pretrained(tmp_path / "own").model_max_length == 128
    t5_tokenizer = tokenizer_of("t5")
    T5ForConditionalGeneration(config_of("t5", t5_tokenizer)).save_pretrained(tmp_path / "t5")
    t5_tokenizer.save_pretrained(tmp_path / "t5")
    assert AutoTokenizer.from_pretrained(tmp_path / "t5").model_max_length == int(1e30)
