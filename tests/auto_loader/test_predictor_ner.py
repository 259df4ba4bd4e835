"""The flagai-ner pipeline (softmax, CRF and GlobalPointer NER) and the Predictor's dispatch and errors."""

import pytest
import torch
from autoloader_folders import checkpoints, msra_texts, one_thread, peoples_daily_texts  # noqa: F401
from transformers import pipeline

from flagai_hf import (
    BertForSequenceLabeling,
    BertForSequenceLabelingCRF,
    BertForSequenceLabelingGP,
    BertModel,
    FlagAIBertTokenizer,
    GLMChineseTokenizer,
    GLMForSeq2Seq,
    GLMModel,
    Predictor,
)
from flagai_hf.ner_pipeline import bio_entities
from flagai_hf.predictor import as_generator

BIO = ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
ROBERTA = checkpoints() / "RoBERTa-base-ch"


@pytest.fixture(scope="module")
def tokenizer():
    return FlagAIBertTokenizer.from_pretrained(ROBERTA)


def load(cls, **kwargs):
    torch.manual_seed(0)
    return cls.from_pretrain(checkpoints(), "RoBERTa-base-ch", **kwargs)


def test_bio_entities():
    tags = ["B-LOC", "I-LOC", "O", "I-PER", "I-PER", "B-ORG", "I-LOC", None, "I-LOC", "B-PER", "B-PER"]
    assert bio_entities(tags) == [("LOC", 0, 1), ("PER", 3, 4), ("ORG", 5, 5), ("LOC", 6, 6), ("LOC", 8, 8),
                                  ("PER", 9, 9), ("PER", 10, 10)]
    # BIOES / BMES: S is a whole entity, E closes one.
    assert bio_entities(["S-LOC", "B-ORG", "M-ORG", "E-ORG", "E-ORG", "O", "LABEL_3"]) == [
        ("LOC", 0, 0), ("ORG", 1, 3), ("ORG", 4, 4)]
    assert bio_entities([]) == []


def test_softmax_matches_token_classification_batched(tokenizer):
    model = load(BertForSequenceLabeling, id2label=dict(enumerate(BIO)))
    texts = msra_texts(4) + peoples_daily_texts(2)
    ours = pipeline("flagai-ner", model=model, tokenizer=tokenizer)
    reference = pipeline("token-classification", model=model, tokenizer=tokenizer, aggregation_strategy="simple")
    batched = ours(texts, batch_size=3)
    for text, entities in zip(texts, batched):
        assert entities == ours(text)
        expected = [(e["entity_group"], e["start"], e["end"]) for e in reference(text)]
        assert [(e["entity_group"], e["start"], e["end"]) for e in entities] == sorted(expected, key=lambda x: x[1:])
        assert all(e["word"] == text[e["start"]:e["end"]] and 0 < e["score"] <= 1 for e in entities)


def test_crf_batched_equals_single_and_respects_max_length(tokenizer):
    model = load(BertForSequenceLabelingCRF, class_num=7)
    ner = pipeline("flagai-ner", model=model, tokenizer=tokenizer, labels=BIO)
    texts = msra_texts(5)
    assert ner(texts, batch_size=5) == [ner(text) for text in texts]
    longest = max(texts, key=len)
    assert all(e["end"] <= 8 for e in ner(longest, max_length=10))  # [CLS] + 8 characters + [SEP]


