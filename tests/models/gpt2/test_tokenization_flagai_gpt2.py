"""GPT2 tokenizers: byte-level BPE on real English text (against transformers and a written-out BPE), AutoTokenizer
from saved folders, and the BERT WordPiece vocabulary of GPT2-base-ch next to a flagai_gpt2 config."""

import json
import shutil
from functools import lru_cache

import pytest
import regex
import transformers
from material import chinese_vocab, gpt2_vocab_files, msra_sentences, wnut_tweets

import flagai_hf
from flagai_hf import FlagAIBertTokenizer, FlagAIGPT2Config, FlagAIGPT2Tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    vocab, merges = gpt2_vocab_files()
    return FlagAIGPT2Tokenizer(vocab_file=vocab, merges_file=merges)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table: printable Latin-1 bytes map to themselves, the other
    bytes to code points 256, 257, ... in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + extra)
            extra += 1
    return table


class ReferenceBPE:
    """OpenAI's GPT-2 encoding written out: split with GPT-2's regex, map bytes to characters, then repeatedly merge
    the adjacent pair with the lowest merge rank."""

    PATTERN = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")

    def __init__(self, vocab_file, merges_file):
        self.vocab = json.load(open(vocab_file, encoding="utf-8"))
        lines = open(merges_file, encoding="utf-8").read().split("\n")
        pairs = [tuple(line.split()) for line in lines if line and not line.startswith("#version")]
        self.ranks = {pair: rank for rank, pair in enumerate(pairs)}
        self.byte_chars = _bytes_to_unicode()

    @lru_cache(maxsize=None)
    def _merge(self, word: str) -> tuple[str, ...]:
        parts = list(word)
        while len(parts) > 1:
            ranked = [(self.ranks.get(pair, float("inf")), i) for i, pair in enumerate(zip(parts, parts[1:]))]
            rank, i = min(ranked)
            if rank == float("inf"):
                break
            first, second = parts[i], parts[i + 1]
            merged, j = [], 0
            while j < len(parts):  # merge every occurrence of the pair, left to right
                if j < len(parts) - 1 and parts[j] == first and parts[j + 1] == second:
                    merged.append(first + second)
                    j += 2
                else:
                    merged.append(parts[j])
                    j += 1
            parts = merged
        return tuple(parts)

    def encode(self, text: str) -> list[int]:
        ids = []
        for piece in self.PATTERN.findall(text):
            word = "".join(self.byte_chars[b] for b in piece.encode("utf-8"))
            ids.extend(self.vocab[token] for token in self._merge(word))
        return ids


def test_known_ids(tokenizer):
    assert tokenizer("Hello world")["input_ids"] == [15496, 995]
    assert tokenizer("Hello, my dog is cute")["input_ids"] == [15496, 11, 616, 3290, 318, 13779]
    assert len(tokenizer) == 50257 and tokenizer.eos_token == "<|endoftext|>" and tokenizer.eos_token_id == 50256


def test_real_tweets_match_transformers_and_the_written_out_bpe(tokenizer, tmp_path):
    vocab, merges = gpt2_vocab_files()
    shutil.copy(vocab, tmp_path / "vocab.json")
    shutil.copy(merges, tmp_path / "merges.txt")
    theirs = transformers.GPT2Tokenizer.from_pretrained(tmp_path)
    reference = ReferenceBPE(vocab, merges)
    tweets = wnut_tweets(limit=300)
    assert len(tweets) == 300
    ours = tokenizer(tweets)["input_ids"]
    assert ours == theirs(tweets)["input_ids"]
    assert ours == [reference.encode(tweet) for tweet in tweets]
    assert [tokenizer.decode(ids) for ids in ours] == tweets  # byte-level BPE round-trips exactly
    # Non-ASCII text (Chinese, emoji) goes through the byte fallback the same way.
    for text in ["北京欢迎你 😀 naïve café", "  two  spaces\tand tab\n"]:
        assert tokenizer(text)["input_ids"] == reference.encode(text) == theirs(text)["input_ids"]


def _merge_lines(path) -> list[str]:
    return [line for line in open(path, encoding="utf-8").read().split("\n") if line and not line.startswith("#")]


def test_auto_tokenizer_from_saved_folder(tokenizer, tmp_path):
    FlagAIGPT2Config(vocab_size=50257, n_embd=32, n_layer=1, n_head=4).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert type(loaded) is FlagAIGPT2Tokenizer
    text = "@paulwalk It's the view from where I'm living for two weeks."
    assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"]

    # save_pretrained also writes FlagAI's two files, with the original content.
    vocab, merges = gpt2_vocab_files()
    assert json.loads((tmp_path / "vocab.json").read_text()) == json.loads(open(vocab, encoding="utf-8").read())
    assert _merge_lines(tmp_path / "merges.txt") == _merge_lines(merges)
    from_files = FlagAIGPT2Tokenizer(vocab_file=str(tmp_path / "vocab.json"), merges_file=str(tmp_path / "merges.txt"))
    assert from_files(text)["input_ids"] == tokenizer(text)["input_ids"]

    # A folder holding only the two vocabulary files loads too (FlagAI's download layout).
    raw = tmp_path / "raw"
    raw.mkdir()
    shutil.copy(vocab, raw / "vocab.json")
    shutil.copy(merges, raw / "merges.txt")
    assert FlagAIGPT2Tokenizer.from_pretrained(raw)(text)["input_ids"] == tokenizer(text)["input_ids"]


def test_missing_vocabulary_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="needs a vocabulary and merges"):
        FlagAIGPT2Tokenizer()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        FlagAIGPT2Tokenizer(vocab_file=str(tmp_path / "nope.json"), merges_file=gpt2_vocab_files()[1])


def test_gpt2_base_ch_uses_the_bert_vocabulary(tmp_path):
    """GPT2-base-ch: a flagai_gpt2 config next to a BERT WordPiece tokenizer; AutoTokenizer follows
    tokenizer_config.json."""
    wordpiece = FlagAIBertTokenizer(vocab_file=chinese_vocab())
    FlagAIGPT2Config(vocab_size=21128, n_embd=32, n_layer=1, n_head=4, pad_token_id=0).save_pretrained(tmp_path)
    wordpiece.save_pretrained(tmp_path)
    loaded = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert type(loaded) is FlagAIBertTokenizer
    theirs = transformers.BertTokenizer(vocab=chinese_vocab())
    sentences = ["".join(chars) for chars, _ in msra_sentences("test", limit=100)]
    assert loaded(sentences)["input_ids"] == theirs(sentences)["input_ids"]


def test_public_names():
    assert flagai_hf.FlagAIGPT2Tokenizer is FlagAIGPT2Tokenizer
    assert issubclass(FlagAIGPT2Tokenizer, transformers.GPT2Tokenizer)
