"""What Hugging Face's example scripts do, run in a fresh process where flagai_hf cannot be imported.

    python official_scripts_worker.py JOB.json RESULTS.pt

JOB.json: ``{"cases": [{"key": k, "script": "ner" | "glue" | "mlm" | "clm" | "seq2seq" | "swag", "source": folder,
"labels": [...] (ner / glue)}]}``. Each script function below makes the calls of transformers' ``examples/pytorch``
script of that name (run_ner, run_glue, run_mlm, run_clm, run_summarization / run_translation, run_swag), on the
saved folder, with ``trust_remote_code=True`` and nothing of flagai_hf:

1. ``AutoConfig.from_pretrained(folder, num_labels=, label2id=, id2label=, finetuning_task=)``, the fast
   ``AutoTokenizer``, a token added to it (as users do for new markers) and ``resize_token_embeddings`` to match;
   ``AutoModelFor*.from_pretrained(folder, config=config, ignore_mismatched_sizes=True)``;
2. the script's tokenisation (``is_split_into_words`` + ``word_ids()`` label alignment, sentence pairs, grouped
   blocks, ``text_target``) mapped over the rows (``Dataset.map``, batched), and the script's data collator;
3. ``Trainer`` / ``Seq2SeqTrainer`` (``predict_with_generate``): train 3 steps (checkpoint at step 2), save_model,
   evaluate, predict; a second trainer from a freshly loaded model resumes from checkpoint-2 and must end on the
   same weights; the saved output folder reloads (same logits) and serves the matching ``pipeline``
   (transformers 5 has none for seq2seq or multiple choice: there, generate() is compared with the predictions).

RESULTS.pt: ``{key: facts}`` (see each function), or ``{key: {"error": traceback}}`` when a call fails.
"""

import json
import math
import sys
import traceback
from pathlib import Path

import block_flagai_hf  # noqa: F401  (installs the flagai_hf import blocker before anything else is imported)
from remote_code_worker import plain

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import (  # noqa: E402
    AutoConfig,
    AutoTokenizer,
    DataCollatorForLanguageModeling,
    DataCollatorForMultipleChoice,
    DataCollatorForSeq2Seq,
    DataCollatorForTokenClassification,
    DataCollatorWithPadding,
    PreTrainedTokenizerFast,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    Trainer,
    TrainingArguments,
    default_data_collator,
    pipeline,
)

# Tiny corpora: Chinese for the BERT / T5 / GLM vocabularies, English for GPT2.
ZH = ["北京是中国的首都", "欢迎来到上海", "我在上海工作", "张三住在北京", "南京的天气很好", "李四去了广州",
      "杭州西湖很美", "王五在深圳上学"]
EN = ["Hello world, this is a test of the language model.", "The quick brown fox jumps over the lazy dog.",
      "Paris is the capital of France and a big city.", "We train a tiny model for a few steps only."]
PLACES = "北京上海南京广州杭州深圳"
# Split words with English ones that WordPiece cuts into several pieces (only the first piece gets the tag).
ENGLISH_NER = [(["John", "lives", "in", "Beijing"], ["B-PER", "O", "O", "B-LOC"]),
               (["Jane", "visited", "Shanghai", "yesterday"], ["B-PER", "O", "B-LOC", "O"])]
NEW_TOKEN = "[NEW_MARKER]"
MAX_STEPS, CHECKPOINT_STEP = 3, 2


class Dataset(list):
    """The part of ``datasets.Dataset`` the scripts use (``from_dict``, batched ``map`` dropping the raw columns),
    over a list of row dicts, which Trainer takes as a map-style dataset (datasets itself is not installed)."""

    @classmethod
    def from_dict(cls, columns: dict) -> "Dataset":
        return cls(dict(zip(columns, values)) for values in zip(*columns.values()))

    @property
    def column_names(self) -> list[str]:
        return list(self[0])

    def map(self, function, batched=True, remove_columns=()) -> "Dataset":
        columns = {name: [row[name] for row in self] for name in self.column_names}
        output = dict(function(columns))
        kept = {name: values for name, values in columns.items() if name not in remove_columns and name not in output}
        return Dataset.from_dict({**kept, **output})

    def remove_columns(self, names) -> "Dataset":
        return Dataset({key: value for key, value in row.items() if key not in names} for row in self)


