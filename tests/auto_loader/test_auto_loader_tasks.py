"""One test per row of the task table, for every FlagAI model name of the row's family: ``AutoLoader(task, name,
model_dir=...)`` on a tiny local folder saved under that name builds the row's class and the model name's tokenizer,
and the row's pipeline / Predictor method runs on real text (MSRA and People's Daily sentences, English tweets) and
agrees with the model's own outputs computed by hand."""

import pytest
import torch
from autoloader_folders import checkpoints, msra_texts, one_thread, peoples_daily_texts, tweets  # noqa: F401

from flagai_hf import AutoLoader, Predictor
from flagai_hf.auto_loader import MODELS, TASKS
from flagai_hf.ner_pipeline import flagai_bio_entities

BIO = ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
TYPES = ["LOC", "ORG", "PER"]
# Config overrides a row needs (they also check that AutoLoader passes kwargs through to the config).
ROW_KWARGS = {
    "ner": {"id2label": dict(enumerate(BIO))},
    "sequence-labeling": {"id2label": dict(enumerate(BIO))},
    "ner-crf": {"class_num": 7},
    "sequence-labeling-crf": {"class_num": 7},
    "ner-gp": {"class_num": 3, "inner_dim": 8},
    "sequence-labeling-gp": {"class_num": 3, "inner_dim": 8},
    "classification": {"class_num": 3},
    "semantic-matching": {"class_num": 2},
}
ROWS = [(name, task) for name, spec in MODELS.items() if name != "GLM-large-en-generation"
        for task in TASKS[spec.family]]


def real_texts(name: str) -> list[str]:
    if name.endswith("-en"):
        return tweets(2)
    return [msra_texts(1)[0], peoples_daily_texts(2)[1]]


def encode(tokenizer, *texts):
    return tokenizer(*texts, return_tensors="pt")


@pytest.mark.parametrize("name,task", ROWS, ids=[f"{name}-{task}" for name, task in ROWS])
def test_row(name, task):
    spec = TASKS[MODELS[name].family][task]
    loader = AutoLoader(task, name, model_dir=checkpoints(), device="cpu", **ROW_KWARGS.get(task, {}))
    model, tokenizer = loader.get_model(), loader.get_tokenizer()
    assert type(model) is spec.model_class
    assert type(tokenizer) is MODELS[name].tokenizer
    assert not model.training and model.device.type == "cpu"
    assert loader.model_name == name  # no fine-tuned folder here
    predictor = Predictor(model, tokenizer)
    CHECKS[spec.pipeline_task](loader, predictor, task, real_texts(name))


# ------------------------------------------------------------------------------------------------ per pipeline task


def check_embedding(loader, predictor, task, texts):
    model, tokenizer = loader.get_model(), loader.get_tokenizer()
    for text in texts:
        with torch.no_grad():
            expected = model(**encode(tokenizer, text)).last_hidden_state[0].mean(0)
        torch.testing.assert_close(predictor.predict_embedding(text), expected)
        features = loader.get_pipeline()(text, return_tensors=True)  # (1, T, h)
        assert features.shape == (1, len(tokenizer(text)["input_ids"]), model.config.hidden_size)


def check_generation(loader, predictor, task, texts):
    pipe = loader.get_pipeline()
    for text in texts[:1]:
        records = pipe(text, max_new_tokens=4, return_tensors=True, do_sample=False)
        assert len(records) == 1 and 0 < len(records[0]["generated_token_ids"]) <= 4
        greedy = predictor.predict_generate_beamsearch(text, input_max_length=64, out_max_length=4, beam_size=1)
        assert greedy == pipe(text, max_new_tokens=4, do_sample=False, max_source_length=64)[0]["generated_text"]
        beams = predictor.predict_generate_beamsearch(text, input_max_length=64, out_max_length=4, beam_size=2)
        assert isinstance(beams, str)
        torch.manual_seed(3)
        sampled = predictor.predict_generate_randomsample(text, input_max_length=64, out_max_length=4, top_k=5,
                                                          top_p=0.9, repetition_penalty=1.2, temperature=0.8)
        torch.manual_seed(3)
        assert sampled == predictor.predict_generate_randomsample(text, input_max_length=64, out_max_length=4,
                                                                  top_k=5, top_p=0.9, repetition_penalty=1.2,
                                                                  temperature=0.8)


