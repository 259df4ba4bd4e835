"""Tiny models of every family with real tokenizers, exported folders, and the fresh-process worker runner."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from material import chinese_vocab, gpt2_vocab_files

from flagai_hf import (
    FlagAIBertConfig,
    FlagAIBertTokenizer,
    FlagAIGPT2Config,
    FlagAIGPT2Tokenizer,
    FlagAIT5Config,
    GLMChineseTokenizer,
    GLMConfig,
    T5ChineseTokenizer,
)
from flagai_hf.export import export_for_hub, family_heads

WORKER = Path(__file__).resolve().with_name("remote_code_worker.py")
NER_LABELS = ["O", "B-LOC", "I-LOC"]
GLM_TEXT = "北京是中国的首都，[gMASK]"


def tokenizer_of(family: str):
    if family == "bert":
        return FlagAIBertTokenizer(vocab_file=chinese_vocab())
    if family == "glm":
        return GLMChineseTokenizer()  # cog-pretrain.model from swissarmytransformer
    if family == "gpt2":
        vocab, merges = gpt2_vocab_files()
        return FlagAIGPT2Tokenizer(vocab_file=vocab, merges_file=merges)
    return T5ChineseTokenizer(vocab_file=chinese_vocab())


def config_of(family: str, tokenizer):
    if family == "bert":
        return FlagAIBertConfig(vocab_size=21128, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=64, max_position_embeddings=64, num_labels=len(NER_LABELS),
                                id2label=dict(enumerate(NER_LABELS)),
                                label2id={label: i for i, label in enumerate(NER_LABELS)})
    if family == "glm":
        return GLMConfig(vocab_size=50048, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, eop_token_id=tokenizer.eop_token_id,
                         sep_token_id=tokenizer.sep_token_id, sop_token_id=tokenizer.sop_token_id,
                         mask_token_ids=tokenizer.mask_token_ids, num_labels=2)
    if family == "gpt2":
        return FlagAIGPT2Config(vocab_size=50257, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=50256,
                                eos_token_id=50256, pad_token_id=50256)
    return FlagAIT5Config(vocab_size=21128, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4,
                          relative_attention_num_buckets=8, pad_token_id=tokenizer.pad_token_id,
                          eos_token_id=tokenizer.sep_token_id, decoder_start_token_id=tokenizer.cls_token_id)


def tiny_heads(family: str, tokenizer) -> dict[str, torch.nn.Module]:
    """One tiny model per distinct class registered for the family (keyed by the first Auto class naming it)."""
    config = config_of(family, tokenizer)
    models, seen = {}, set()
    for auto_name, cls in family_heads(type(config)).items():
        if cls in seen:
            continue
        seen.add(cls)
        torch.manual_seed(0)
        models[auto_name] = cls(config).eval()
    return models


def export_family(family: str, root: Path) -> tuple:
    """``(tokenizer, {auto name: model}, {auto name: exported folder})``: every Auto class of the family mapped to the
    folder of the class it names."""
    tokenizer = tokenizer_of(family)
    models = tiny_heads(family, tokenizer)
    folders = {name: export_for_hub(model, root / f"{family}-{type(model).__name__}", tokenizer)
               for name, model in models.items()}
    heads = family_heads(type(next(iter(models.values())).config))
    by_class = {type(models[name]): folder for name, folder in folders.items()}
    return tokenizer, models, {name: by_class[cls] for name, cls in heads.items()}


def glm_inputs(tokenizer, max_gen_length: int = 8):
    """Blank-filling generation inputs of `GLM_TEXT`, and the matching forward inputs of the context + [sop]."""
    generation = tokenizer.build_inputs_for_generation(tokenizer(GLM_TEXT, return_tensors="pt"),
                                                       max_gen_length=max_gen_length)
    length = generation["input_ids"].shape[1]
    forward = {"input_ids": generation["input_ids"], "position_ids": generation["position_ids"][..., :length],
               "attention_mask": generation["generation_attention_mask"][..., :length, :length]}
    return dict(generation), forward


def thudm_state_dict(model) -> dict:
    """A flagai_hf GLM's backbone weights under THUDM's Hub names (written out by hand, as in tests/models/glm)."""
    names = {"embeddings.word_embeddings.weight": "word_embeddings.weight",
             "embeddings.position_embeddings.weight": "transformer.position_embeddings.weight",
             "embeddings.block_position_embeddings.weight": "transformer.block_position_embeddings.weight",
             "final_layernorm.weight": "transformer.final_layernorm.weight",
             "final_layernorm.bias": "transformer.final_layernorm.bias"}
    layer_names = {"attention_norm": "input_layernorm", "attention.query_key_value": "attention.query_key_value",
                   "attention.dense": "attention.dense", "mlp_norm": "post_attention_layernorm",
                   "mlp.dense_h_to_4h": "mlp.dense_h_to_4h", "mlp.dense_4h_to_h": "mlp.dense_4h_to_h"}
    state = {}
    for name, tensor in model.glm.state_dict().items():
        if name in names:
            state[names[name]] = tensor.clone()
            continue
        _, index, rest = name.split(".", 2)  # layers.<i>.<module>.<param>
        module, param = rest.rsplit(".", 1)
        state[f"transformer.layers.{index}.{layer_names[module]}.{param}"] = tensor.clone()
    return state


def worker_env(tmp_path: Path, offline: bool = True, **extra) -> dict:
    """A clean environment: no PYTHONPATH (flagai_hf not on the path), fresh HF caches, offline unless asked."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "HF_ENDPOINT", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE")}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_MODULES_CACHE=str(tmp_path / "hf_modules"),
               TOKENIZERS_PARALLELISM="false", HF_HUB_DISABLE_TELEMETRY="1", **extra)
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return env


def run_worker(job: dict, tmp_path: Path, env: dict | None = None, worker: Path = WORKER) -> dict:
    """Run ``worker`` (default `remote_code_worker.py`) on ``job`` in a fresh process (cwd outside the repository);
    its results."""
    work = tmp_path / "worker"
    work.mkdir(exist_ok=True)
    (work / "job.json").write_text(json.dumps(job, ensure_ascii=False))
    done = subprocess.run([sys.executable, str(worker), "job.json", "results.pt"], cwd=work,
                          env=env if env is not None else worker_env(tmp_path), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, f"worker failed:\n{done.stderr[-6000:]}"
    return torch.load(work / "results.pt", weights_only=False)


def save_inputs(inputs: dict, path: Path) -> str:
    torch.save({key: value for key, value in inputs.items()}, path)
    return str(path)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.float() - b.float()).abs().max().item()