# ---------------------------------------------------------------------------------------------------------------------
# What every script does: load with the Auto classes, resize for added tokens, train / resume / save / reload
# ---------------------------------------------------------------------------------------------------------------------


def load_tokenizer(source: str):
    """The scripts' ``AutoTokenizer.from_pretrained(..., use_fast=True)``, plus one added token."""
    tokenizer = AutoTokenizer.from_pretrained(source, use_fast=True, trust_remote_code=True)
    tokenizer.add_tokens([NEW_TOKEN])
    return tokenizer


class ModelMaker:
    """``AutoModelFor*.from_pretrained(source, config=config, ignore_mismatched_sizes=True)`` (the checkpoint's head
    may have another label count) and the scripts' ``resize_token_embeddings`` when the tokenizer grew; then
    ``prepare(model)`` (the script's config edits). Called once per Trainer; ``facts`` describe the first model."""

    def __init__(self, auto_name: str, source: str, config, tokenizer, prepare=None):
        self.auto_class = getattr(transformers, auto_name)
        self.source, self.config, self.tokenizer, self.prepare = source, config, tokenizer, prepare
        self.facts = None

    def __call__(self):
        model = self.auto_class.from_pretrained(self.source, config=self.config, ignore_mismatched_sizes=True,
                                                trust_remote_code=True)
        embedding_size = model.get_input_embeddings().weight.shape[0]
        if len(self.tokenizer) > embedding_size:
            model.resize_token_embeddings(len(self.tokenizer))
        if self.prepare is not None:
            self.prepare(model)
        if self.facts is None:
            config = model.config
            self.facts = embedding_facts(model, self.tokenizer) | {
                "rows_before_resize": embedding_size, "num_labels": config.num_labels,
                "label2id": dict(config.label2id), "id2label": {str(k): v for k, v in config.id2label.items()}}
        return model


def embedding_facts(model, tokenizer) -> dict:
    """Sizes after the resize, and whether the output projection still is the input embedding matrix."""
    inputs, outputs = model.get_input_embeddings(), model.get_output_embeddings()
    return {"vocab": len(tokenizer), "input_rows": inputs.weight.shape[0], "config_vocab": model.config.vocab_size,
            "output_rows": None if outputs is None else outputs.weight.shape[0],
            "tied": None if outputs is None else outputs.weight.data_ptr() == inputs.weight.data_ptr(),
            "tie_word_embeddings": getattr(model.config, "tie_word_embeddings", None)}


def arguments(output_dir: Path, seq2seq: bool, **extra):
    cls = Seq2SeqTrainingArguments if seq2seq else TrainingArguments
    return cls(output_dir=str(output_dir), max_steps=MAX_STEPS, save_strategy="steps", save_steps=CHECKPOINT_STEP,
               per_device_train_batch_size=4, per_device_eval_batch_size=4, learning_rate=1e-3, logging_steps=1,
               use_cpu=True, report_to="none", seed=0, dataloader_num_workers=0, disable_tqdm=True, **extra)


