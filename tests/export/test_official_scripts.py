"""What Hugging Face's example scripts do, on folders written by plain ``save_pretrained``, in a process that cannot
import flagai_hf: every family and head goes through the calls of run_ner, run_glue, run_mlm, run_clm,
run_summarization / run_translation and run_swag (config with new labels, fast tokenizer, word_ids / offsets, a
changed label count, resize_token_embeddings, the script's data collator, Trainer / Seq2SeqTrainer with
predict_with_generate, checkpoint resume, reload, pipeline). `official_scripts_worker.py` runs them all in ONE fresh
process; each test here checks the facts of one case (docs/export.md lists what each covers)."""

import math
from pathlib import Path

import pytest
import torch
from export_fixtures import run_worker, tiny_heads, tokenizer_of

from flagai_hf.export import family_heads

WORKER = Path(__file__).resolve().with_name("official_scripts_worker.py")
NER_LABELS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]  # the saved head has 3 labels
PAIR_LABELS = ["not_equivalent", "equivalent"]  # the saved BERT head has 3, the GLM one 2
GLM_PAIR_LABELS = ["entailment", "neutral", "contradiction"]

# key: (family, Auto class of the saved head, script, labels)
CASES = {
    "bert/token-classification": ("bert", "AutoModelForTokenClassification", "ner", NER_LABELS),
    "bert/sequence-classification": ("bert", "AutoModelForSequenceClassification", "glue", PAIR_LABELS),
    "bert/masked-lm": ("bert", "AutoModelForMaskedLM", "mlm", None),
    "gpt2/causal-lm": ("gpt2", "AutoModelForCausalLM", "clm", None),
    "t5/seq2seq": ("t5", "AutoModelForSeq2SeqLM", "seq2seq", None),
    "glm/sequence-classification": ("glm", "AutoModelForSequenceClassification", "glue", GLM_PAIR_LABELS),
    "glm/seq2seq": ("glm", "AutoModelForSeq2SeqLM", "seq2seq", None),
    "glm/multiple-choice": ("glm", "AutoModelForMultipleChoice", "swag", None),
}


