"""Runs in a fresh process where flagai_hf cannot be imported: loads exported folders (or repo ids) with transformers'
Auto classes and ``trust_remote_code=True`` only, and saves what they compute for the tests to compare.

    python remote_code_worker.py JOB.json RESULTS.pt

JOB.json::

    {"tokenizers": [{"key": k, "source": folder_or_repo_id, "texts": [...], "call": {tokenizer kwargs}}],
     "models": [{"key": k, "auto": "AutoModelForCausalLM", "source": ..., "inputs": "inputs.pt" (a dict of tensors),
                 "generate": {generate kwargs} or null, "generate_inputs": "gen.pt" (default: inputs)}],
     "blank_filling": [{"key": k, "source": ..., "text": "...[gMASK]", "max_new_tokens": n}],
     "pipelines": [{"key": k, "task": "ner", "source": ..., "text": "...", "call": {pipeline call kwargs}}]}

RESULTS.pt: ``{key: {...}}`` with token ids, logits, generated ids, class module names and pipeline outputs.
"""

import json
import sys

import block_flagai_hf  # noqa: F401  (installs the import blocker before anything else is imported)

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoConfig, AutoTokenizer, pipeline  # noqa: E402


def plain(value):
    """Pipeline output as plain Python (numpy scalars to float / int)."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if hasattr(value, "item"):
        return value.item()
    return value


def main(job_file: str, results_file: str) -> None:
    block_flagai_hf.check_blocked()
    job = json.load(open(job_file, encoding="utf-8"))
    results = {}
    torch.manual_seed(0)
    with torch.no_grad():
        for entry in job.get("tokenizers", []):
            tokenizer = AutoTokenizer.from_pretrained(entry["source"], trust_remote_code=True)
            encoded = tokenizer(entry["texts"], **entry.get("call", {}))
            results[entry["key"]] = {"input_ids": [list(ids) for ids in encoded["input_ids"]],
                                     "class": type(tokenizer).__module__ + "." + type(tokenizer).__name__}
        for entry in job.get("models", []):
            config = AutoConfig.from_pretrained(entry["source"], trust_remote_code=True)
            auto_class = getattr(transformers, entry["auto"])
            model = auto_class.from_pretrained(entry["source"], trust_remote_code=True).eval()
            inputs = torch.load(entry["inputs"])
            out = {"class": type(model).__module__ + "." + type(model).__name__,
                   "config_class": type(config).__module__ + "." + type(config).__name__,
                   "logits": model(**inputs).logits}
            if entry.get("generate") is not None:
                generate_inputs = torch.load(entry.get("generate_inputs", entry["inputs"]))
                out["generated"] = model.generate(**generate_inputs, **entry["generate"])
            results[entry["key"]] = out
        for entry in job.get("blank_filling", []):
            tokenizer = AutoTokenizer.from_pretrained(entry["source"], trust_remote_code=True)
            model = transformers.AutoModelForSeq2SeqLM.from_pretrained(entry["source"], trust_remote_code=True).eval()
            context = tokenizer(entry["text"], return_tensors="pt")
            inputs = tokenizer.build_inputs_for_generation(context, max_gen_length=entry["max_new_tokens"] + 1)
            generated = model.generate(**inputs, max_new_tokens=entry["max_new_tokens"], do_sample=False,
                                       eos_token_id=tokenizer.eop_token_id, pad_token_id=tokenizer.pad_token_id)
            span = generated[0, inputs["input_ids"].shape[1]:]
            results[entry["key"]] = {"generated": generated, "text": tokenizer.decode(span),
                                     "tokenizer_class": type(tokenizer).__module__,
                                     "model_class": type(model).__module__}
        for entry in job.get("pipelines", []):
            runner = pipeline(entry["task"], model=entry["source"], trust_remote_code=True,
                              **entry.get("options", {}))
            results[entry["key"]] = {"output": plain(runner(entry["text"], **entry.get("call", {}))),
                                     "class": type(runner.model).__module__}
    torch.save(results, results_file)


if __name__ == "__main__":
    main(*sys.argv[1:3])