def train_resume_reload(work: Path, make_model, tokenizer, train, evaluation, collator, seq2seq=False,
                        compute_metrics=None, preprocess_logits_for_metrics=None, **extra_args) -> dict:
    """Train (checkpoint at step 2), save, evaluate, predict; resume a second run from checkpoint-2 (it must reach
    the same weights); reload the saved folder with its Auto class and compare logits. Returns ``(facts, the
    prediction output, the reloaded model)``."""
    trainer_class = Seq2SeqTrainer if seq2seq else Trainer

    def trainer_of(model, output_dir):
        return trainer_class(model=model, args=arguments(output_dir, seq2seq, **extra_args), train_dataset=train,
                             eval_dataset=evaluation, processing_class=tokenizer, data_collator=collator,
                             compute_metrics=compute_metrics,
                             preprocess_logits_for_metrics=preprocess_logits_for_metrics)

    trainer = trainer_of(make_model(), work / "run")
    train_result = trainer.train()
    trainer.save_model()  # run/ : model, tokenizer and (remote) code files
    trainer.save_state()
    metrics = trainer.evaluate()
    prediction = trainer.predict(evaluation)
    final = {name: tensor.detach().clone() for name, tensor in trainer.model.state_dict().items()}

    resumed = trainer_of(make_model(), work / "resumed")
    resumed_result = resumed.train(resume_from_checkpoint=str(work / "run" / f"checkpoint-{CHECKPOINT_STEP}"))
    resume_diff = max((resumed.model.state_dict()[name] - tensor).abs().max().item() for name, tensor in final.items()
                      if tensor.is_floating_point())

    model = trainer.model.eval()
    auto_name = next(name for name, ref in (model.config.auto_map or {}).items()
                     if ref.endswith("." + type(model).__name__) and name != "AutoModel")
    reloaded = getattr(transformers, auto_name).from_pretrained(work / "run", trust_remote_code=True).eval()
    batch = collator([evaluation[i] for i in range(2)])
    batch = {key: value for key, value in batch.items() if key != "labels"}
    with torch.no_grad():
        logits = model(**batch).logits
        reload_diff = (logits - reloaded(**batch).logits).abs().max().item()
    reloaded_tokenizer = AutoTokenizer.from_pretrained(work / "run", trust_remote_code=True)
    return {"train_loss": train_result.training_loss, "global_step": train_result.global_step,
            "resumed_step": resumed_result.global_step, "resume_max_diff": resume_diff,
            "reload_max_diff": reload_diff, "logits_shape": list(logits.shape),
            "reloaded_class": type(reloaded).__module__ + "." + type(reloaded).__name__,
            "reloaded_tokenizer_has_new_token": NEW_TOKEN in reloaded_tokenizer.get_vocab(),
            "reloaded_embeddings": embedding_facts(reloaded, reloaded_tokenizer),
            "eval": {key: float(value) for key, value in metrics.items() if isinstance(value, (int, float))},
            "predictions_shape": list(np.asarray(prediction.predictions).shape),
            "checkpoint_files": sorted(p.name for p in (work / "run" / f"checkpoint-{CHECKPOINT_STEP}").iterdir()),
            "output_files": sorted(p.name for p in (work / "run").iterdir())}, prediction, reloaded


# ---------------------------------------------------------------------------------------------------------------------
# The scripts
# ---------------------------------------------------------------------------------------------------------------------


def place_tags(words: list[str]) -> list[str]:
    """BIO tags of the place names of ``PLACES`` (two-character names) in a list of characters."""
    tags = ["O"] * len(words)
    for i in range(len(words) - 1):
        if words[i] + words[i + 1] in [PLACES[j:j + 2] for j in range(0, len(PLACES), 2)]:
            tags[i], tags[i + 1] = "B-LOC", "I-LOC"
    return tags


