"""What the fuzz targets found, kept as plain cases (in process, no atheris): each input once crashed with an
exception its parser does not document; now it is refused with a message naming the input."""

import json

import pytest

from flagai_hf import FlagAIBertConfig, FlagAIGPT2Config, FlagAIT5Config, GLMConfig
from flagai_hf.download.modelhub import parse_download_answer, parse_file_list
from flagai_hf.download.sources import SourceUnavailable

SIZES = {"vocab_size": 32, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 64}


@pytest.mark.parametrize("cls", [FlagAIBertConfig, GLMConfig, FlagAIGPT2Config, FlagAIT5Config])
def test_a_transformers_key_of_the_wrong_type_is_a_value_error_naming_the_file(cls):
    """fuzz/corpus/config_json/id2label-not-a-dict: PreTrainedConfig called .items() on it."""
    with pytest.raises(ValueError, match=rf"config.json cannot be read as a {cls.__name__}: AttributeError: .*wrong "
                                         rf"type"):
        cls.from_flagai_dict({**SIZES, "id2label": 3}, source="config.json")


@pytest.mark.parametrize("cls", [FlagAIBertConfig, GLMConfig, FlagAIGPT2Config, FlagAIT5Config])
def test_a_string_vocabulary_size_is_a_value_error(cls):
    """fuzz/corpus/config_json/token-id-a-string: GPT2's token-id validator compared ids with '' before the size
    check ran (StrictDataclassClassValidationError); every family now answers with a ValueError."""
    with pytest.raises(ValueError, match=r"vocab_size must be an integer|config.json cannot be read as"):
        cls.from_flagai_dict({**SIZES, "vocab_size": ""}, source="config.json")


@pytest.mark.parametrize("cls", [FlagAIBertConfig, GLMConfig, FlagAIGPT2Config, FlagAIT5Config])
@pytest.mark.parametrize("config", [3, [1, 2], "text", None])
def test_a_config_that_is_not_an_object_is_refused_by_every_family(cls, config):
    with pytest.raises(ValueError, match=r"config.json holds a JSON \w+; a config must be a JSON object"):
        cls.from_flagai_dict(config, source="config.json")


@pytest.mark.parametrize("answer, problem", [
    ([1, 2], "not a JSON object"),
    ("null", "not a JSON object"),
    ({"url": "http://x/f", "size": "²"}, r"gave size '²': a size is a non-negative integer"),
    ({"url": "http://x/f", "size": "１２"}, r"gave size '１２': a size is a non-negative integer"),
    ({"url": "http://x/f", "size": "\x1d12"}, r"gave size '\\x1d12': a size is a non-negative integer"),
    ({"url": "http://x/f", "sha256": 5}, r"gave sha256 '5': a sha256 is 64 hex digits"),
    ({"url": "http://x/f", "sha256": "z" * 64}, r"a sha256 is 64 hex digits"),
    ({"url": ["http://x/f"]}, r"gave no url"),
])
def test_a_malformed_download_answer_is_refused(answer, problem):
    body = json.dumps(answer).encode() if not isinstance(answer, str) else answer.encode()
    with pytest.raises(SourceUnavailable, match=rf"hub: downloadCode for 'config.json' .*{problem}"):
        parse_download_answer(body, "hub", "m", "config.json")


@pytest.mark.parametrize("text", ["[" * 100000 + "]" * 100000, "(" * 5000, "{1: 2}", "[]", "'a'"])
def test_a_malformed_file_list_is_refused(text):
    with pytest.raises(SourceUnavailable, match=r"hub answered the file list of 'm' with .*not a non-empty list"):
        parse_file_list(text, "hub", "m")
