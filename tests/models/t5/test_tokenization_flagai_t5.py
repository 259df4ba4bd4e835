"""T5 tokenizers: the English sentencepiece tokenizer against transformers' T5Tokenizer on a model trained here from
real offline English text; the Chinese WordPiece tokenizer against transformers' BertTokenizer on MSRA sentences, and
its jieba word segmentation."""

import os

import pytest
import sentencepiece as spm
import transformers

from flagai_hf import T5ChineseTokenizer, T5SentencePieceTokenizer
from material import chinese_vocab, msra_sentences, wnut_tweets


@pytest.fixture(scope="module")
def spiece_dir(tmp_path_factory):
    """A 600-piece unigram spiece.model trained on 2,000 WNUT tweets, with T5's ids (pad 0, eos 1, unk 2)."""
    folder = tmp_path_factory.mktemp("spiece")
    spm.SentencePieceTrainer.train(sentence_iterator=iter(wnut_tweets(limit=2000)), model_prefix=str(folder / "spiece"),
                                   vocab_size=600, model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                                   character_coverage=1.0, minloglevel=2)
    return folder


def test_sentencepiece_ids_match_transformers_t5_tokenizer(spiece_dir):
    ours = T5SentencePieceTokenizer(vocab_file=str(spiece_dir / "spiece.model"))
    reference = transformers.T5Tokenizer.from_pretrained(spiece_dir)
    model = spm.SentencePieceProcessor(model_file=str(spiece_dir / "spiece.model"))
    texts = wnut_tweets()[2000:2300]  # not seen in training
    differ = 0
    for text in texts:
        ids = ours(text)["input_ids"]
        assert ids == model.encode(text) + [1], text  # exactly sentencepiece's own ids, then </s>
        theirs = reference(text)["input_ids"]
        if ids != theirs:
            # transformers' converted (tokenizers-library) Unigram breaks rare Viterbi ties otherwise: same text
            differ += 1
            assert ours.decode(ids) == reference.decode(theirs), text
    assert differ <= 3  # of 300 (1 here: "ahhhhh" -> a|h|hhh|h vs a|h|h|hhh, two equal-score paths)
    pair = ours(texts[0], texts[1])["input_ids"]
    assert pair == reference(texts[0], texts[1])["input_ids"] and pair.count(1) == 2
    assert len(ours) == len(reference) == 700
    sentinels = ["<extra_id_0>", "<extra_id_99>"]
    assert ours.convert_tokens_to_ids(sentinels) == reference.convert_tokens_to_ids(sentinels) == [699, 600]
    assert ours("a <extra_id_0> b")["input_ids"] == reference("a <extra_id_0> b")["input_ids"]
    assert ours.decode(ours(texts[0])["input_ids"], skip_special_tokens=True) == \
        reference.decode(reference(texts[0])["input_ids"], skip_special_tokens=True)


def test_sentencepiece_tokenizer_saves_and_auto_loads(spiece_dir, tmp_path):
    ours = T5SentencePieceTokenizer(vocab_file=str(spiece_dir / "spiece.model"))
    ours.save_pretrained(tmp_path)
    assert (tmp_path / "spiece.model").is_file()
    loaded = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert type(loaded) is T5SentencePieceTokenizer
    text = wnut_tweets(limit=1)[0]
    assert loaded(text)["input_ids"] == ours(text)["input_ids"]
    with pytest.raises(ValueError, match="needs a sentencepiece model"):
        T5SentencePieceTokenizer(vocab_file=str(tmp_path / "missing.model"))


def test_chinese_wordpiece_matches_bert_tokenizer_without_jieba():
    ours = T5ChineseTokenizer(vocab_file=chinese_vocab())
    reference = transformers.BertTokenizer.from_pretrained(os.path.dirname(chinese_vocab()))
    for characters, _ in msra_sentences(limit=300):
        text = "".join(characters)
        assert ours(text)["input_ids"] == reference(text)["input_ids"], text


@pytest.fixture(scope="module")
def word_vocab(tmp_path_factory):
    """bert-base-chinese's vocab.txt plus multi-character words (as T5-PEGASUS's vocabulary has them)."""
    jieba = pytest.importorskip("jieba")
    base = open(chinese_vocab(), encoding="utf-8").read().splitlines()
    known = set(base)
    words = []
    for characters, _ in msra_sentences(limit=200):
        for word in jieba.cut("".join(characters), HMM=False):
            if len(word) > 1 and word not in known and word not in words and len(words) < 400:
                words.append(word)
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(base + words) + "\n", encoding="utf-8")
    return str(path), words


def test_jieba_keeps_vocabulary_words_whole(word_vocab, tmp_path):
    import jieba

    path, words = word_vocab
    ours = T5ChineseTokenizer(vocab_file=path, use_jieba=True)
    reference = transformers.BertTokenizer.from_pretrained(os.path.dirname(chinese_vocab()))
    vocab = set(open(path, encoding="utf-8").read().splitlines())
    whole = 0
    for characters, _ in msra_sentences(limit=200):
        text = "".join(characters)
        # T5-PEGASUS's rule: jieba words in the vocabulary stay whole, the others are WordPiece-tokenized
        expected = []
        for word in jieba.cut(text, HMM=False):
            expected += [word] if word in vocab else reference.tokenize(word)
        tokens = ours.tokenize(text)
        assert tokens == expected, text
        whole += sum(token in words for token in tokens)
    assert whole > 100  # the added words were really used

    text = "北京欢迎你 hello"
    encoded = ours(text, return_offsets_mapping=True)
    pieces = [text[start:end] for start, end in encoded["offset_mapping"][1:-1]]
    assert pieces == [token.removeprefix("##") for token in ours.tokenize(text)]

    ours.save_pretrained(tmp_path)
    loaded = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert type(loaded) is T5ChineseTokenizer and loaded.use_jieba
    sentence = "".join(msra_sentences(limit=1)[0][0])
    assert loaded(sentence)["input_ids"] == ours(sentence)["input_ids"]


def test_chinese_tokenizer_output_feeds_generate():
    """T5 has no token types: the tokenizer's output goes straight into ``generate(**inputs)``."""
    import flagai_hf
    from material import chinese_vocab

    tokenizer = flagai_hf.T5ChineseTokenizer(vocab_file=chinese_vocab())
    inputs = tokenizer(["北京欢迎你", "上海"], padding=True, return_tensors="pt")
    assert set(inputs) == {"input_ids", "attention_mask"}
    config = flagai_hf.FlagAIT5Config(vocab_size=len(tokenizer), d_model=16, d_kv=4, d_ff=32, num_layers=1,
                                      num_heads=4, decoder_start_token_id=tokenizer.cls_token_id,
                                      pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.sep_token_id)
    output = flagai_hf.T5Model(config).eval().generate(**inputs, max_new_tokens=3, do_sample=False)
    assert output.shape[0] == 2
