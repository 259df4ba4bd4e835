"""flagai_hf against the real FlagAI 1.8.4: folders FlagAI itself wrote and outputs FlagAI itself computed.

The fixtures come from tests/fixtures/flagai184/make_fixtures.py, run in a throwaway venv with ``flagai==1.8.4``
(its docstring has the recipe); this test needs only the committed files.
"""

import os

import pytest
import torch

from flagai_hf.model.glm_model import GLMModel

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "flagai184")


@pytest.fixture(scope="module")
def flagai_outputs():
    return torch.load(os.path.join(FIXTURES, "outputs.pt"), weights_only=True)


def test_glm_model_from_a_flagai_checkpoint_matches_flagai_logits_and_loss(flagai_outputs):
    ref = flagai_outputs["glm_model"]
    model = GLMModel.from_pretrain(download_path=FIXTURES, model_name="glm_model").eval()
    with torch.no_grad():
        out = model(input_ids=ref["input_ids"], position_ids=ref["position_ids"],
                    attention_mask=ref["attention_mask"], labels=ref["labels"])
    assert (out.logits - ref["logits"]).abs().max().item() <= 1e-4
    assert abs(out.loss.item() - ref["loss"].item()) <= 1e-4


@pytest.mark.parametrize("name, cls_name", [("gpt2_model", "GPT2Model"), ("bert_cls_classifier", "BertForClsClassifier")])
def test_flagai_written_folders_match_flagai_logits_and_loss(flagai_outputs, name, cls_name):
    from flagai_hf.model import bert_model, gpt2_model
    cls = getattr(gpt2_model if cls_name.startswith("GPT2") else bert_model, cls_name)
    ref = flagai_outputs[name]
    model = cls.from_pretrain(download_path=FIXTURES, model_name=name).eval()
    inputs = {key: ref[key] for key in ("input_ids", "segment_ids", "labels") if key in ref}
    with torch.no_grad():
        out = model(**inputs)
    assert (out.logits - ref["logits"]).abs().max().item() <= 1e-4
    assert abs(out.loss.item() - ref["loss"].item()) <= 1e-4
