"""Plain ``save_pretrained`` writes Hub-ready folders: every head of every family, saved with its tokenizer, loads in a
process that cannot import flagai_hf (``trust_remote_code=True``) with identical logits (0.0) and greedy tokens."""

import json

import torch
from export_fixtures import GLM_TEXT, glm_inputs, max_diff, run_worker, save_inputs, tiny_heads, tokenizer_of

from flagai_hf.export import check_remote_code

TEXTS = {"bert": ["北京是中国的首都", "欢迎来到上海"], "glm": [GLM_TEXT], "gpt2": ["Hello world, this is a test"],
         "t5": ["北京是中国的首都", "欢迎来到上海"]}


def family_cases(family, tokenizer):
    """``(inputs of an Auto class, generate inputs, generate kwargs)`` of the family."""
    if family == "bert":
        encoded = dict(tokenizer(TEXTS["bert"], padding=True, return_tensors="pt"))
        return (lambda auto_name: encoded), None, None
    if family == "glm":
        generation, forward = glm_inputs(tokenizer)
        context = tokenizer(["北京是中国的首都，[MASK]"], return_tensors="pt")
        choice = dict(tokenizer.build_inputs_for_multiple_choice(context, [["北京", "上海"]]))
        plain = {"input_ids": forward["input_ids"]}
        kwargs = dict(max_new_tokens=6, do_sample=False, eos_token_id=tokenizer.eop_token_id,
                      pad_token_id=tokenizer.pad_token_id)
        return (lambda name: {"AutoModelForSeq2SeqLM": forward, "AutoModelForMultipleChoice": choice}.get(name, plain),
                generation, kwargs)
    if family == "gpt2":
        encoded = dict(tokenizer(TEXTS["gpt2"], return_tensors="pt"))
        return (lambda auto_name: encoded), encoded, dict(max_new_tokens=5, do_sample=False, pad_token_id=50256)
    encoded = dict(tokenizer(TEXTS["t5"], padding=True, return_tensors="pt", return_token_type_ids=False))
    decoder = {"decoder_input_ids": torch.tensor([[101, 2769, 4638], [101, 6821, 3221]])}
    return (lambda auto_name: {**encoded, **decoder}), encoded, dict(max_new_tokens=5, do_sample=False)


def test_plain_save_pretrained_of_every_head_loads_without_flagai_hf(tmp_path):
    job, expected, tokens = {"models": [], "tokenizers": []}, {}, {}
    for family in ("bert", "glm", "gpt2", "t5"):
        tokenizer = tokenizer_of(family)
        inputs_of, generate_inputs, kwargs = family_cases(family, tokenizer)
        for auto_name, model in tiny_heads(family, tokenizer).items():
            folder = tmp_path / f"{family}-{type(model).__name__}"
            model.save_pretrained(folder)  # plain save_pretrained: no exporter call
            tokenizer.save_pretrained(folder)
            check_remote_code(folder)
            assert json.loads((folder / "config.json").read_text())["auto_map"]["AutoConfig"]
            key = f"{family}/{auto_name}"
            inputs = inputs_of(auto_name)
            entry = {"key": key, "auto": auto_name, "source": str(folder),
                     "inputs": save_inputs(inputs, tmp_path / f"{family}-{auto_name}.pt")}
            with torch.no_grad():
                expected[key] = {"logits": model(**inputs).logits}
                if generate_inputs is not None and model.can_generate():
                    entry["generate"] = kwargs
                    entry["generate_inputs"] = save_inputs(generate_inputs, tmp_path / f"{family}-{auto_name}-g.pt")
                    expected[key]["generated"] = model.generate(**generate_inputs, **kwargs)
            job["models"].append(entry)
        job["tokenizers"].append({"key": f"{family}/tokenizer", "source": str(folder), "texts": TEXTS[family]})
        tokens[family] = [list(ids) for ids in tokenizer(TEXTS[family])["input_ids"]]

    results = run_worker(job, tmp_path)
    diffs = {}
    for key, wanted in expected.items():
        got = results[key]
        assert got["class"].startswith("transformers_modules."), got["class"]
        assert got["config_class"].startswith("transformers_modules."), got["config_class"]
        diffs[key] = max_diff(got["logits"], wanted["logits"])
        assert diffs[key] == 0.0, (key, diffs[key])
        if "generated" in wanted:
            assert torch.equal(got["generated"], wanted["generated"]), key
    assert any("generated" in wanted for wanted in expected.values())
    for family, ids in tokens.items():
        assert results[f"{family}/tokenizer"]["input_ids"] == ids, family
        assert results[f"{family}/tokenizer"]["class"].startswith("transformers_modules.")
    print(f"\nplain save_pretrained, max |logits diff| without flagai_hf: {json.dumps(diffs)}")


def test_hub_ready_false_writes_transformers_files_only(tmp_path):
    tokenizer = tokenizer_of("bert")
    model = next(iter(tiny_heads("bert", tokenizer).values()))
    model.save_pretrained(tmp_path, hub_ready=False)
    tokenizer.save_pretrained(tmp_path, hub_ready=False)
    assert not list(tmp_path.glob("*.py"))
    assert "auto_map" not in json.loads((tmp_path / "config.json").read_text())
    assert "auto_map" not in json.loads((tmp_path / "tokenizer_config.json").read_text())


def test_with_flagai_hf_imported_a_saved_folder_loads_its_registered_classes(tmp_path):
    import transformers

    tokenizer = tokenizer_of("gpt2")
    for auto_name, model in tiny_heads("gpt2", tokenizer).items():
        model.save_pretrained(tmp_path / auto_name)
        loaded = getattr(transformers, auto_name).from_pretrained(tmp_path / auto_name, trust_remote_code=True)
        assert type(loaded) is type(model)
