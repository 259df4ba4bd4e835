"""Issue 12 item 6: flagai-text2text-generation with a huge text truncates it to the model's limit (or refuses it
with too_long="error") before any mask is built, in bounded memory; an empty list or a text of no tokens is refused."""

import tracemalloc

import pytest
import torch
from transformers import pipeline

from flagai_hf import (
    BertForSeq2seq,
    FlagAIBertConfig,
    FlagAIBertTokenizer,
    FlagAIGPT2Config,
    FlagAIT5Config,
    GLMChineseTokenizer,
    GLMConfig,
    GLMForConditionalGeneration,
    GPT2LMHeadModel,
    T5ChineseTokenizer,
    T5Model,
)
from material import chinese_vocab

TASK = "flagai-text2text-generation"
HUGE = "今天天气很好，" * 15_000  # 105k characters
LIMIT = 32  # every model's position table below


def unilm():
    tokenizer = FlagAIBertTokenizer(vocab_file=chinese_vocab())
    config = FlagAIBertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                              max_position_embeddings=LIMIT)
    return BertForSeq2seq(config).eval(), tokenizer


def glm():
    return GLMForConditionalGeneration(GLMConfig(vocab_size=50048, hidden_size=16, num_hidden_layers=1,
                                                 num_attention_heads=2, max_position_embeddings=LIMIT)).eval(), \
        GLMChineseTokenizer()


def gpt2():
    tokenizer = FlagAIBertTokenizer(vocab_file=chinese_vocab())
    config = FlagAIGPT2Config(vocab_size=len(tokenizer), n_embd=16, n_layer=1, n_head=2, n_positions=LIMIT,
                              bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
                              pad_token_id=tokenizer.pad_token_id)
    return GPT2LMHeadModel(config).eval(), tokenizer


def t5():
    tokenizer = T5ChineseTokenizer(vocab_file=chinese_vocab(), model_max_length=LIMIT)
    config = FlagAIT5Config(vocab_size=len(tokenizer), d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
                            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.sep_token_id,
                            decoder_start_token_id=tokenizer.cls_token_id)
    return T5Model(config).eval(), tokenizer


MAKERS = {"unilm": unilm, "glm": glm, "gpt2": gpt2, "t5": t5}


@pytest.fixture(scope="module", params=list(MAKERS))
def pipe(request):
    torch.manual_seed(0)
    model, tokenizer = MAKERS[request.param]()
    return pipeline(TASK, model=model, tokenizer=tokenizer, max_new_tokens=2, do_sample=False)


def test_a_huge_text_is_truncated_to_the_model_limit_in_bounded_memory(pipe):
    assert pipe.source_limit() == LIMIT
    pipe(HUGE[:100])  # warm-up: lazy imports and caches are not counted
    tracemalloc.start()
    try:
        result = pipe(HUGE, return_tensors=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(result[0]["generated_token_ids"]) <= 2
    # A (T, T) mask over the untruncated text alone would be > 10 GB; the tokenizer's own work is a few MB.
    assert peak < 200 * 2**20, peak
    model_inputs = pipe.preprocess(HUGE)
    assert model_inputs["input_ids"].shape[1] <= LIMIT


def test_too_long_error_refuses_instead(pipe):
    room = int(pipe.strategy.positions_after_prompt)  # GPT2 / UniLM keep one position for a generated token
    with pytest.raises(ValueError, match=rf"takes at most {LIMIT - room} \(too_long='error'"):
        pipe(HUGE[:2000], too_long="error")
    with pytest.raises(ValueError, match=r"too_long must be 'truncate' or 'error'; got 'cut'"):
        pipe("你好", too_long="cut")


def test_an_empty_list_of_texts_is_refused(pipe):
    with pytest.raises(ValueError, match=r"got an empty list of texts"):
        pipe([])


def test_generation_stops_at_the_position_table_with_a_warning(caplog):
    torch.manual_seed(0)
    model, tokenizer = gpt2()
    pipe = pipeline(TASK, model=model, tokenizer=tokenizer, do_sample=False)
    from transformers.utils import logging as hf_logging
    hf_logging.enable_propagation()
    try:
        # cut to 31 tokens, the trailing [SEP] dropped (FlagAI's gpt2 prompt is [CLS] text): 30, so 2 positions left
        result = pipe(HUGE[:200], max_new_tokens=10, return_tensors=True)
    finally:
        hf_logging.disable_propagation()
    assert (f"generation stops at {type(model).__name__}'s position table (32): at most 2 new tokens after a "
            "30-token prompt") in caplog.text
    assert len(result[0]["generated_token_ids"]) == 2
