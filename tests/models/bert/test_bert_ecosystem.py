"""BERT with transformers' ecosystem: Trainer fine-tuning with seqeval / accuracy, pipeline("ner"), offline."""

import numpy as np
import pytest
import torch
from material import chinese_vocab, msra_sentences
from seqeval.metrics import f1_score
from transformers import (
    AutoModelForTokenClassification,
    AutoTokenizer,
    DataCollatorForTokenClassification,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
    pipeline,
)

from flagai_hf import BertForSequenceClassification, BertForSequenceLabeling, FlagAIBertConfig, FlagAIBertTokenizer

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
BMES_TO_BIO = {"B": "B", "M": "I", "E": "I", "S": "B"}


def bio(tag: str) -> str:
    return tag if tag == "O" else f"{BMES_TO_BIO[tag[0]]}{tag[1:]}"


@pytest.fixture(scope="module")
def tokenizer():
    return FlagAIBertTokenizer(vocab_file=chinese_vocab())


def tiny_config(**kwargs):
    return FlagAIBertConfig(vocab_size=21128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=128, max_position_embeddings=128, **kwargs)


def encode_ner(tokenizer, sentences):
    features = []
    for chars, tags in sentences:
        encoding = tokenizer(chars, is_split_into_words=True, truncation=True, max_length=64)
        word_ids = encoding.word_ids()
        labels, previous = [], None
        for word in word_ids:
            labels.append(-100 if word is None or word == previous else LABELS.index(bio(tags[word])))
            previous = word
        features.append({**encoding, "labels": labels})
    return features


def training_args(tmp_path, **kwargs):
    return TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", save_strategy="no",
                             logging_steps=5, seed=0, disable_tqdm=True, **kwargs)


def test_trainer_fine_tunes_sequence_labeling_with_seqeval(tmp_path, tokenizer):
    sentences = [s for s in msra_sentences("train", limit=400) if any(t != "O" for t in s[1]) and len(s[0]) <= 40][:48]
    features = encode_ner(tokenizer, sentences)
    model = BertForSequenceLabeling(tiny_config(num_labels=len(LABELS), id2label=dict(enumerate(LABELS)),
                                                label2id={l: i for i, l in enumerate(LABELS)}))

    def compute_metrics(prediction):
        predicted = prediction.predictions.argmax(-1)
        gold, guess = [], []
        for row_labels, row_predicted in zip(prediction.label_ids, predicted):
            keep = row_labels != -100
            gold.append([LABELS[i] for i in row_labels[keep]])
            guess.append([LABELS[i] for i in row_predicted[keep]])
        return {"f1": f1_score(gold, guess)}

    trainer = Trainer(model=model, args=training_args(tmp_path, num_train_epochs=20, learning_rate=5e-3,
                                                      per_device_train_batch_size=16),
                      train_dataset=features, eval_dataset=features,
                      data_collator=DataCollatorForTokenClassification(tokenizer), processing_class=tokenizer,
                      compute_metrics=compute_metrics)
    before = trainer.evaluate()
    trainer.train()
    after = trainer.evaluate()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert losses[-1] < losses[0] * 0.5
    assert after["eval_loss"] < before["eval_loss"] * 0.5
    assert after["eval_f1"] > before["eval_f1"] and after["eval_f1"] > 0.5  # it fits the entities it saw


def test_trainer_fine_tunes_sentence_pair_classification(tmp_path, tokenizer):
    # Semantic matching on real sentences: is the second text a piece of the first sentence, or of another one?
    texts = ["".join(chars) for chars, _ in msra_sentences("test", limit=120) if len(chars) > 12][:80]
    rng = np.random.default_rng(0)
    pairs = []
    for index, text in enumerate(texts):
        start = int(rng.integers(0, len(text) - 8))
        pairs.append((text, text[start:start + 8], 1))
        other = texts[(index + 1) % len(texts)]
        pairs.append((text, other[:8], 0))
    features = [{**tokenizer(a, b, truncation=True, max_length=96), "labels": label} for a, b, label in pairs]
    model = BertForSequenceClassification(tiny_config(num_labels=2))

    def accuracy(prediction):
        return {"accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}

    trainer = Trainer(model=model, args=training_args(tmp_path, num_train_epochs=15, learning_rate=2e-3,
                                                      per_device_train_batch_size=16),
                      train_dataset=features, eval_dataset=features, data_collator=DataCollatorWithPadding(tokenizer),
                      processing_class=tokenizer, compute_metrics=accuracy)
    trainer.train()
    metrics = trainer.evaluate()
    assert metrics["eval_accuracy"] > 0.9


def test_ner_pipeline_on_saved_model(tmp_path, tokenizer):
    config = tiny_config(num_labels=len(LABELS), id2label=dict(enumerate(LABELS)),
                         label2id={l: i for i, l in enumerate(LABELS)})
    model = BertForSequenceLabeling(config).eval()
    # Make the classifier answer from the token identity alone: 北京 -> LOC, every other token -> O.
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([5.0, 0, 0, 0, 0, 0, 0]))
        model.bert.embeddings.word_embeddings.weight.zero_()
    model.bert.layers = torch.nn.ModuleList()  # embeddings -> LayerNorm -> classifier only
    model.config.num_hidden_layers = 0
    north, capital = tokenizer.convert_tokens_to_ids(["北", "京"])
    with torch.no_grad():
        model.bert.embeddings.norm.weight.fill_(1.0)
        model.bert.embeddings.norm.bias.zero_()
        model.bert.embeddings.position_embeddings.weight.zero_()
        model.bert.embeddings.token_type_embeddings.weight.zero_()
        model.bert.embeddings.word_embeddings.weight[north, :2] = torch.tensor([1.0, -1.0])
        model.bert.embeddings.word_embeddings.weight[capital, 2:4] = torch.tensor([1.0, -1.0])
        model.classifier.weight[3, 0] = 20.0  # B-LOC fires on 北
        model.classifier.weight[4, 2] = 20.0  # I-LOC fires on 京
    model.save_pretrained(tmp_path / "ner")
    tokenizer.save_pretrained(tmp_path / "ner")

    loaded = AutoModelForTokenClassification.from_pretrained(tmp_path / "ner")
    assert isinstance(loaded, BertForSequenceLabeling)
    loaded_tokenizer = AutoTokenizer.from_pretrained(tmp_path / "ner")
    assert isinstance(loaded_tokenizer, FlagAIBertTokenizer)
    ner = pipeline("ner", model=loaded, tokenizer=loaded_tokenizer, aggregation_strategy="simple")
    entities = ner("我住在北京市。")
    assert [(e["entity_group"], e["word"].replace(" ", ""), e["start"], e["end"]) for e in entities] == \
        [("LOC", "北京", 3, 5)]