@pytest.mark.parametrize("family", ["bert", "glm", "gpt2", "t5"])
def test_trainer_evaluation_gathers_logits_only(family):
    """Trainer's prediction step keeps every output entry but ``loss`` and the config's
    ``keys_to_ignore_at_inference``; any other (``last_hidden_state``, ``pooler_output``) turns the evaluation logits
    into a tuple, and run_clm's / run_mlm's ``preprocess_logits_for_metrics`` (``logits.argmax(-1)``) fails."""
    tokenizer = tokenizer_of(family)
    ids = torch.tensor([[5, 6, 7, 8]])
    for auto_name, model in tiny_heads(family, tokenizer).items():
        inputs = {"input_ids": ids, **({"decoder_input_ids": ids} if family == "t5" else {})}
        if auto_name == "AutoModelForMultipleChoice":
            context = tokenizer(["北京是中国的首都，[MASK]"], return_tensors="pt")
            inputs = dict(tokenizer.build_inputs_for_multiple_choice(context, [["北京", "上海"]]))
        with torch.no_grad():
            output = model(**inputs)
        kept = [key for key in output.keys() if key not in model.config.keys_to_ignore_at_inference + ["loss"]]
        assert kept == ["logits"], (type(model).__name__, kept)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Save one folder per case (plain save_pretrained of the tiny head and its tokenizer), run the worker once."""
    root = tmp_path_factory.mktemp("official_scripts")
    job = {"cases": []}
    tokenizers, heads = {}, {}
    for key, (family, auto_name, script, labels) in CASES.items():
        if family not in tokenizers:
            tokenizers[family] = tokenizer_of(family)
            heads[family] = tiny_heads(family, tokenizers[family])
        tokenizer, models = tokenizers[family], heads[family]
        wanted = family_heads(type(next(iter(models.values())).config))[auto_name]
        model = next(model for model in models.values() if type(model) is wanted)
        folder = root / key.replace("/", "-")
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        job["cases"].append({"key": key, "script": script, "source": str(folder), "labels": labels})
    return run_worker(job, root, worker=WORKER)


def facts_of(results, key: str) -> dict:
    facts = results[key]
    assert "error" not in facts, f"{key} failed in the flagai_hf-free process:\n{facts.get('error')}"
    return facts


def check_common(facts: dict, tied: bool | None, lm: bool = False) -> None:
    """Trainer ran, checkpoint resume reached the uninterrupted weights, the saved folder reloads alike; the
    embeddings follow the grown tokenizer (``tied``: whether the output projection must be the input matrix, None for
    heads without one; ``lm``: logits over the whole resized vocabulary)."""
    assert facts["global_step"] == 3 and facts["resumed_step"] == 3
    assert math.isfinite(facts["train_loss"]) and math.isfinite(facts["eval"]["eval_loss"])
    assert facts["resume_max_diff"] <= 1e-6, facts["resume_max_diff"]
    assert facts["reload_max_diff"] == 0.0, facts["reload_max_diff"]
    assert facts["reloaded_class"].startswith("transformers_modules."), facts["reloaded_class"]
    assert {"optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json", "model.safetensors",
            "config.json"} <= set(facts["checkpoint_files"])
    assert any(name.endswith(".py") for name in facts["output_files"]), facts["output_files"]
    grown = facts["model"]
    # the tokenizer got one token: the embeddings (and the config) grew to match, unless they had room already
    assert grown["input_rows"] == max(grown["vocab"], grown["rows_before_resize"]) == grown["config_vocab"], grown
    for embeddings in (grown, facts["reloaded_embeddings"]):
        assert embeddings["input_rows"] == grown["input_rows"] == embeddings["config_vocab"], embeddings
        if tied is not None:
            assert embeddings["output_rows"] == embeddings["input_rows"], embeddings
            assert embeddings["tied"] is tied, embeddings
    assert facts["reloaded_tokenizer_has_new_token"]
    if lm:
        assert facts["logits_shape"][-1] == grown["input_rows"], facts["logits_shape"]


def test_bert_token_classification_run_ner(results):
    facts = facts_of(results, "bert/token-classification")
    check_common(facts, tied=None)
    model = facts["model"]
    assert model["num_labels"] == len(NER_LABELS)
    assert model["label2id"] == {label: i for i, label in enumerate(NER_LABELS)}
    assert model["id2label"] == {str(i): label for i, label in enumerate(NER_LABELS)}
    assert facts["eval"]["eval_labels_counted"] > 0
    # word_ids() + offsets of split words: each token is the piece of its word that its offsets name (the vocabulary
    # is lower case; WordPiece marks continuations with ##), and every word is covered, in order
    pieces = [piece.lower() for _, piece in facts["word_pieces"]]
    assert pieces == [token.removeprefix("##") for token in facts["tokens"]]
    word_ids = [word for word, _ in facts["word_pieces"]]
    assert word_ids == sorted(word_ids) and set(word_ids) == set(range(len(facts["words"])))
    assert len(word_ids) > len(facts["words"])  # some words are several pieces
    for index, word in enumerate(facts["words"]):
        assert "".join(piece for i, piece in facts["word_pieces"] if i == index) == word
    # offsets of a plain string (the NER pipeline's aggregation reads them)
    text = facts["plain_text"]
    for token, (start, end) in zip(facts["plain_tokens"], facts["plain_offsets"]):
        if (start, end) != (0, 0):
            assert text[start:end] == token
    # the trained folder keeps the new labels; the pipeline's per-token labels are the reloaded model's argmax, at
    # the right characters
    assert facts["pipeline_labels"] == sorted(NER_LABELS)
    every = facts["pipeline_every_token"]
    assert [item["entity"] for item in every] == facts["direct_labels"]
    assert [text[item["start"]:item["end"]] for item in every] == list(text)
    for group in facts["pipeline"]:
        assert group["entity_group"] in {"LOC", "PER"}
        assert text[group["start"]:group["end"]] == group["word"].replace(" ", "")


@pytest.mark.parametrize("key, labels", [("bert/sequence-classification", PAIR_LABELS),
                                         ("glm/sequence-classification", GLM_PAIR_LABELS)])
def test_sequence_classification_run_glue(results, key, labels):
    facts = facts_of(results, key)
    check_common(facts, tied=None)
    assert facts["model"]["num_labels"] == len(labels)
    assert 0.0 <= facts["eval"]["eval_accuracy"] <= 1.0
    scores = facts["pipeline"]
    assert sorted(item["label"] for item in scores) == sorted(labels)
    assert abs(sum(item["score"] for item in scores) - 1.0) < 1e-5
    assert facts["pipeline_pair"]["label"] in labels


def test_bert_masked_lm_run_mlm(results):
    facts = facts_of(results, "bert/masked-lm")
    check_common(facts, tied=True, lm=True)
    assert math.isfinite(facts["perplexity"])
    assert len(facts["pipeline"]) == 3
    for candidate in facts["pipeline"]:
        assert candidate["sequence"] and candidate["token_str"] and facts["mask_token"] not in candidate["sequence"]


def test_gpt2_causal_lm_run_clm(results):
    facts = facts_of(results, "gpt2/causal-lm")
    check_common(facts, tied=True, lm=True)
    assert math.isfinite(facts["perplexity"])
    generated = facts["pipeline"][0]["generated_text"]
    assert generated.startswith(facts["prompt"]) and generated == facts["direct_text"]


def check_seq2seq(facts: dict, tied: bool | None) -> None:
    check_common(facts, tied=tied, lm=True)
    assert {"input_ids", "attention_mask", "labels"} <= set(facts["collated_keys"])
    assert facts["label_padding"] > 0  # DataCollatorForSeq2Seq padded the labels with -100
    assert "eval_gen_len" in facts["eval"] and facts["predictions_shape"][0] == 8
    # predict_with_generate's texts are what generate() gives on each source
    assert facts["predicted_texts"] == facts["direct_texts"]


def test_t5_seq2seq_run_summarization(results):
    facts = facts_of(results, "t5/seq2seq")
    check_seq2seq(facts, tied=True)
    assert "decoder_input_ids" in facts["collated_keys"]  # from the model's prepare_decoder_input_ids_from_labels


def test_glm_seq2seq_run_summarization(results):
    check_seq2seq(facts_of(results, "glm/seq2seq"), tied=None)  # GLM's logits come from the word embeddings


def test_glm_multiple_choice_run_swag(results):
    facts = facts_of(results, "glm/multiple-choice")
    check_common(facts, tied=None)
    assert facts["predictions_shape"] == [8, 2]
    assert 0.0 <= facts["eval"]["eval_accuracy"] <= 1.0