def test_gp_threshold_and_folder_loading(tokenizer, tmp_path):
    model = load(BertForSequenceLabelingGP, class_num=3, inner_dim=8)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    text = peoples_daily_texts(2)[1]
    ner = pipeline("flagai-ner", model=str(tmp_path), labels=["LOC", "ORG", "PER"])
    assert type(ner.model) is BertForSequenceLabelingGP  # loaded as the class config.architectures names
    everything = ner(text)
    scores = sorted({e["score"] for e in everything})
    cut = (scores[len(scores) // 2 - 1] + scores[len(scores) // 2]) / 2  # between two scores: no rounding ties
    strict = ner(text, threshold=torch.logit(torch.tensor(cut, dtype=torch.float64)).item())
    assert 0 < len(strict) < len(everything)
    assert strict == [e for e in everything if e["score"] > cut]


def test_ner_errors(tokenizer):
    crf = load(BertForSequenceLabelingCRF, class_num=7)
    with pytest.raises(ValueError, match="labels has 3 names but BertForSequenceLabelingCRF has 7 labels"):
        pipeline("flagai-ner", model=crf, tokenizer=tokenizer)("北京", labels=["O", "B-LOC", "I-LOC"])
    with pytest.raises(ValueError, match="not BIO / BIOES tags"):
        pipeline("flagai-ner", model=crf, tokenizer=tokenizer)("北京")  # config.id2label is LABEL_0 ...
    with pytest.raises(ValueError, match="flagai-ner serves BertForSequenceLabeling"):
        pipeline("flagai-ner", model=load(BertModel), tokenizer=tokenizer)


def test_predict_ner_is_flagai_shaped(tokenizer):
    model = load(BertForSequenceLabelingCRF, class_num=7)
    ner = pipeline("flagai-ner", model=model, tokenizer=tokenizer, labels=BIO, decoding="flagai")
    found = 0
    for text in msra_texts(4):
        entities = ner(text)
        got = Predictor(model, tokenizer).predict_ner(text, BIO)  # FlagAI's decoding (test_flagai184_fixtures.py)
        assert got == [(e["start"], e["end"] - 1, e["entity_group"]) for e in entities]
        assert all(text[start:end + 1] == e["word"] for (start, end, _), e in zip(got, entities))  # end inclusive
        found += len(got)
    assert found


def test_predictor_rejects_other_models(tokenizer):
    encoder = Predictor(load(BertModel), tokenizer)
    with pytest.raises(ValueError, match="predict_ner works with BertForSequenceLabeling, BertForSequenceLabelingGP; "
                                         "the model is a BertModel"):
        encoder.predict_ner("北京", BIO)
    with pytest.raises(ValueError, match="predict_cls_classifier works with"):
        encoder.predict_cls_classifier("北京")
    with pytest.raises(ValueError, match="predict_masklm works with BertForMaskedLM"):
        encoder.predict_masklm("北[MASK]")
    with pytest.raises(ValueError, match="cannot generate"):
        encoder.predict_generate_beamsearch("北京")
    labeler = Predictor(load(BertForSequenceLabeling, class_num=7), tokenizer)
    with pytest.raises(ValueError, match="add_spatial_token"):
        labeler.predict_ner("北京", BIO, add_spatial_token=True)
    with pytest.raises(ValueError, match="predict_embedding works with BertModel"):
        labeler.predict_embedding("北京")


def test_glm_model_generates_through_a_view_sharing_its_weights():
    glm = GLMModel.from_pretrain(checkpoints(), "GLM-large-ch")
    view = as_generator(glm)
    assert isinstance(view, GLMForSeq2Seq) and view.glm is glm
    assert all(p.device.type == "cpu" for p in view.parameters())
    assert {p.data_ptr() for p in view.parameters()} == {p.data_ptr() for p in glm.parameters()}
    tokenizer = GLMChineseTokenizer.from_pretrained(checkpoints() / "GLM-large-ch")
    ids = tokenizer(peoples_daily_texts(1)[0], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(view(ids).logits, glm(ids).logits, rtol=0, atol=0)
    # FlagAI's blank-filling usage: a bare GLMModel in the Predictor, as a GLMForSeq2Seq of the same folder would do.
    seq2seq = GLMForSeq2Seq.from_pretrain(checkpoints(), "GLM-large-ch")
    text = "人民日报报道了[MASK]的消息。"
    assert Predictor(glm, tokenizer).predict_generate_beamsearch(text, out_max_length=5, beam_size=2) == \
        Predictor(seq2seq, tokenizer).predict_generate_beamsearch(text, out_max_length=5, beam_size=2)
