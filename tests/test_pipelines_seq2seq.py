"""pipeline("flagai-text2text-generation"): for each kind of model, the pipeline's text is exactly the decoding of
what ``model.generate()`` returns on inputs built by hand with the same kwargs (greedy, beams, seeded sampling,
several returned sequences); batches equal single calls; saved folders load through ``pipeline(task, model=folder)``.

The models are tiny and random, so the texts are arbitrary: what is checked is the plumbing (prompt layout, padding,
stop token, which output columns are the span), not the quality."""

import pytest
import torch
import transformers
from transformers import GenerationConfig, pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from flagai_hf import (
    BertForMaskedLM,
    BertForSeq2seq,
    FlagAIBertConfig,
    FlagAIBertTokenizer,
    FlagAIGPT2Config,
    FlagAIT5Config,
    FlagAIText2TextGenerationPipeline,
    GLMChineseTokenizer,
    GLMConfig,
    GLMEnglishTokenizer,
    GLMForConditionalGeneration,
    GPT2LMHeadModel,
    T5ChineseTokenizer,
    T5Model,
)
from material import chinese_vocab, english_vocab

TASK = "flagai-text2text-generation"
NEW = 6  # max_new_tokens
KWARGS = {
    "greedy": dict(do_sample=False),
    "beam": dict(num_beams=3, do_sample=False),
    "two beams returned": dict(num_beams=3, num_return_sequences=2, do_sample=False),
    "sampling": dict(do_sample=True, top_k=20, top_p=0.9, temperature=0.8, repetition_penalty=1.3),
    "sampling, two returned": dict(do_sample=True, top_k=0, num_return_sequences=2),
}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """The models here are tiny: one thread is fastest, and on a busy 2-core machine torch's thread pool spins."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def spans(tokenizer, sequences, prompt_columns: int, stop_id: int | None, per_input: int) -> list[list[str]]:
    """Each output row after the prompt columns, up to its first stop token, decoded; grouped by input."""
    texts = []
    for row in sequences[:, prompt_columns:].tolist():
        if stop_id is not None and stop_id in row:
            row = row[:row.index(stop_id)]
        texts.append(tokenizer.decode(row, skip_special_tokens=True))
    return [texts[i:i + per_input] for i in range(0, len(texts), per_input)]


def pipeline_texts(pipe, texts, **kwargs) -> list[list[str]]:
    results = pipe(texts, batch_size=len(texts), max_new_tokens=NEW, **kwargs)
    return [[r["generated_text"] for r in (records if isinstance(records, list) else [records])]
            for records in results]


def check_against_generate(pipe, texts, build_inputs, stop_id, encoder_decoder=False):
    """For every entry of KWARGS: the pipeline == decoding generate() on inputs built by ``build_inputs(texts)``.

    Greedy and beams run on the whole batch. Sampling runs on the first text alone: with a list, the pipeline's
    DataLoader draws one number from torch's generator before generate() starts (transformers' Pipeline, not ours), so
    a seeded single call is what lines up with a seeded generate()."""
    for name, kwargs in KWARGS.items():
        for group in [texts] if not kwargs["do_sample"] else [texts[:1]]:
            inputs = build_inputs(group)
            prompt_columns = 1 if encoder_decoder else inputs["input_ids"].shape[1]
            torch.manual_seed(7)
            with torch.no_grad():
                output = pipe.model.generate(**inputs, max_new_tokens=NEW, eos_token_id=stop_id,
                                             pad_token_id=pipe.tokenizer.pad_token_id, **kwargs)
            expected = spans(pipe.tokenizer, output, prompt_columns, stop_id, kwargs.get("num_return_sequences", 1))
            assert any(text for texts_of_one in expected for text in texts_of_one), name  # not vacuous
            torch.manual_seed(7)
            got = pipeline_texts(pipe, group, **kwargs) if len(group) > 1 else \
                [[r["generated_text"] for r in pipe(group[0], max_new_tokens=NEW, **kwargs)]]
            assert got == expected, name


def check_batch_equals_single(pipe, texts):
    batch = pipe(texts, batch_size=len(texts), max_new_tokens=NEW)
    assert batch == [pipe(text, max_new_tokens=NEW)[0] for text in texts]
    assert len(batch) == len(texts) and all(set(record) == {"generated_text"} for record in batch)


# ----------------------------------------------------------------------------------------------------- GLM


@pytest.fixture(scope="module")
def glm_zh():
    torch.manual_seed(0)
    model = GLMForConditionalGeneration(GLMConfig(vocab_size=50048, hidden_size=16, num_hidden_layers=2,
                                                  num_attention_heads=2, max_position_embeddings=64)).eval()
    return model, GLMChineseTokenizer()


@pytest.fixture(scope="module")
def glm_en():
    tokenizer = GLMEnglishTokenizer(vocab_file=english_vocab())
    torch.manual_seed(0)
    config = GLMConfig(vocab_size=30592, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                       max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id,
                       eos_token_id=tokenizer.eos_token_id, eop_token_id=tokenizer.eop_token_id,
                       sep_token_id=tokenizer.sep_token_id, sop_token_id=tokenizer.sop_token_id,
                       mask_token_ids=tokenizer.mask_token_ids)
    return GLMForConditionalGeneration(config).eval(), tokenizer


ZH_TEXTS = ["清华大学位于[MASK]。", "人民日报报道了[sMASK]的消息，引起关注。", "一减一等于零，对吗？答案：[gMASK]"]
EN_TEXTS = ["the capital of france is [MASK] .", "[sMASK] she said, and left.", "a story about a dog: [gMASK]"]


def glm_reference_inputs(tokenizer, texts):
    """The tokenizer's own blank-filling layout, built as its docstring says (right padding)."""
    encoded = tokenizer(texts, return_tensors="pt", padding=True, padding_side="right")
    return dict(tokenizer.build_inputs_for_generation(encoded, max_gen_length=NEW))