def run_ner(case: dict, work: Path) -> dict:
    """run_ner.py: word-level tags aligned to tokens with ``word_ids()``; DataCollatorForTokenClassification."""
    label_list = case["labels"]
    label_to_id = {label: i for i, label in enumerate(label_list)}
    config = AutoConfig.from_pretrained(case["source"], num_labels=len(label_list), label2id=label_to_id,
                                        id2label=dict(enumerate(label_list)), finetuning_task="ner",
                                        trust_remote_code=True)  # transformers 5 drops finetuning_task (its BERT too)
    tokenizer = load_tokenizer(case["source"])
    if not isinstance(tokenizer, PreTrainedTokenizerFast):  # run_ner refuses slow tokenizers (it needs word_ids)
        raise ValueError(f"run_ner needs a fast tokenizer, got {type(tokenizer).__name__}")
    sentences = [(list(text), place_tags(list(text))) for text in ZH] + ENGLISH_NER
    raw = Dataset.from_dict({"tokens": [words for words, _ in sentences],
                             "ner_tags": [[label_to_id[tag] for tag in tags] for _, tags in sentences]})

    def tokenize_and_align_labels(examples):
        tokenized = tokenizer(examples["tokens"], padding=False, truncation=True, max_length=32,
                              is_split_into_words=True)
        labels = []
        for i, label in enumerate(examples["ner_tags"]):
            word_ids = tokenized.word_ids(batch_index=i)
            previous, label_ids = None, []
            for word_idx in word_ids:
                if word_idx is None:
                    label_ids.append(-100)
                elif word_idx != previous:
                    label_ids.append(label[word_idx])
                else:
                    label_ids.append(-100)
                previous = word_idx
            labels.append(label_ids)
        tokenized["labels"] = labels
        return tokenized

    dataset = raw.map(tokenize_and_align_labels, batched=True, remove_columns=raw.column_names)
    collator = DataCollatorForTokenClassification(tokenizer, pad_to_multiple_of=None)

    # word_ids() and offsets on split words: every token comes from the word word_ids names, at its offsets
    words = ENGLISH_NER[0][0] + ["北京", NEW_TOKEN]
    split = tokenizer(words, is_split_into_words=True, return_offsets_mapping=True)
    word_pieces = [(word_id, words[word_id][start:end])
                   for word_id, (start, end) in zip(split.word_ids(), split["offset_mapping"]) if word_id is not None]
    tokens = [token for token, word_id in zip(split.tokens(), split.word_ids()) if word_id is not None]
    # ...and offsets of a plain string, which the NER pipeline's aggregation reads
    text = "张三住在北京"
    plain_offsets = tokenizer(text, return_offsets_mapping=True)

    def compute_metrics(p):
        from seqeval.metrics import f1_score

        predictions = np.argmax(p.predictions, axis=2)
        true = [[label_list[l] for (pr, l) in zip(prediction, label) if l != -100]
                for prediction, label in zip(predictions, p.label_ids)]
        predicted = [[label_list[pr] for (pr, l) in zip(prediction, label) if l != -100]
                     for prediction, label in zip(predictions, p.label_ids)]
        return {"f1": f1_score(true, predicted), "labels_counted": sum(len(t) for t in true)}

    make_model = ModelMaker("AutoModelForTokenClassification", case["source"], config, tokenizer)
    facts, _, reloaded = train_resume_reload(work, make_model, tokenizer, dataset, dataset, collator,
                                             compute_metrics=compute_metrics)
    with torch.no_grad():
        encoded = tokenizer(text, return_tensors="pt", return_special_tokens_mask=True)
        special = encoded.pop("special_tokens_mask")[0].bool()
        predicted = reloaded(**encoded).logits[0].argmax(-1)[~special]
    direct_labels = [reloaded.config.id2label[int(i)] for i in predicted]
    ner = pipeline("token-classification", model=str(work / "run"), trust_remote_code=True)
    every_token = plain(ner(text, ignore_labels=[]))
    entities = plain(ner(text, aggregation_strategy="simple"))
    return facts | {"model": make_model.facts, "words": words, "word_pieces": word_pieces, "tokens": tokens,
                    "plain_text": text, "plain_offsets": [list(o) for o in plain_offsets["offset_mapping"]],
                    "plain_tokens": plain_offsets.tokens(), "pipeline": entities,
                    "pipeline_every_token": every_token, "direct_labels": direct_labels,
                    "pipeline_labels": sorted(ner.model.config.id2label.values())}


