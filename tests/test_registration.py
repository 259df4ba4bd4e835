"""Registry-driven: every (Auto class, config, model) pairing flagai_hf registers resolves to our class from a saved
folder, and every family's tokenizers come back from AutoTokenizer."""

import pytest
import torch
import transformers

import flagai_hf
from flagai_hf.auto_registration import AUTO_MODELS, AUTO_TOKENIZERS

TINY_CONFIGS = {
    flagai_hf.FlagAIBertConfig: dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=37, num_labels=3),
    flagai_hf.GLMConfig: dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                              max_position_embeddings=40, pad_token_id=0, eos_token_id=1, sop_token_id=2,
                              mask_token_ids=[3, 4, 5], num_labels=3),
    flagai_hf.FlagAIGPT2Config: dict(vocab_size=99, n_embd=32, n_layer=2, n_head=4, n_positions=40, bos_token_id=1,
                                     eos_token_id=1),
    flagai_hf.FlagAIT5Config: dict(vocab_size=64, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4,
                                   relative_attention_num_buckets=8),
}


@pytest.mark.parametrize("auto_class, config_class, model_class", AUTO_MODELS,
                         ids=[f"{a.__name__}-{m.__name__}" for a, _, m in AUTO_MODELS])
def test_auto_class_resolves_to_ours(tmp_path, auto_class, config_class, model_class):
    model = model_class(config_class(**TINY_CONFIGS[config_class])).eval()
    model.save_pretrained(tmp_path)
    assert type(transformers.AutoConfig.from_pretrained(tmp_path)) is config_class
    loaded = auto_class.from_pretrained(tmp_path)
    assert type(loaded) is model_class
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name


TOKENIZERS = [tokenizer for _, default, other in AUTO_TOKENIZERS for tokenizer in (default, other) if tokenizer]


@pytest.mark.parametrize("tokenizer_class", TOKENIZERS, ids=[t.__name__ for t in TOKENIZERS])
def test_auto_tokenizer_returns_our_class(tmp_path, tokenizer_class):
    from material import chinese_vocab, gpt2_vocab_files

    tokenizer = tokenizer_class(vocab_file=chinese_vocab()) \
        if tokenizer_class in (flagai_hf.FlagAIBertTokenizer, flagai_hf.T5ChineseTokenizer) \
        else tokenizer_class(vocab_file=_tiny_spiece_model(tmp_path / "spm")) \
        if tokenizer_class is flagai_hf.T5SentencePieceTokenizer \
        else tokenizer_class(*gpt2_vocab_files()) if tokenizer_class is flagai_hf.FlagAIGPT2Tokenizer \
        else tokenizer_class()
    tokenizer.save_pretrained(tmp_path)
    loaded = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert type(loaded) is tokenizer_class
    assert loaded("北京欢迎你")["input_ids"] == tokenizer("北京欢迎你")["input_ids"]


def _tiny_spiece_model(folder) -> str:
    """A small sentencepiece unigram model trained on offline English tweets (T5's ids: pad 0, eos 1, unk 2)."""
    import sentencepiece as spm
    from material import wnut_tweets

    folder.mkdir()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(wnut_tweets(limit=500)), model_prefix=str(folder / "spiece"),
                                   vocab_size=300, model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                                   minloglevel=2)
    return str(folder / "spiece.model")
