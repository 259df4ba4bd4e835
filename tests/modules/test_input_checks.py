"""Issue 12 item 6: forwards and generate() refuse malformed input with a ValueError naming the argument, the shape got
and what is accepted (every family and head): an empty batch, sequence length 0, 1-D / 3-D ids, an attention mask
that does not match the ids, a GLM sep outside 0..T, num_beams larger than the vocabulary. generate() of GPT2, GLM and
UniLM stops at the position table and returns what was generated, with a warning."""

import re

import pytest
import torch
from transformers.utils import logging as hf_logging

import flagai_hf

VOCAB, POSITIONS = 50, 8
BERT = flagai_hf.FlagAIBertConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  max_position_embeddings=POSITIONS, num_labels=3)
GLM = flagai_hf.GLMConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                          max_position_embeddings=POSITIONS, num_labels=3, sop_token_id=VOCAB - 4,
                          mask_token_ids=(VOCAB - 3, VOCAB - 2, VOCAB - 1))  # [MASK], [sMASK], [gMASK]
GPT2 = flagai_hf.FlagAIGPT2Config(vocab_size=VOCAB, n_embd=16, n_layer=1, n_head=2, n_positions=POSITIONS)
T5 = flagai_hf.FlagAIT5Config(vocab_size=VOCAB, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
                              decoder_start_token_id=0, pad_token_id=0)
HEADS = [(cls, BERT) for cls in (flagai_hf.BertModel, flagai_hf.BertForMaskedLM,
                                 flagai_hf.BertForSequenceClassification, flagai_hf.BertForSequenceLabeling,
                                 flagai_hf.BertForSequenceLabelingCRF, flagai_hf.BertForSequenceLabelingGP,
                                 flagai_hf.BertForSeq2seq)] \
    + [(cls, GLM) for cls in (flagai_hf.GLMModel, flagai_hf.GLMForConditionalGeneration,
                              flagai_hf.GLMForSequenceClassification, flagai_hf.GLMForMultipleChoice)] \
    + [(flagai_hf.GPT2LMHeadModel, GPT2), (flagai_hf.T5Model, T5), (flagai_hf.T5EncoderModel, T5)]
IDS = torch.randint(1, VOCAB, (2, 5), generator=torch.Generator().manual_seed(0))
BAD_IDS = {
    "empty batch": (torch.zeros(0, 5, dtype=torch.long), r"input_ids is an empty batch \(shape \(0, 5\)\)"),
    "length 0": (torch.zeros(2, 0, dtype=torch.long), r"input_ids has sequence length 0 \(shape \(2, 0\)\)"),
    "1-D": (IDS[0], r"input_ids must be 2-D \(batch, length\) \(one sequence: pass ids\[None\]\); got shape \(5,\)"),
    "3-D": (IDS[None], r"input_ids must be 2-D \(batch, length\); got shape \(1, 2, 5\)"),
}


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {cls: cls(config).eval() for cls, config in HEADS}


def head_inputs(cls) -> dict:
    """What a head needs besides input_ids (valid, so the ids or mask are what is refused)."""
    if cls is flagai_hf.T5Model:
        return {"decoder_input_ids": IDS}
    if cls is flagai_hf.GLMForMultipleChoice:
        return {"choice_ids": torch.zeros(2, 1, 1, dtype=torch.long),
                "choice_indices": torch.zeros(2, 1, 1, dtype=torch.long)}
    return {}


@pytest.mark.parametrize("case", list(BAD_IDS))
@pytest.mark.parametrize("cls", [cls for cls, _ in HEADS], ids=lambda cls: cls.__name__)
def test_malformed_ids_are_refused_naming_the_argument_and_shape(models, cls, case):
    ids, message = BAD_IDS[case]
    with pytest.raises(ValueError, match=message):
        models[cls](input_ids=ids, **head_inputs(cls))


@pytest.mark.parametrize("cls", [cls for cls, _ in HEADS], ids=lambda cls: cls.__name__)
def test_an_attention_mask_not_matching_the_ids_is_refused(models, cls):
    with pytest.raises(ValueError, match=r"attention_mask .*\(2, 7\)") as error:
        models[cls](input_ids=IDS, attention_mask=torch.ones(2, 7, dtype=torch.long), **head_inputs(cls))
    assert "(2, 5)" in str(error.value)  # what is accepted