def run_glue(case: dict, work: Path) -> dict:
    """run_glue.py on a sentence-pair task: DataCollatorWithPadding, label_to_id, the text-classification pipeline."""
    label_list = case["labels"]
    config = AutoConfig.from_pretrained(case["source"], num_labels=len(label_list), finetuning_task="mrpc",
                                        trust_remote_code=True)
    tokenizer = load_tokenizer(case["source"])

    def prepare(model):  # run_glue: the label names become the config's mapping
        model.config.label2id = {label: i for i, label in enumerate(label_list)}
        model.config.id2label = dict(enumerate(label_list))
        if model.config.pad_token_id is None:  # run_glue for GPT-style tokenizers
            model.config.pad_token_id = tokenizer.pad_token_id

    make_model = ModelMaker("AutoModelForSequenceClassification", case["source"], config, tokenizer, prepare)
    raw = Dataset.from_dict({"sentence1": ZH, "sentence2": ZH[1:] + ZH[:1],
                             "label": [i % len(label_list) for i in range(len(ZH))]})

    def preprocess_function(examples):
        return tokenizer(examples["sentence1"], examples["sentence2"], padding=False, max_length=32, truncation=True)

    dataset = raw.map(preprocess_function, batched=True, remove_columns=["sentence1", "sentence2"])

    def compute_metrics(p):
        predictions = np.argmax(p.predictions, axis=1)
        return {"accuracy": float((predictions == p.label_ids).mean())}

    facts, _, _ = train_resume_reload(work, make_model, tokenizer, dataset, dataset,
                                      DataCollatorWithPadding(tokenizer), compute_metrics=compute_metrics)
    classifier = pipeline("text-classification", model=str(work / "run"), trust_remote_code=True)
    return facts | {"model": make_model.facts, "pipeline": plain(classifier(ZH[0], top_k=None)),
                    "pipeline_pair": plain(classifier({"text": ZH[0], "text_pair": ZH[1]}))}


def group_texts(examples, block_size: int):
    """run_clm / run_mlm: concatenate, drop the remainder, split into blocks."""
    concatenated = {key: sum(examples[key], []) for key in examples.keys()}
    total = (len(concatenated[list(examples.keys())[0]]) // block_size) * block_size
    return {key: [values[i:i + block_size] for i in range(0, total, block_size)]
            for key, values in concatenated.items()}


def run_mlm(case: dict, work: Path) -> dict:
    """run_mlm.py: grouped blocks with special-token masks; DataCollatorForLanguageModeling; fill-mask pipeline."""
    config = AutoConfig.from_pretrained(case["source"], trust_remote_code=True)
    tokenizer = load_tokenizer(case["source"])
    make_model = ModelMaker("AutoModelForMaskedLM", case["source"], config, tokenizer)

    raw = Dataset.from_dict({"text": ZH * 2})
    tokenized = raw.map(lambda examples: tokenizer(examples["text"], return_special_tokens_mask=True), batched=True,
                        remove_columns=["text"])
    dataset = tokenized.map(lambda examples: group_texts(examples, 16), batched=True)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)

    def preprocess_logits_for_metrics(logits, labels):
        return logits.argmax(dim=-1)

    def compute_metrics(p):
        labels, predictions = p.label_ids.reshape(-1), p.predictions.reshape(-1)
        mask = labels != -100
        return {"accuracy": float((predictions[mask] == labels[mask]).mean()) if mask.any() else 0.0}

    torch.manual_seed(0)
    facts, _, _ = train_resume_reload(work, make_model, tokenizer, dataset, dataset, collator,
                                      compute_metrics=compute_metrics,
                                      preprocess_logits_for_metrics=preprocess_logits_for_metrics)
    facts["perplexity"] = math.exp(facts["eval"]["eval_loss"])
    fill = pipeline("fill-mask", model=str(work / "run"), trust_remote_code=True)
    return facts | {"model": make_model.facts, "mask_token": tokenizer.mask_token,
                    "pipeline": plain(fill(f"北京是中{tokenizer.mask_token}的首都", top_k=3))}