@pytest.mark.parametrize("which", ["glm_zh", "glm_en"])
def test_glm_blank_filling_equals_generate(which, request):
    model, tokenizer = request.getfixturevalue(which)
    texts = ZH_TEXTS if which == "glm_zh" else EN_TEXTS
    pipe = pipeline(TASK, model=model, tokenizer=tokenizer)
    assert isinstance(pipe, FlagAIText2TextGenerationPipeline)
    check_against_generate(pipe, texts, lambda group: glm_reference_inputs(tokenizer, group), tokenizer.eop_token_id)
    check_batch_equals_single(pipe, texts)


def test_glm_text_without_blank_gets_gmask_appended(glm_zh):
    model, tokenizer = glm_zh
    pipe = pipeline(TASK, model=model, tokenizer=tokenizer, max_new_tokens=NEW)
    body = "新华社北京电，国家统计局今天发布了去年的经济数据。"
    assert pipe(body) == pipe(body + "[gMASK]")  # FlagAI's title generation writes the [gMASK] itself
    inputs = glm_reference_inputs(tokenizer, [body + "[gMASK]"])
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=NEW, do_sample=False,
                                eos_token_id=tokenizer.eop_token_id, pad_token_id=tokenizer.pad_token_id)
    assert pipe(body)[0]["generated_text"] == spans(tokenizer, output, inputs["input_ids"].shape[1],
                                                    tokenizer.eop_token_id, 1)[0][0]