def check_fill_mask(loader, predictor, task, texts):
    model, tokenizer = loader.get_model(), loader.get_tokenizer()
    for text in texts:
        words = text.split(" ") if " " in text else list(text)
        index = len(words) // 2
        joiner = " " if " " in text else ""
        masked = joiner.join(words[:index] + [tokenizer.mask_token] + words[index + 1:])
        inputs = encode(tokenizer, masked)
        position = (inputs["input_ids"][0] == tokenizer.mask_token_id).nonzero().item()
        with torch.no_grad():
            best = model(**inputs).logits[0, position].argmax().item()
        expected = masked.replace(tokenizer.mask_token, tokenizer.decode([best]))
        assert predictor.predict_masklm(masked) == expected


def flagai_entities(tags, offsets, keep):
    """FlagAI's predict_ner grouping (decode_labels) of tags read at every position, entities on [CLS] / [SEP]
    dropped: what Predictor.predict_ner returns (tests/test_flagai184_fixtures.py checks it against FlagAI)."""
    spans = [(kind, first, last) for kind, first, last in flagai_bio_entities(tags, BIO) if keep[first] and keep[last]]
    return sorted((offsets[first][0], offsets[last][1] - 1, kind) for kind, first, last in spans)


def check_token_classification(loader, predictor, task, texts):
    """Softmax NER: the loader's pipeline is transformers' token-classification; Predictor.predict_ner groups the
    argmax tags as FlagAI did."""
    model, tokenizer = loader.get_model(), loader.get_tokenizer()
    assert model.config.id2label == dict(enumerate(BIO))
    found = 0
    for text in texts + msra_texts(3):
        found += len(loader.get_pipeline()(text))
        inputs = tokenizer(text, return_offsets_mapping=True, return_special_tokens_mask=True, return_tensors="pt")
        offsets = inputs.pop("offset_mapping")[0].tolist()
        keep = ~inputs.pop("special_tokens_mask")[0].bool()
        with torch.no_grad():
            tags = model(**inputs).logits[0].argmax(-1).tolist()
        assert predictor.predict_ner(text, target=BIO) == flagai_entities(tags, offsets, keep)
    assert found > 0  # random tiny heads tag plenty of tokens: the comparison is not vacuous


def check_flagai_ner(loader, predictor, task, texts):
    model, tokenizer = loader.get_model(), loader.get_tokenizer()
    is_gp = task.endswith("-gp")
    target = TYPES if is_gp else BIO
    if is_gp:
        assert model.global_pointer.inner_dim == 8 and model.config.num_labels == 3
    found = 0
    for text in texts:
        inputs = tokenizer(text, return_offsets_mapping=True, return_special_tokens_mask=True, return_tensors="pt")
        offsets = inputs.pop("offset_mapping")[0].tolist()
        keep = ~inputs.pop("special_tokens_mask")[0].bool()
        with torch.no_grad():
            logits = model(**inputs).logits
        if is_gp:  # every span scoring > 0 between text tokens
            spans = [(TYPES[kind], first, last) for kind, first, last in (logits[0] > 0).nonzero().tolist()
                     if keep[first] and keep[last]]
            expected = sorted((offsets[first][0], offsets[last][1] - 1, kind) for kind, first, last in spans)
        else:  # FlagAI's Viterbi: every position, the first one held at "O"; FlagAI's grouping
            logits[0, 0, 1:] = float("-inf")
            tags = model.decode(logits, torch.ones_like(keep)[None])[0].tolist()
            expected = flagai_entities(tags, offsets, keep)
        got = predictor.predict_ner(text, target=target)
        assert sorted(got) == expected
        assert all(text[start:end + 1] for start, end, _ in got)
        found += len(got)
    assert found > 0


def check_classification(loader, predictor, task, texts):
    model, tokenizer = loader.get_model(), loader.get_tokenizer()
    assert model.config.num_labels == ROW_KWARGS[task]["class_num"]
    inputs = [(text,) for text in texts]
    if task == "semantic-matching":
        inputs = [(texts[0], texts[1]), (texts[1], texts[0])]
    for pair in inputs:
        with torch.no_grad():
            expected = model(**encode(tokenizer, *pair)).logits[0].argmax().item()
        assert predictor.predict_cls_classifier(pair[0] if len(pair) == 1 else list(pair)) == expected


CHECKS = {
    "feature-extraction": check_embedding,
    "flagai-text2text-generation": check_generation,
    "fill-mask": check_fill_mask,
    "token-classification": check_token_classification,
    "flagai-ner": check_flagai_ner,
    "text-classification": check_classification,
}
