"""Loading an export by repo id without huggingface.co: from a prepared Hugging Face cache (HF_HUB_OFFLINE=1) and
through a local HF_ENDPOINT mirror on 127.0.0.1; and THUDM's Hub GLM folders through flagai_hf, never GLM-4."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from export_fixtures import (
    GLM_TEXT,
    glm_inputs,
    run_worker,
    save_inputs,
    thudm_state_dict,
    tiny_heads,
    tokenizer_of,
    worker_env,
)

from flagai_hf import GLMForConditionalGeneration
from flagai_hf.export import export_for_hub, folder_revision, place_in_hf_cache, place_in_mirror

REPO_ID = "BAAI/GLM-large-ch"
SERVE_MIRROR = Path(__file__).resolve().parents[2] / "conversion" / "serve_mirror.py"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny GLM (with GLMChineseTokenizer) exported under BAAI/GLM-large-ch, and what flagai_hf computes."""
    tokenizer = tokenizer_of("glm")
    model = tiny_heads("glm", tokenizer)["AutoModelForSeq2SeqLM"]
    root = tmp_path_factory.mktemp("glm_export")
    folder = export_for_hub(model, root / "GLM-large-ch", tokenizer, repo_id=REPO_ID)
    generation, forward = glm_inputs(tokenizer)
    kwargs = dict(max_new_tokens=6, do_sample=False, eos_token_id=tokenizer.eop_token_id,
                  pad_token_id=tokenizer.pad_token_id)
    with torch.no_grad():
        expected = {"logits": model(**forward).logits, "generated": model.generate(**generation, **kwargs)}
    job = {"models": [{"key": "s2s", "auto": "AutoModelForSeq2SeqLM", "source": REPO_ID,
                       "inputs": save_inputs(forward, root / "forward.pt"), "generate": kwargs,
                       "generate_inputs": save_inputs(generation, root / "generation.pt")}],
           "blank_filling": [{"key": "blank", "source": REPO_ID, "text": GLM_TEXT, "max_new_tokens": 6}]}
    return folder, job, expected


def check_results(results, expected):
    s2s = results["s2s"]
    assert s2s["class"].startswith("transformers_modules.BAAI.GLM_hyphen_large_hyphen_ch."), s2s["class"]
    diff = (s2s["logits"] - expected["logits"]).abs().max().item()
    print(f"\nGLM by repo id: max |logits diff| = {diff}")
    assert diff <= 1e-6
    assert torch.equal(s2s["generated"], expected["generated"])
    assert results["blank"]["tokenizer_class"].startswith("transformers_modules.BAAI.")


def test_repo_id_loads_offline_from_a_prepared_cache(tmp_path, exported):
    folder, job, expected = exported
    env = worker_env(tmp_path)  # HF_HUB_OFFLINE=1, HF_HOME=tmp_path/hf_home
    snapshot = place_in_hf_cache(folder, REPO_ID, tmp_path / "hf_home" / "hub")
    revision = (tmp_path / "hf_home" / "hub" / "models--BAAI--GLM-large-ch" / "refs" / "main").read_text()
    assert snapshot.name == revision == folder_revision(folder)
    assert sorted(p.name for p in snapshot.iterdir()) == sorted(p.name for p in folder.iterdir())
    check_results(run_worker(job, tmp_path, env), expected)


def test_repo_id_loads_through_a_local_mirror(tmp_path, exported, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")  # conftest sets it; the worker env below leaves it out anyway
    folder, job, expected = exported
    place_in_mirror(folder, REPO_ID, tmp_path / "mirror")
    server = subprocess.Popen([sys.executable, str(SERVE_MIRROR), str(tmp_path / "mirror"), "--port", "0"],
                              cwd=Path(__file__).resolve().parents[2], stdout=subprocess.PIPE, text=True)
    try:
        first = server.stdout.readline()
        assert first.startswith("serving "), first
        url = first.split(" at ")[1].strip()
        assert url.startswith("http://127.0.0.1:")
        env = worker_env(tmp_path, offline=False, HF_ENDPOINT=url)
        check_results(run_worker(job, tmp_path, env), expected)
    finally:
        server.terminate()
        server.wait(timeout=10)
    # the client cached what the mirror served, under the mirror's revision (the export's content digest)
    cached = tmp_path / "hf_home" / "hub" / "models--BAAI--GLM-large-ch"
    assert (cached / "refs" / "main").read_text() == folder_revision(folder)
    assert (cached / "snapshots" / folder_revision(folder) / "cog-pretrain.model").exists()


def test_thudm_hub_glm_folder_loads_through_flagai_hf_not_glm4(tmp_path):
    """A THUDM Hub GLM folder (model_type "glm", THUDM tensor names under "glm.") loads into flagai_hf's GLM with
    from_pretrained and from_pretrain; transformers' own "glm" (GLM-4) is never picked."""
    import transformers

    tokenizer = tokenizer_of("glm")
    model = tiny_heads("glm", tokenizer)["AutoModelForSeq2SeqLM"]
    config = model.config
    hub_config = {"model_type": "glm", "architectures": ["GLMModel"], "num_layers": config.num_hidden_layers,
                  "vocab_size": config.vocab_size, "hidden_size": config.hidden_size,
                  "num_attention_heads": config.num_attention_heads,
                  "max_sequence_length": config.max_position_embeddings, "output_predict": True,
                  "block_position_encoding": True,
                  "auto_map": {"AutoConfig": "configuration_glm.GLMConfig", "AutoModel": "modeling_glm.GLMModel",
                               "AutoModelForSeq2SeqLM": "modeling_glm.GLMForConditionalGeneration"}}
    folder = tmp_path / "glm-large-chinese"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(hub_config))
    torch.save({"glm." + name: tensor for name, tensor in thudm_state_dict(model).items()},
               folder / "pytorch_model.bin")
    generation, forward = glm_inputs(tokenizer)
    with torch.no_grad():
        expected = model(**forward).logits
        for loaded in (GLMForConditionalGeneration.from_pretrained(folder),
                       GLMForConditionalGeneration.from_pretrain(tmp_path, "glm-large-chinese")):
            assert type(loaded) is GLMForConditionalGeneration
            assert not isinstance(loaded, transformers.GlmPreTrainedModel)
            diff = (loaded(**forward).logits - expected).abs().max().item()
            print(f"\nTHUDM folder via {type(loaded).__name__}: max |logits diff| = {diff}")
            assert diff <= 1e-6
