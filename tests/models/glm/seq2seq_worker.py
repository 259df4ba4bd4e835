"""A standard seq2seq fine-tuning script (the calls of transformers' run_summarization.py) on a GLM folder, in a
process where flagai_hf cannot be imported: everything GLM-specific comes from the folder's remote code.

    python seq2seq_worker.py JOB.json RESULTS.pt

JOB.json: ``{"folder", "sources", "targets", "output_dir", "max_new_tokens"}``. RESULTS.pt: the model class, the
loss and ``generate()`` tokens of the first collated batch before training, the two training losses, the evaluation
metrics, and the ``predict()`` texts beside those of ``generate()`` on the same batches after training.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "export"))
import remote_code_worker  # noqa: E402,F401  (importing it blocks `import flagai_hf`)

import torch  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    DataCollatorForSeq2Seq,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
)


def main(job_file: str, results_file: str) -> None:
    job = json.loads(Path(job_file).read_text(encoding="utf-8"))
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(job["folder"], trust_remote_code=True)
    model = AutoModelForSeq2SeqLM.from_pretrained(job["folder"], trust_remote_code=True)
    model.generation_config.max_new_tokens = job["max_new_tokens"]

    inputs = tokenizer(job["sources"], max_length=48, truncation=True)
    labels = tokenizer(text_target=job["targets"], max_length=16, truncation=True)
    dataset = [{"input_ids": ids, "attention_mask": mask, "labels": target}
               for ids, mask, target in zip(inputs["input_ids"], inputs["attention_mask"], labels["input_ids"])]
    collator = DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100)
    batch = collator(dataset)
    model.eval()
    with torch.no_grad():
        loss = model(**batch).loss.item()
        generated = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])

    def decode(ids):
        ids = [[token for token in row if token >= 0] for row in ids.tolist()]
        return tokenizer.batch_decode(ids, skip_special_tokens=True)

    def compute_metrics(prediction):
        label_ids = torch.as_tensor(prediction.label_ids)
        label_ids = torch.where(label_ids == -100, tokenizer.pad_token_id, label_ids)
        texts, references = decode(torch.as_tensor(prediction.predictions)), decode(label_ids)
        return {"exact": sum(a == b for a, b in zip(texts, references)) / len(texts)}

    args = Seq2SeqTrainingArguments(output_dir=job["output_dir"], max_steps=2, per_device_train_batch_size=3,
                                    per_device_eval_batch_size=3, learning_rate=1e-3, logging_steps=1,
                                    predict_with_generate=True, report_to=[], use_cpu=True, save_strategy="no",
                                    disable_tqdm=True, dataloader_num_workers=0)
    trainer = Seq2SeqTrainer(model=model, args=args, train_dataset=dataset, eval_dataset=dataset,
                             data_collator=collator, processing_class=tokenizer, compute_metrics=compute_metrics)
    trainer.train()
    train_losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    metrics = trainer.evaluate()
    predictions = decode(torch.as_tensor(trainer.predict(dataset).predictions))
    model.eval()
    after = []
    with torch.no_grad():
        for start in range(0, len(dataset), 3):
            part = collator(dataset[start:start + 3])
            after += decode(model.generate(input_ids=part["input_ids"], attention_mask=part["attention_mask"]))
    torch.save({"model_class": type(model).__module__ + "." + type(model).__name__, "loss": loss,
                "generated": generated, "train_losses": train_losses, "eval_metrics": metrics,
                "predictions": predictions, "generated_after_training": after}, results_file)


if __name__ == "__main__":
    main(*sys.argv[1:3])