def test_t5_names_the_decoder_ids_and_embeds(models):
    with pytest.raises(ValueError, match=r"decoder_input_ids is an empty batch"):
        models[flagai_hf.T5Model](input_ids=IDS, decoder_input_ids=torch.zeros(0, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"the inputs_embeds for input_ids must be 3-D \(batch, length, hidden\); "
                                         r"got shape \(2, 16\)"):
        models[flagai_hf.T5EncoderModel](inputs_embeds=torch.zeros(2, 16))


def test_bert_masks_of_other_forms_must_match_too(models):
    model = models[flagai_hf.BertModel]
    model(input_ids=IDS, attention_mask=torch.ones(2, 1, 5, 5))  # 4-D (batch, 1, T, T): fine
    with pytest.raises(ValueError, match=re.escape("attention_mask must be 2-D (2, 5) or 3-D (1 or 2, 5, 5) or 4-D "
                                                   "(1 or 2, 1 or 2, 5, 5) to match the input ids; got shape "
                                                   "(2, 1, 4, 5)")):
        model(input_ids=IDS, attention_mask=torch.ones(2, 1, 4, 5))


@pytest.mark.parametrize("sep, message", [
    (7, r"integer sep must be in 0\.\.5 \(the input length\); got 7"),
    (-1, r"integer sep must be in 0\.\.5 \(the input length\); got -1"),
    (torch.tensor([1, 9]), r"given as sep \(int or \[batch\]\) must be in 0\.\.5"),
])
def test_glm_sep_outside_the_input_is_refused(models, sep, message):
    model = models[flagai_hf.GLMModel]
    model(input_ids=IDS, attention_mask=5)  # T itself: fully bidirectional
    with pytest.raises(ValueError, match=message):
        model(input_ids=IDS, attention_mask=sep)


GENERATORS = [flagai_hf.GPT2LMHeadModel, flagai_hf.GLMForConditionalGeneration, flagai_hf.BertForSeq2seq,
              flagai_hf.T5Model]


@pytest.mark.parametrize("cls", GENERATORS, ids=lambda cls: cls.__name__)
def test_num_beams_larger_than_the_vocabulary_is_refused(models, cls):
    with pytest.raises(ValueError, match=rf"num_beams={VOCAB + 1} is larger than the vocabulary "
                                         rf"\(vocab_size={VOCAB}\)"):
        models[cls].generate(IDS, attention_mask=torch.ones_like(IDS), num_beams=VOCAB + 1, max_new_tokens=2)


def generate_with_log(caplog, model, *args, **kwargs):
    hf_logging.enable_propagation()
    try:
        return model.generate(*args, do_sample=False, **kwargs)
    finally:
        hf_logging.disable_propagation()


@pytest.mark.parametrize("cls, table", [(flagai_hf.GPT2LMHeadModel, POSITIONS),
                                        (flagai_hf.BertForSeq2seq, POSITIONS)], ids=lambda x: getattr(x, "__name__", x))
@pytest.mark.parametrize("num_beams", [1, 2])
def test_generation_stops_at_the_position_table_with_a_warning(models, caplog, cls, table, num_beams):
    model = models[cls]
    out = generate_with_log(caplog, model, IDS, attention_mask=torch.ones_like(IDS), max_new_tokens=40,
                            num_beams=num_beams)
    # what was generated up to the table's end (the last token predicted from the last position), not an error
    assert out.shape == (2, table + 1)
    assert torch.equal(out[:, :5], IDS)
    assert (f"{cls.__name__}.generate stops at the position table ({table} positions): {table + 1} tokens returned "
            f"(the last one predicted from the last position), not the 45 asked for") in caplog.text
    caplog.clear()
    assert generate_with_log(caplog, model, IDS, attention_mask=torch.ones_like(IDS), max_new_tokens=3).shape == (2, 8)
    assert "stops at the position table" not in caplog.text  # room enough: no warning


@pytest.mark.parametrize("num_beams", [1, 2])
def test_glm_plain_source_generation_stops_at_the_block_position_table(models, caplog, num_beams):
    """A plain source fills a [gMASK] blank whose new tokens take block positions 1, 2, ...: generation stops where
    the block position table ends ([sop] + POSITIONS new tokens), with a warning, instead of failing in the forward."""
    model = models[flagai_hf.GLMForConditionalGeneration]
    out = generate_with_log(caplog, model, IDS, attention_mask=torch.ones_like(IDS), max_new_tokens=40,
                            num_beams=num_beams)
    assert out.shape == (2, 1 + POSITIONS) and (out[:, 0] == GLM.sop_token_id).all()
    assert (f"GLMForConditionalGeneration.generate stops at the block position table ({POSITIONS + 1} positions): "
            f"[sop] + {POSITIONS} new tokens at most, not the 40 asked for") in caplog.text
    caplog.clear()
    assert generate_with_log(caplog, model, IDS, attention_mask=torch.ones_like(IDS), max_new_tokens=3).shape == (2, 4)
    assert "stops at the block position table" not in caplog.text  # room enough: no warning


def test_glm_plain_source_generation_needs_mask_ids():
    model = flagai_hf.GLMForConditionalGeneration(flagai_hf.GLMConfig(
        vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=POSITIONS)).eval()  # a 50-token vocabulary holds none of GLM's special ids
    with pytest.raises(ValueError, match=r"generate\(\) on a plain source fills a \[gMASK\] blank, but this "
                                         r"GLMConfig has no mask_token_ids"):
        model.generate(IDS, attention_mask=torch.ones_like(IDS), max_new_tokens=2)


def test_glm_blank_filling_stops_where_its_positions_end(models, caplog):
    """With position_ids / generation_attention_mask from build_inputs_for_generation, generation stops where they
    end (they were sized for max_gen_length new tokens)."""
    model = models[flagai_hf.GLMForConditionalGeneration]
    context, room = 5, 2
    positions = torch.cat([torch.arange(context), torch.full((room,), context - 1)])
    blocks = torch.cat([torch.zeros(context, dtype=torch.long), torch.arange(1, room + 1)])
    position_ids = torch.stack([positions, blocks])[None].expand(2, 2, context + room)
    total = context + room
    mask = torch.ones(total, total).tril()
    mask[:, :context] = 1
    out = generate_with_log(caplog, model, IDS, position_ids=position_ids,
                            generation_attention_mask=mask[None, None].expand(2, 1, total, total), max_new_tokens=10)
    assert out.shape == (2, total + 1)  # the prompt's 5 + 3 = total + 1 tokens: the last one is never fed
    assert f"stops at the position table ({total} positions)" in caplog.text
