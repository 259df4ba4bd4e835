"""Exported folders load with transformers alone: a fresh process where flagai_hf cannot be imported gets the same
tokens, logits (<= 1e-6) and greedy generate() tokens as flagai_hf, and pipelines work on them."""

import json

import pytest
import torch
from export_fixtures import (
    GLM_TEXT,
    export_family,
    glm_inputs,
    max_diff,
    run_worker,
    save_inputs,
)
from transformers import pipeline

from flagai_hf.auto_registration import AUTO_MODELS
from flagai_hf.export import model_auto_map

TOLERANCE = 1e-6
TEXTS = {"bert": ["北京是中国的首都", "欢迎来到上海"], "glm": [GLM_TEXT, "清华大学位于[MASK]。"],
         "gpt2": ["Hello world, this is a test", "GPT-2 exported"], "t5": ["北京是中国的首都", "欢迎来到上海"]}


def model_entries(models, folders, inputs_of, tmp_path, generate=None):
    """Worker job entries: every Auto class of the family, on the folder of its class, with its inputs."""
    entries, expected = [], {}
    for auto_name, folder in folders.items():
        model = next(m for m in models.values() if str(folder).endswith(type(m).__name__))
        inputs = inputs_of(auto_name, model)
        entry = {"key": auto_name, "auto": auto_name, "source": str(folder),
                 "inputs": save_inputs(inputs, tmp_path / f"{auto_name}.pt")}
        with torch.no_grad():
            expected[auto_name] = {"logits": model(**inputs).logits}
        if generate is not None and model.can_generate():
            generate_inputs, kwargs = generate(model)
            entry["generate"] = kwargs
            entry["generate_inputs"] = save_inputs(generate_inputs, tmp_path / f"{auto_name}-generate.pt")
            with torch.no_grad():
                expected[auto_name]["generated"] = model.generate(**generate_inputs, **kwargs)
        entries.append(entry)
    return entries, expected


def check_models(results, expected, family):
    diffs = {}
    for key, wanted in expected.items():
        got = results[key]
        assert got["class"].startswith("transformers_modules."), got["class"]  # the exported code, not flagai_hf
        assert got["config_class"].startswith("transformers_modules."), got["config_class"]
        diffs[key] = max_diff(got["logits"], wanted["logits"])
        assert diffs[key] <= TOLERANCE, (key, diffs[key])
        if "generated" in wanted:
            assert torch.equal(got["generated"], wanted["generated"]), key
    print(f"\n{family}: max |logits diff| exported vs flagai_hf: {json.dumps(diffs)}")
    return diffs


def tokenizer_entry(family, folder, tokenizer):
    expected = [list(ids) for ids in tokenizer(TEXTS[family])["input_ids"]]
    return {"key": "tokenizer", "source": str(folder), "texts": TEXTS[family]}, expected


def test_config_auto_map_lists_every_registered_head():
    """Registry-driven: for each family, auto_map == AutoConfig + every (Auto class -> model) of AUTO_MODELS."""
    for config_class in {config for _, config, _ in AUTO_MODELS}:
        entries = model_auto_map(config_class)
        expected = {auto.__name__: model.__name__ for auto, config, model in AUTO_MODELS if config is config_class}
        assert entries.pop("AutoConfig").endswith("." + config_class.__name__)
        assert {name: ref.rsplit(".", 1)[1] for name, ref in entries.items()} == expected


def test_bert_exported_heads_and_ner_pipeline(tmp_path):
    tokenizer, models, folders = export_family("bert", tmp_path)
    encoded = dict(tokenizer(TEXTS["bert"], padding=True, return_tensors="pt"))
    entries, expected = model_entries(models, folders, lambda name, model: encoded, tmp_path)
    token_entry, token_ids = tokenizer_entry("bert", folders["AutoModel"], tokenizer)
    ner_text = "我在北京工作"
    ner_folder = str(folders["AutoModelForTokenClassification"])
    results = run_worker({"tokenizers": [token_entry], "models": entries,
                          "pipelines": [{"key": "ner", "task": "ner", "source": ner_folder, "text": ner_text,
                                         "options": {"aggregation_strategy": "simple"}}]}, tmp_path)
    assert results["tokenizer"]["input_ids"] == token_ids
    assert results["tokenizer"]["class"].startswith("transformers_modules.")
    check_models(results, expected, "bert")

    reference = pipeline("ner", model=models["AutoModelForTokenClassification"], tokenizer=tokenizer,
                         aggregation_strategy="simple")(ner_text)
    got = results["ner"]["output"]
    assert results["ner"]["class"].startswith("transformers_modules.")
    assert [(e["entity_group"], e["word"], e["start"], e["end"]) for e in got] == \
        [(e["entity_group"], e["word"], e["start"], e["end"]) for e in reference]
    assert got and all(abs(a["score"] - float(b["score"])) <= 1e-5 for a, b in zip(got, reference))


