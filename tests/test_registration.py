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
    from material import chinese_vocab

    tokenizer = tokenizer_class(vocab_file=chinese_vocab()) if tokenizer_class is flagai_hf.FlagAIBertTokenizer \
        else tokenizer_class()
    tokenizer.save_pretrained(tmp_path)
    loaded = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert type(loaded) is tokenizer_class
    assert loaded("北京欢迎你")["input_ids"] == tokenizer("北京欢迎你")["input_ids"]