def test_glm_full_text_fills_the_blank(glm_zh, glm_en):
    model, tokenizer = glm_zh
    pipe = pipeline(TASK, model=model, tokenizer=tokenizer, max_new_tokens=NEW)
    text = "清华大学位于[MASK]。"
    record = pipe(text, return_full_text=True, return_tensors=True)[0]
    span = tokenizer.decode(record["generated_token_ids"], skip_special_tokens=True)
    assert span and record["generated_text"] == "清华大学位于" + span + "。"
    appended = pipe("今天天气很好", return_full_text=True)[0]["generated_text"]
    assert appended == "今天天气很好" + pipe("今天天气很好")[0]["generated_text"]

    # English: the span joins the text with the tokenizer's own spacing, the rest of the text stays as written.
    model, tokenizer = glm_en
    pipe = pipeline(TASK, model=model, tokenizer=tokenizer, max_new_tokens=NEW)
    record = pipe("The Capital of France is [MASK]. Right?", return_full_text=True, return_tensors=True)[0]
    span = tokenizer.decode(record["generated_token_ids"], skip_special_tokens=True)
    text = record["generated_text"]
    assert text.startswith("The Capital of France is") and text.endswith(". Right?")
    middle = text[len("The Capital of France is"):-len(". Right?")]
    assert middle.replace(" ", "") == span.replace(" ", "").replace("##", "")  # a word piece joins the last word


def test_glm_stops_at_end_of_piece(glm_zh):
    model, tokenizer = glm_zh
    pipe = pipeline(TASK, model=model, tokenizer=tokenizer, max_new_tokens=NEW)
    free = pipe(ZH_TEXTS[0], return_tensors=True)[0]["generated_token_ids"]
    assert len(free) == NEW and tokenizer.eop_token_id not in free
    # Declare the third generated token the end of the piece: the span stops before it.
    stopped = pipe(ZH_TEXTS[0], return_tensors=True, eos_token_id=free[2])[0]["generated_token_ids"]
    assert stopped == free[:free.index(free[2])]
    # By default generation stops at <|endofpiece|> (not the config's eos): push it to the first step.
    model.generation_config.eos_token_id = tokenizer.pad_token_id
    try:
        early = pipe(ZH_TEXTS[0], return_tensors=True, sequence_bias={(tokenizer.eop_token_id,): 100.0})
    finally:
        model.generation_config.eos_token_id = model.config.eos_token_id
    assert early == [{"generated_token_ids": [], "generated_text": ""}]


def test_glm_generation_parameters_at_init_in_a_config_or_as_max_length(glm_zh):
    model, tokenizer = glm_zh
    text = ZH_TEXTS[1]
    expected = pipeline(TASK, model=model, tokenizer=tokenizer)(text, max_new_tokens=NEW, num_beams=2)
    assert pipeline(TASK, model=model, tokenizer=tokenizer, max_new_tokens=NEW, num_beams=2)(text) == expected
    config = GenerationConfig(max_new_tokens=NEW, num_beams=2)
    assert pipeline(TASK, model=model, tokenizer=tokenizer)(text, generation_config=config) == expected
    # max_length counts the prompt: the context and [sop].
    prompt = len(tokenizer(text)["input_ids"]) + 1
    assert pipeline(TASK, model=model, tokenizer=tokenizer)(text, max_length=prompt + NEW, num_beams=2) == expected


def test_glm_truncation_keeps_the_blank(glm_zh):
    model, tokenizer = glm_zh
    pipe = pipeline(TASK, model=model, tokenizer=tokenizer, max_new_tokens=NEW)
    long_text = "今天天气很好，" * 40 + "[MASK]。"
    # The Chinese tokenizer truncates on the left: the last 18 ids of the text, then [CLS] ... <|endoftext|> = 20.
    kept = tokenizer(long_text, add_special_tokens=False)["input_ids"][-18:]
    context = torch.tensor([tokenizer.build_inputs_with_special_tokens(kept)])
    inputs = tokenizer.build_inputs_for_generation({"input_ids": context}, max_gen_length=NEW)
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=NEW, do_sample=False, eos_token_id=tokenizer.eop_token_id,
                                pad_token_id=tokenizer.pad_token_id)
    expected = spans(tokenizer, output, inputs["input_ids"].shape[1], tokenizer.eop_token_id, 1)[0][0]
    assert pipe(long_text, max_source_length=20)[0]["generated_text"] == expected
    with pytest.raises(ValueError, match="removed its blank"):
        pipe("[MASK]" + "今天天气很好，" * 40, max_source_length=20)


