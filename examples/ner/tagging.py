"""What every token-classification example shares: word-level tags to sub-token labels, and entity-level scoring.

* ``encode``: tokenize pre-split words (``is_split_into_words=True``) and put each word's tag on its first sub-token,
  -100 on the other sub-tokens and on ``[CLS]``/``[SEP]`` (``word_ids()``), the convention of Hugging Face's
  ``run_ner.py``;
* ``make_compute_metrics``: ``Trainer``'s ``compute_metrics`` with seqeval's entity-level precision / recall / F1
  (CoNLL matching) and F1 per entity type;
* ``argmax_logits``: ``preprocess_logits_for_metrics`` that keeps the argmax only, so evaluation does not hold every
  ``(B, T, labels)`` logit tensor;
* ``tagging_trainer``: the ``Trainer`` of a token classifier with all of the above;
* ``print_entities``: a pipeline's entities, one per line.
"""

from __future__ import annotations

from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from transformers import DataCollatorForTokenClassification, Trainer


def encode(sentences, tokenizer, label2id, max_length):
    """Tokenize ``(words, tags)`` pairs; label each word's first sub-token.

    Returns the features (the tokenizer's fields plus ``labels``) and the number of tagged words that got no label
    position (truncated, or a word the tokenizer drops) with the number of entity tags among them.
    """
    enc = tokenizer([words for words, _ in sentences], is_split_into_words=True, truncation=True,
                    max_length=max_length)
    fields = [key for key in ("input_ids", "token_type_ids", "attention_mask") if key in enc]
    features, dropped, dropped_entity = [], 0, 0
    for i, (words, tags) in enumerate(sentences):
        labels, previous = [], None
        for word in enc.word_ids(i):
            if word is None or word == previous:  # [CLS]/[SEP]/padding, or a later sub-token of the same word
                labels.append(-100)
            else:
                labels.append(label2id[tags[word]])
            previous = word
        kept = {w for w in enc.word_ids(i) if w is not None}
        missing = [j for j in range(len(words)) if j not in kept]
        dropped += len(missing)
        dropped_entity += sum(tags[j] != "O" for j in missing)
        features.append({key: enc[key][i] for key in fields} | {"labels": labels})
    return features, dropped, dropped_entity


def label_sequences(predictions, label_ids, id2label):
    """Per sentence, the gold and predicted tags at the labelled positions (one per word)."""
    gold, pred = [], []
    for p_row, l_row in zip(predictions, label_ids):
        keep = l_row != -100
        gold.append([id2label[int(x)] for x in l_row[keep]])
        pred.append([id2label[int(x)] for x in p_row[keep]])
    return gold, pred


def make_compute_metrics(id2label):
    """``compute_metrics`` for ``Trainer``: ``precision``, ``recall``, ``f1`` and ``f1_<TYPE>`` per entity type."""
    types = sorted({label[2:] for label in id2label.values() if label[:2] in ("B-", "I-")})

    def compute_metrics(eval_pred):
        predictions, label_ids = eval_pred.predictions, eval_pred.label_ids
        if predictions.ndim == 3:
            predictions = predictions.argmax(-1)
        gold, pred = label_sequences(predictions, label_ids, id2label)
        metrics = {
            "precision": precision_score(gold, pred, zero_division=0),
            "recall": recall_score(gold, pred, zero_division=0),
            "f1": f1_score(gold, pred, zero_division=0),
        }
        report = classification_report(gold, pred, output_dict=True, zero_division=0)
        for name in types:
            if name in report:
                metrics[f"f1_{name}"] = report[name]["f1-score"]
        return {k: float(v) for k, v in metrics.items()}

    return compute_metrics


def argmax_logits(logits, labels):
    """Keep only the argmax over labels (``preprocess_logits_for_metrics``)."""
    if isinstance(logits, tuple):
        logits = logits[0]
    return logits.argmax(-1)


def tagging_trainer(model, training_args, tokenizer, train_features, eval_features, id2label) -> Trainer:
    """``Trainer`` for a token classifier: padding collator (labels padded with -100), entity-level metrics."""
    return Trainer(
        model=model,
        args=training_args,
        data_collator=DataCollatorForTokenClassification(tokenizer, label_pad_token_id=-100),
        train_dataset=train_features,
        eval_dataset=eval_features,
        processing_class=tokenizer,
        compute_metrics=make_compute_metrics(id2label),
        preprocess_logits_for_metrics=argmax_logits,
    )


def print_entities(entities: list[dict]) -> None:
    """``[{"entity_group", "text", "start", "end", "score"}]`` one per line, or ``(no entities)``."""
    width = max((len(e["entity_group"]) for e in entities), default=0)
    for e in entities:
        print(f"  {e['entity_group']:<{width}}  {e['text']!r:<24} [{e['start']}:{e['end']}]  score {e['score']:.3f}")
    if not entities:
        print("  (no entities)")
