"""GLMForMultipleChoice's standard (B, C, T) batch (AutoModelForMultipleChoice, run_swag) scores each choice exactly as
the Hub / FlagAI form (build_inputs_for_multiple_choice with the context + [MASK]) does."""

import pytest
import torch
from material import english_vocab

from flagai_hf import GLMChineseTokenizer, GLMConfig, GLMEnglishTokenizer, GLMForMultipleChoice

ZH_CONTEXTS = ["北京是中国的首都", "一减一等于零，对吗？答案："]
ZH_CHOICES = [["对", "不对的哦", "也许吧"], ["不对", "对", "我也不知道呢"]]
EN_CONTEXTS = ["the capital of china is", "one minus one equals zero, right? answer:"]
EN_CHOICES = [["beijing", "a big city in the north", "shanghai"], ["no", "yes", "i do not know"]]


@pytest.fixture(scope="module")
def chinese():
    tokenizer = GLMChineseTokenizer()
    torch.manual_seed(0)
    config = GLMConfig(vocab_size=50048, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                       max_position_embeddings=64)
    return GLMForMultipleChoice(config).eval(), tokenizer


@pytest.fixture(scope="module")
def english():
    tokenizer = GLMEnglishTokenizer(vocab_file=english_vocab())
    torch.manual_seed(0)
    config = GLMConfig(vocab_size=30592, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                       max_position_embeddings=64)  # the English layout's ids ([SEP] 102, sop 30522, [MASK] 103)
    return GLMForMultipleChoice(config).eval(), tokenizer


def standard_batch(tokenizer, contexts, choices):
    """What run_swag's preprocessing + DataCollatorForMultipleChoice build: (B, C, T) pairs, right-padded."""
    first = [context for context, row in zip(contexts, choices) for _ in row]
    second = [choice for row in choices for choice in row]
    encoded = tokenizer(first, second, padding=True, return_tensors="pt")
    shape = (len(contexts), len(choices[0]), -1)
    return {key: encoded[key].reshape(shape) for key in ("input_ids", "attention_mask")}


@pytest.mark.parametrize("family, mask", [("chinese", "[MASK]"), ("english", " [MASK]")])
def test_standard_batch_scores_equal_the_hub_form(family, mask, request):
    model, tokenizer = request.getfixturevalue(family)
    contexts, choices = (ZH_CONTEXTS, ZH_CHOICES) if family == "chinese" else (EN_CONTEXTS, EN_CHOICES)
    labels = torch.tensor([1, 0])
    with torch.no_grad():
        standard = model(**standard_batch(tokenizer, contexts, choices), labels=labels)
        hub_inputs = tokenizer.build_inputs_for_multiple_choice(
            tokenizer([c + mask for c in contexts], padding=True, return_tensors="pt"), choices)
        hub = model(**hub_inputs, labels=labels)
    assert standard.logits.shape == (2, 3)
    assert (standard.logits - hub.logits).abs().max().item() <= 1e-5
    assert abs(standard.loss.item() - hub.loss.item()) <= 1e-5
    assert (standard.logits < 0).all()  # summed log-probabilities


def test_standard_batch_trains(chinese):
    model, tokenizer = chinese
    model.train()
    try:
        out = model(**standard_batch(tokenizer, ZH_CONTEXTS, ZH_CHOICES), labels=torch.tensor([0, 2]))
        out.loss.backward()
    finally:
        model.eval()
        model.zero_grad()
    assert torch.isfinite(out.loss)


def test_standard_batch_refuses_what_it_cannot_read(chinese):
    model, tokenizer = chinese
    batch = standard_batch(tokenizer, ZH_CONTEXTS, ZH_CHOICES)
    singles = tokenizer([c for row in ZH_CHOICES for c in row], padding=True, return_tensors="pt")
    with pytest.raises(ValueError, match=r"pair \[CLS\] context \[SEP\] choice"):
        model(input_ids=singles["input_ids"].reshape(2, 3, -1),
              attention_mask=singles["attention_mask"].reshape(2, 3, -1))
    left = {key: value.flip(-1) for key, value in batch.items()}
    with pytest.raises(ValueError, match="right-padded"):
        model(**left)
    with pytest.raises(ValueError, match=r"labels must be \(batch,\)"):
        model(**batch, labels=torch.tensor([[0], [1]]))
    with pytest.raises(ValueError, match="position_ids"):
        model(**batch, position_ids=torch.zeros(6, 2, batch["input_ids"].shape[-1], dtype=torch.long))
    with pytest.raises(ValueError, match="choice_ids and choice_indices"):
        model(input_ids=batch["input_ids"][:, 0])
    tiny = GLMForMultipleChoice(GLMConfig(vocab_size=64, hidden_size=8, num_hidden_layers=1, num_attention_heads=2))
    with pytest.raises(ValueError, match="config.sep_token_id"):
        tiny(input_ids=torch.ones(1, 2, 5, dtype=torch.long))