def run_clm(case: dict, work: Path) -> dict:
    """run_clm.py: grouped blocks, labels = input_ids, default_data_collator; the text-generation pipeline."""
    config = AutoConfig.from_pretrained(case["source"], trust_remote_code=True)
    tokenizer = load_tokenizer(case["source"])
    make_model = ModelMaker("AutoModelForCausalLM", case["source"], config, tokenizer)

    raw = Dataset.from_dict({"text": EN * 2})
    tokenized = raw.map(lambda examples: tokenizer(examples["text"]), batched=True, remove_columns=["text"])

    def group(examples):
        result = group_texts(examples, 16)
        result["labels"] = [ids.copy() for ids in result["input_ids"]]
        return result

    dataset = tokenized.map(group, batched=True)

    def preprocess_logits_for_metrics(logits, labels):
        return logits.argmax(dim=-1)

    def compute_metrics(p):
        labels, predictions = p.label_ids[:, 1:].reshape(-1), p.predictions[:, :-1].reshape(-1)
        return {"accuracy": float((predictions == labels).mean())}

    facts, _, _ = train_resume_reload(work, make_model, tokenizer, dataset, dataset, default_data_collator,
                                      compute_metrics=compute_metrics,
                                      preprocess_logits_for_metrics=preprocess_logits_for_metrics)
    facts["perplexity"] = math.exp(facts["eval"]["eval_loss"])
    generator = pipeline("text-generation", model=str(work / "run"), trust_remote_code=True)
    prompt = "Hello world"
    generated = plain(generator(prompt, max_new_tokens=5, do_sample=False))
    reloaded = generator.model
    ids = generator.tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        direct = reloaded.generate(**ids, max_new_tokens=5, do_sample=False)
    return facts | {"model": make_model.facts, "pipeline": generated, "prompt": prompt,
                    "direct_text": generator.tokenizer.decode(direct[0], skip_special_tokens=True)}


def run_seq2seq(case: dict, work: Path) -> dict:
    """run_summarization.py / run_translation.py: ``text_target`` labels, DataCollatorForSeq2Seq (-100 label
    padding, decoder inputs from the model), Seq2SeqTrainer with predict_with_generate; decoded predictions."""
    config = AutoConfig.from_pretrained(case["source"], trust_remote_code=True)
    tokenizer = load_tokenizer(case["source"])

    def prepare(model):
        if model.config.decoder_start_token_id is None:  # the scripts' own check
            raise ValueError("Make sure that `config.decoder_start_token_id` is correctly defined")

    make_model = ModelMaker("AutoModelForSeq2SeqLM", case["source"], config, tokenizer, prepare)

    sources = ZH  # "summarise" each sentence to its first 1, 3 or 5 characters (targets of different lengths)
    targets = [text[:1 + 2 * (i % 3)] for i, text in enumerate(ZH)]
    raw = Dataset.from_dict({"document": sources, "summary": targets})

    def preprocess_function(examples):
        model_inputs = tokenizer(examples["document"], max_length=32, padding=False, truncation=True)
        labels = tokenizer(text_target=examples["summary"], max_length=8, padding=False, truncation=True)
        model_inputs["labels"] = labels["input_ids"]
        return model_inputs

    dataset = raw.map(preprocess_function, batched=True, remove_columns=raw.column_names)
    dataset = dataset.remove_columns([c for c in dataset.column_names if c == "token_type_ids"])
    collator = DataCollatorForSeq2Seq(tokenizer, model=make_model(), label_pad_token_id=-100,
                                      pad_to_multiple_of=None)  # decoder_input_ids from the model, when it makes them
    collated = collator([dataset[i] for i in range(2)])

    def compute_metrics(p):
        predictions = np.where(p.predictions != -100, p.predictions, tokenizer.pad_token_id)
        decoded = tokenizer.batch_decode(predictions, skip_special_tokens=True)
        labels = np.where(p.label_ids != -100, p.label_ids, tokenizer.pad_token_id)
        references = tokenizer.batch_decode(labels, skip_special_tokens=True)
        return {"exact": float(np.mean([a.strip() == b.strip() for a, b in zip(decoded, references)])),
                "gen_len": float(np.mean([np.count_nonzero(row != tokenizer.pad_token_id) for row in predictions]))}

    facts, prediction, reloaded = train_resume_reload(work, make_model, tokenizer, dataset, dataset, collator,
                                                      seq2seq=True, compute_metrics=compute_metrics,
                                                      predict_with_generate=True, generation_max_length=8,
                                                      generation_num_beams=2)
    predictions = np.where(prediction.predictions != -100, prediction.predictions, tokenizer.pad_token_id)
    predicted_texts = tokenizer.batch_decode(predictions, skip_special_tokens=True)
    with torch.no_grad():
        direct = [reloaded.generate(**tokenizer(text, return_tensors="pt", return_token_type_ids=False), num_beams=2,
                                    max_length=8, do_sample=False) for text in sources]
    direct_texts = [tokenizer.decode(ids[0], skip_special_tokens=True) for ids in direct]
    return facts | {"model": make_model.facts, "collated_keys": sorted(collated.keys()),
                    "predicted_texts": predicted_texts, "direct_texts": direct_texts,
                    "label_padding": int((collated["labels"] == -100).sum())}


