"""FlagAI's forward contract for ``GLMModel``: ``labels`` give a loss (FlagAI's task "lm"), as FlagAI's GLMModel does.

FlagAI 1.8.4 ``GLMModel.forward``: with ``labels`` and ``output_predict``, ``loss = F.cross_entropy(logits.view(-1, V)
.float(), labels.view(-1))`` -- every position counts (padding too), labels are not shifted, only torch's default
``ignore_index`` -100 is skipped.
"""

import pytest
import torch

from flagai_hf.models.glm import GLMConfig, GLMForConditionalGeneration, GLMModel

TINY = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=40,
            pad_token_id=0, eos_token_id=1, sop_token_id=2, mask_token_ids=[3, 4, 5])


def test_labels_give_flagai_lm_loss_at_every_position():
    torch.manual_seed(0)
    model = GLMModel(GLMConfig(**TINY)).eval()
    input_ids = torch.randint(6, 64, (2, 7))
    labels = torch.randint(0, 64, (2, 7))
    labels[1, -2:] = 0  # padding ids count: FlagAI's loss has no mask
    labels[0, 0] = -100  # torch's default ignore_index is the one label skipped
    with torch.no_grad():
        out = model(input_ids, labels=labels)
        plain = model(input_ids)
    assert plain.loss is None
    torch.testing.assert_close(out.logits, plain.logits, rtol=0, atol=0)
    log_probs = torch.log_softmax(out.logits.double(), dim=-1)
    keep = labels != -100
    picked = log_probs[keep].gather(-1, labels[keep].unsqueeze(-1)).squeeze(-1)  # (kept positions,)
    assert abs(out.loss.item() - (-picked.mean()).item()) < 1e-5


def test_glm_model_loss_equals_the_conditional_generation_head_with_the_same_weights():
    torch.manual_seed(1)
    head = GLMForConditionalGeneration(GLMConfig(**TINY)).eval()
    model = GLMModel(head.config).eval()
    model.load_state_dict(head.glm.state_dict())
    input_ids = torch.randint(6, 64, (2, 6))
    labels = torch.randint(6, 64, (2, 6))
    with torch.no_grad():
        ours, theirs = model(input_ids, labels=labels).loss, head(input_ids, labels=labels).loss
    assert abs(ours.item() - theirs.item()) < 1e-6


def test_labels_are_refused_with_a_reason():
    model = GLMModel(GLMConfig(**TINY, output_predict=False)).eval()
    with pytest.raises(ValueError, match="output_predict"):
        model(torch.tensor([[6, 7]]), labels=torch.tensor([[7, 8]]))
    model = GLMModel(GLMConfig(**TINY)).eval()
    with pytest.raises(ValueError, match=r"labels have shape \(1, 3\)"):
        model(torch.tensor([[6, 7]]), labels=torch.tensor([[7, 8, 9]]))