# ----------------------------------------------------------------------------------------------------- BERT UniLM


@pytest.fixture(scope="module")
def unilm():
    tokenizer = FlagAIBertTokenizer(vocab_file=chinese_vocab())
    torch.manual_seed(0)
    config = FlagAIBertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                              intermediate_size=37, max_position_embeddings=64)
    return BertForSeq2seq(config).eval(), tokenizer


UNILM_TEXTS = ["北京是中国的首都。", "今天天气很好", "人民日报报道了新华社的消息，引起广泛关注。"]


def test_unilm_equals_generate_and_stops_at_sep(unilm):
    model, tokenizer = unilm
    pipe = pipeline(TASK, model=model, tokenizer=tokenizer)
    # [CLS] text [SEP] as segment 0, left padding; BertForSeq2seq.generate() makes the new tokens segment 1.
    def build_inputs(texts):
        return dict(tokenizer(texts, return_tensors="pt", padding=True, padding_side="left",
                              return_token_type_ids=False))

    check_against_generate(pipe, UNILM_TEXTS, build_inputs, tokenizer.sep_token_id)
    check_batch_equals_single(pipe, UNILM_TEXTS)

    free = pipe(UNILM_TEXTS[0], max_new_tokens=NEW, return_tensors=True)[0]["generated_token_ids"]
    assert tokenizer.sep_token_id not in free
    early = pipe(UNILM_TEXTS[0], max_new_tokens=NEW, return_tensors=True,
                 sequence_bias={(tokenizer.sep_token_id,): 100.0})
    assert early == [{"generated_token_ids": [], "generated_text": ""}]  # [SEP] ends the target segment
    model.generation_config.eos_token_id = free[1]  # the model's own generation config does not replace [SEP] ...
    try:
        assert pipe(UNILM_TEXTS[0], max_new_tokens=NEW, return_tensors=True)[0]["generated_token_ids"] == free
        stopped = pipe(UNILM_TEXTS[0], max_new_tokens=NEW, return_tensors=True, eos_token_id=free[1])
    finally:
        model.generation_config.eos_token_id = None
    assert stopped[0]["generated_token_ids"] == free[:free.index(free[1])]  # ... the user's eos_token_id does


# ----------------------------------------------------------------------------------------------------- encoder-decoder


def make_t5(implementation: str):
    """T5 (transformers' or ours) with a BERT vocabulary, FlagAI's t5-base-ch layout: [CLS] text [SEP] in, the
    decoder starts at [CLS] and stops at [SEP]."""
    if implementation == "transformers":
        tokenizer = FlagAIBertTokenizer(vocab_file=chinese_vocab())
        config_class, model_class = transformers.T5Config, transformers.T5ForConditionalGeneration
    else:  # ours: FlagAI's T5Model (alias T5ForConditionalGeneration) and its Chinese T5-PEGASUS tokenizer
        tokenizer = T5ChineseTokenizer(vocab_file=chinese_vocab())
        config_class, model_class = FlagAIT5Config, T5Model
    config = config_class(vocab_size=len(tokenizer), d_model=16, d_kv=8, d_ff=32, num_layers=2, num_heads=2,
                          pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.sep_token_id,
                          decoder_start_token_id=tokenizer.cls_token_id)
    torch.manual_seed(0)
    return model_class(config).eval(), tokenizer


@pytest.fixture(scope="module", params=["transformers", "flagai_hf"])
def t5(request):
    return make_t5(request.param)


@pytest.fixture(scope="module")
def flagai_t5():
    return make_t5("flagai_hf")


def test_encoder_decoder_equals_generate(t5):
    model, tokenizer = t5
    pipe = pipeline(TASK, model=model, tokenizer=tokenizer)
    def build_inputs(texts):
        return dict(tokenizer(texts, return_tensors="pt", padding=True, return_token_type_ids=False))

    check_against_generate(pipe, UNILM_TEXTS, build_inputs, tokenizer.sep_token_id, encoder_decoder=True)
    check_batch_equals_single(pipe, UNILM_TEXTS)
    with pytest.raises(ValueError, match="does not continue its input"):
        pipe(UNILM_TEXTS[0], return_full_text=True)