def test_glm_exported_heads_generate_and_fill_a_blank(tmp_path):
    tokenizer, models, folders = export_family("glm", tmp_path)
    assert (folders["AutoModelForSeq2SeqLM"] / "cog-pretrain.model").is_file()
    generation, forward = glm_inputs(tokenizer)
    context = tokenizer(["北京是中国的首都，[MASK]"], return_tensors="pt")
    choice_inputs = dict(tokenizer.build_inputs_for_multiple_choice(context, [["北京", "上海"]]))
    plain = {"input_ids": forward["input_ids"]}

    def inputs_of(auto_name, model):
        return {"AutoModelForSeq2SeqLM": forward, "AutoModelForMultipleChoice": choice_inputs}.get(auto_name, plain)

    kwargs = dict(max_new_tokens=6, do_sample=False, eos_token_id=tokenizer.eop_token_id,
                  pad_token_id=tokenizer.pad_token_id)
    entries, expected = model_entries(models, folders, inputs_of, tmp_path, generate=lambda model: (generation, kwargs))
    token_entry, token_ids = tokenizer_entry("glm", folders["AutoModel"], tokenizer)
    blank = {"key": "blank", "source": str(folders["AutoModelForSeq2SeqLM"]), "text": GLM_TEXT, "max_new_tokens": 6}
    results = run_worker({"tokenizers": [token_entry], "models": entries, "blank_filling": [blank]}, tmp_path)
    assert results["tokenizer"]["input_ids"] == token_ids
    check_models(results, expected, "glm")

    # blank filling with the exported tokenizer (GLMChineseTokenizer + its sentencepiece file) and model
    model = models["AutoModelForSeq2SeqLM"]
    inputs, _ = glm_inputs(tokenizer, max_gen_length=7)
    with torch.no_grad():
        reference = model.generate(**inputs, **kwargs)
    filled = results["blank"]
    assert filled["tokenizer_class"].startswith("transformers_modules.")
    assert filled["model_class"].startswith("transformers_modules.")
    assert torch.equal(filled["generated"], reference)
    assert filled["text"] == tokenizer.decode(reference[0, inputs["input_ids"].shape[1]:])
    assert reference.shape[1] > inputs["input_ids"].shape[1]  # something was generated


def test_gpt2_exported_lm_generates_and_text_generation_pipeline(tmp_path):
    tokenizer, models, folders = export_family("gpt2", tmp_path)
    encoded = dict(tokenizer(TEXTS["gpt2"][:1], return_tensors="pt"))
    kwargs = dict(max_new_tokens=5, do_sample=False, pad_token_id=50256)
    entries, expected = model_entries(models, folders, lambda name, model: encoded, tmp_path,
                                      generate=lambda model: (encoded, kwargs))
    token_entry, token_ids = tokenizer_entry("gpt2", folders["AutoModelForCausalLM"], tokenizer)
    call = {"max_new_tokens": 5, "do_sample": False}
    results = run_worker({"tokenizers": [token_entry], "models": entries,
                          "pipelines": [{"key": "textgen", "task": "text-generation",
                                         "source": str(folders["AutoModelForCausalLM"]), "text": "Hello world",
                                         "call": call}]}, tmp_path)
    assert results["tokenizer"]["input_ids"] == token_ids
    check_models(results, expected, "gpt2")
    model = next(iter(models.values()))  # GPT2Model is FlagAI's LM (also GPT2LMHeadModel)
    reference = pipeline("text-generation", model=model, tokenizer=tokenizer)("Hello world", **call)
    assert results["textgen"]["class"].startswith("transformers_modules.")
    assert results["textgen"]["output"] == reference
    assert reference[0]["generated_text"] != "Hello world"


def test_t5_exported_seq2seq_generates(tmp_path):
    tokenizer, models, folders = export_family("t5", tmp_path)
    encoded = dict(tokenizer(TEXTS["t5"], padding=True, return_tensors="pt", return_token_type_ids=False))
    decoder = {"decoder_input_ids": torch.tensor([[101, 2769, 4638], [101, 6821, 3221]])}
    kwargs = dict(max_new_tokens=5, do_sample=False)
    entries, expected = model_entries(models, folders, lambda name, model: {**encoded, **decoder}, tmp_path,
                                      generate=lambda model: (encoded, kwargs))
    token_entry, token_ids = tokenizer_entry("t5", folders["AutoModelForSeq2SeqLM"], tokenizer)
    results = run_worker({"tokenizers": [token_entry], "models": entries}, tmp_path)
    assert results["tokenizer"]["input_ids"] == token_ids
    check_models(results, expected, "t5")


@pytest.mark.parametrize("family", ["bert", "glm", "gpt2", "t5"])
def test_with_flagai_hf_imported_its_registered_classes_win(tmp_path, family):
    """The same folders, in this process (flagai_hf imported): Auto* give flagai_hf's classes, same logits."""
    import transformers

    tokenizer, models, folders = export_family(family, tmp_path)
    for auto_name, folder in folders.items():
        loaded = getattr(transformers, auto_name).from_pretrained(folder, trust_remote_code=True)
        assert type(loaded).__module__.startswith("flagai_hf."), (auto_name, type(loaded))
        assert type(loaded) is type(next(m for m in models.values() if str(folder).endswith(type(m).__name__)))
    # AutoTokenizer: flagai_hf's class unless trust_remote_code=True, where transformers 5.24 prefers the folder's copy
    # for a registered config (tokenization_auto's explicit_local_code); both give the same ids.
    local = transformers.AutoTokenizer.from_pretrained(folders["AutoModel"])
    remote = transformers.AutoTokenizer.from_pretrained(folders["AutoModel"], trust_remote_code=True)
    assert type(local) is type(tokenizer)
    for loaded_tokenizer in (local, remote):
        assert loaded_tokenizer(TEXTS[family])["input_ids"] == tokenizer(TEXTS[family])["input_ids"]
