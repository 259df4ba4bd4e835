"""Fine-tunes exported folders the way transformers' example scripts do, in a process where flagai_hf cannot be
imported (`block_flagai_hf`, as in `remote_code_worker`), and reports what the tests check.

    python trainer_worker.py JOB.json RESULTS.json

JOB.json::

    {"glue": {"source": folder, "output": folder, "rows": [[sentence1, sentence2, label], ...]},
     "swag": {"source": folder, "output": folder,
              "rows": [{"sent1": ..., "sent2": ..., "ending0".."ending3": ..., "label": i}, ...]}}

``glue`` follows examples/pytorch/text-classification/run_glue.py (AutoConfig with ``num_labels`` and
``finetuning_task``, ``AutoModelForSequenceClassification``, pairs padded to ``min(max_seq_length,
tokenizer.model_max_length)``, ``default_data_collator``); ``swag`` follows examples/pytorch/multiple-choice/run_swag.py
(``AutoModelForMultipleChoice``, ``[context] * 4`` against ``f"{sent2} {ending}"``, ``max_seq_length =
min(tokenizer.model_max_length, 1024)``, ``DataCollatorForMultipleChoice``). Each runs ``Trainer.train`` for 2 steps,
``Trainer.predict`` and ``Trainer.save_model``. RESULTS.json per task: the training losses, the prediction shape,
the special ids of the source and saved folders (`special_ids`) and transformers' warnings.
"""

import json
import logging
import math
import sys

import block_flagai_hf  # noqa: F401  (installs the flagai_hf import blocker, as in remote_code_worker)

from special_ids import Messages, disagreements, special_ids  # noqa: E402

import torch  # noqa: E402
from transformers import (  # noqa: E402
    AutoConfig,
    AutoModelForMultipleChoice,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorForMultipleChoice,
    Trainer,
    TrainingArguments,
    default_data_collator,
)


def arguments(output: str) -> TrainingArguments:
    return TrainingArguments(output_dir=output, max_steps=2, per_device_train_batch_size=2,
                             per_device_eval_batch_size=4, learning_rate=1e-3, logging_steps=1, save_strategy="no",
                             report_to="none", use_cpu=True, disable_tqdm=True, dataloader_num_workers=0, seed=0)


def glue(job: dict) -> dict:
    config = AutoConfig.from_pretrained(job["source"], num_labels=2, finetuning_task="mrpc", trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(job["source"], trust_remote_code=True)
    model = AutoModelForSequenceClassification.from_pretrained(job["source"], config=config, trust_remote_code=True)
    max_seq_length = min(128, tokenizer.model_max_length)  # run_glue's default --max_seq_length 128
    first, second, labels = zip(*job["rows"])
    encoded = tokenizer(list(first), list(second), padding="max_length", max_length=max_seq_length, truncation=True)
    rows = [{**{key: values[i] for key, values in encoded.items()}, "label": labels[i]} for i in range(len(labels))]
    return train(model, tokenizer, rows, default_data_collator, job["output"], max_seq_length)


def swag(job: dict) -> dict:
    config = AutoConfig.from_pretrained(job["source"], trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(job["source"], trust_remote_code=True)
    model = AutoModelForMultipleChoice.from_pretrained(job["source"], config=config, trust_remote_code=True)
    max_seq_length = min(tokenizer.model_max_length, 1024)  # run_swag without --max_seq_length
    endings = [f"ending{i}" for i in range(4)]
    first = [row["sent1"] for row in job["rows"] for _ in endings]
    second = [f"{row['sent2']} {row[end]}" for row in job["rows"] for end in endings]
    encoded = tokenizer(first, second, truncation=True, max_length=max_seq_length, padding=False)
    rows = [{**{key: values[4 * i:4 * i + 4] for key, values in encoded.items()}, "label": row["label"]}
            for i, row in enumerate(job["rows"])]
    return train(model, tokenizer, rows, DataCollatorForMultipleChoice(tokenizer=tokenizer), job["output"],
                 max_seq_length)


def train(model, tokenizer, rows, collator, output: str, max_seq_length: int) -> dict:
    before = special_ids(model.name_or_path)
    trainer = Trainer(model=model, args=arguments(output), train_dataset=rows, eval_dataset=rows,
                      processing_class=tokenizer, data_collator=collator)
    trainer.train()
    predictions = trainer.predict(rows).predictions
    trainer.save_model(output)
    after = special_ids(output)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {"losses": losses, "finite": all(math.isfinite(loss) for loss in losses),
            "predictions_shape": list(predictions.shape), "max_seq_length": max_seq_length,
            "model_class": type(model).__module__, "before": before, "after": after,
            "disagreements": disagreements(before) + disagreements(after)}


def main(job_file: str, results_file: str) -> None:
    block_flagai_hf.check_blocked()
    job = json.load(open(job_file, encoding="utf-8"))
    handler = Messages()
    logging.getLogger("transformers").addHandler(handler)
    torch.manual_seed(0)
    results = {}
    for task, run in (("glue", glue), ("swag", swag)):
        if task in job:
            start = len(handler.messages)
            results[task] = run(job[task])
            results[task]["warnings"] = handler.messages[start:]
    json.dump(results, open(results_file, "w", encoding="utf-8"), ensure_ascii=False)


if __name__ == "__main__":
    main(*sys.argv[1:3])