# ----------------------------------------------------------------------------------------------------- prefix LM


def make_gpt2(implementation: str):
    """GPT2 (transformers' or ours) with a BERT vocabulary, FlagAI's gpt2-base-ch layout: the prompt is [CLS] text."""
    tokenizer = FlagAIBertTokenizer(vocab_file=chinese_vocab())
    config_class, model_class = (transformers.GPT2Config, transformers.GPT2LMHeadModel) \
        if implementation == "transformers" else (FlagAIGPT2Config, GPT2LMHeadModel)
    config = config_class(vocab_size=len(tokenizer), n_embd=16, n_layer=2, n_head=2, n_positions=64,
                          bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
                          pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    return model_class(config).eval(), tokenizer


@pytest.fixture(scope="module", params=["transformers", "flagai_hf"])
def gpt2(request):
    return make_gpt2(request.param)


@pytest.fixture(scope="module")
def flagai_gpt2():
    return make_gpt2("flagai_hf")


def test_decoder_only_continues_the_prompt(gpt2):
    model, tokenizer = gpt2
    pipe = pipeline(TASK, model=model, tokenizer=tokenizer)
    def build_inputs(texts):
        prompts = [ids[:-1] for ids in tokenizer(texts)["input_ids"]]  # the tokenizer's trailing [SEP] dropped
        return dict(tokenizer.pad({"input_ids": prompts}, padding=True, padding_side="left", return_tensors="pt"))

    check_against_generate(pipe, UNILM_TEXTS, build_inputs, tokenizer.sep_token_id)
    check_batch_equals_single(pipe, UNILM_TEXTS)
    record = pipe(UNILM_TEXTS[1], max_new_tokens=NEW, return_full_text=True, return_tensors=True)[0]
    span = tokenizer.decode(record["generated_token_ids"], skip_special_tokens=True)
    assert record["generated_text"] == UNILM_TEXTS[1] + " " + span  # WordPiece writes a space between tokens


# ----------------------------------------------------------------------------------------------------- loading


@pytest.mark.parametrize("which", ["glm_zh", "unilm", "flagai_t5", "flagai_gpt2"])
def test_pipeline_from_a_saved_folder(which, request, tmp_path):
    model, tokenizer = request.getfixturevalue(which)
    texts = ZH_TEXTS if which == "glm_zh" else UNILM_TEXTS
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded = pipeline(TASK, model=str(tmp_path), dtype=torch.float32)
    assert type(loaded.model) is type(model)
    in_memory = pipeline(TASK, model=model, tokenizer=tokenizer)
    kwargs = dict(max_new_tokens=NEW, num_beams=2, batch_size=2)
    assert loaded(texts, **kwargs) == in_memory(texts, **kwargs)


# ----------------------------------------------------------------------------------------------------- errors


def test_clear_errors(glm_zh, unilm):
    assert TASK in PIPELINE_REGISTRY.get_supported_tasks()
    model, tokenizer = unilm
    with pytest.raises(ValueError, match=r"serves encoder-decoder models.*BertForMaskedLM is none of them"):
        pipeline(TASK, model=BertForMaskedLM(model.config), tokenizer=tokenizer)
    with pytest.raises(ValueError, match="GLM blank filling needs a GLM tokenizer"):
        pipeline(TASK, model=glm_zh[0], tokenizer=tokenizer)
    pipe = pipeline(TASK, model=model, tokenizer=tokenizer)
    with pytest.raises(ValueError, match="takes a text or a list of texts"):
        pipe(123)
    with pytest.raises(ValueError, match="max_source_length must be a positive int"):
        pipe("你好", max_source_length=0)
    with pytest.raises(ValueError, match="does not continue its input"):
        pipe("你好", return_full_text=True)