def run_swag(case: dict, work: Path) -> dict:
    """run_swag.py: each context paired with every ending, tokenised flat and regrouped to (choices, T) per example;
    DataCollatorForMultipleChoice pads to (B, C, T); logits (B, C). (No multiple-choice pipeline exists.)"""
    config = AutoConfig.from_pretrained(case["source"], trust_remote_code=True)
    tokenizer = load_tokenizer(case["source"])
    make_model = ModelMaker("AutoModelForMultipleChoice", case["source"], config, tokenizer)

    endings = [(text[2:], ZH[(i + 1) % len(ZH)][2:]) for i, text in enumerate(ZH)]  # the true ending, a wrong one
    raw = Dataset.from_dict({"sent1": [text[:2] for text in ZH], "ending0": [pair[i % 2] for i, pair in
                                                                             enumerate(endings)],
                             "ending1": [pair[1 - i % 2] for i, pair in enumerate(endings)],
                             "label": [i % 2 for i in range(len(ZH))]})
    ending_names = ["ending0", "ending1"]

    def preprocess_function(examples):
        first_sentences = [[context] * len(ending_names) for context in examples["sent1"]]
        second_sentences = [[examples[end][i] for end in ending_names] for i in range(len(examples["sent1"]))]
        first_sentences = sum(first_sentences, [])
        second_sentences = sum(second_sentences, [])
        tokenized = tokenizer(first_sentences, second_sentences, truncation=True, max_length=32)
        n = len(ending_names)
        return {key: [values[i:i + n] for i in range(0, len(values), n)] for key, values in tokenized.items()}

    dataset = raw.map(preprocess_function, batched=True, remove_columns=["sent1", *ending_names])

    def compute_metrics(p):
        return {"accuracy": float((np.argmax(p.predictions, axis=1) == p.label_ids).mean())}

    facts, _, _ = train_resume_reload(work, make_model, tokenizer, dataset, dataset,
                                      DataCollatorForMultipleChoice(tokenizer), compute_metrics=compute_metrics)
    return facts | {"model": make_model.facts}


SCRIPTS = {"ner": run_ner, "glue": run_glue, "mlm": run_mlm, "clm": run_clm, "seq2seq": run_seq2seq,
           "swag": run_swag}


def main(job_file: str, results_file: str) -> None:
    block_flagai_hf.check_blocked()
    job = json.load(open(job_file, encoding="utf-8"))
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(1)
    results = {}
    for case in job["cases"]:
        work = Path(case["key"].replace("/", "-"))
        work.mkdir()
        torch.manual_seed(0)
        try:
            results[case["key"]] = SCRIPTS[case["script"]](case, work)
        except Exception:  # noqa: BLE001  (reported per case: the test names the failing call)
            results[case["key"]] = {"error": traceback.format_exc()}
    torch.save(results, results_file)


if __name__ == "__main__":
    main(*sys.argv[1:3])
