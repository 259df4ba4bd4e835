"""Issue 12 item 2: a config that cannot fit the checkpoint (1e5 layers, a 1e12 vocabulary against a tiny checkpoint)
is refused before any model of that size is built, naming the config key and the checkpoint tensor / shape, for
``from_pretrain`` and ``from_pretrained`` (kwarg overrides and config.json), every family, and every weight format
(safetensors, sharded safetensors, a pickle): the checkpoint's shapes are read from its headers."""

import json
import tracemalloc

import pytest
import torch

import flagai_hf

FAMILIES = {
    "bert": (flagai_hf.BertModel, flagai_hf.FlagAIBertConfig, "num_hidden_layers", "embeddings.word_embeddings.weight",
             {"vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
              "max_position_embeddings": 16}),
    "glm": (flagai_hf.GLMForConditionalGeneration, flagai_hf.GLMConfig, "num_hidden_layers",
            "embeddings.word_embeddings.weight",
            {"vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
             "max_position_embeddings": 16}),
    "gpt2": (flagai_hf.GPT2LMHeadModel, flagai_hf.FlagAIGPT2Config, "n_layer", "embeddings.word_embeddings.weight",
             {"vocab_size": 50, "n_embd": 16, "n_layer": 2, "n_head": 2, "n_positions": 16}),
    "t5": (flagai_hf.T5Model, flagai_hf.FlagAIT5Config, "num_layers", "shared.weight",
           {"vocab_size": 50, "d_model": 16, "d_kv": 8, "d_ff": 32, "num_layers": 2, "num_heads": 2}),
}
HUGE = {"layers": 100_000, "vocab": 10**12}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """One tiny 2-layer checkpoint per family, saved by save_pretrained (safetensors)."""
    root = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    for family, (cls, config_class, _, _, sizes) in FAMILIES.items():
        cls(config_class(**sizes)).save_pretrained(root / family)
    return root


class BuildLog:
    """Records the sizes of every model ``cls`` builds (the check's own probe included)."""

    def __init__(self, monkeypatch, cls, layer_key):
        self.sizes = []
        original = cls.__init__

        def init(model, config, *args, **kwargs):
            self.sizes.append((getattr(config, layer_key), config.vocab_size))
            original(model, config, *args, **kwargs)

        monkeypatch.setattr(cls, "__init__", init)


def load(cls, folders, family, how, **overrides):
    if how == "from_pretrain":
        return cls.from_pretrain(folders, family, **overrides)
    return cls.from_pretrained(folders / family, **overrides)


@pytest.mark.parametrize("how", ["from_pretrain", "from_pretrained"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_huge_layer_count_is_refused_before_building(folders, monkeypatch, family, how):
    cls, _, layer_key, _, _ = FAMILIES[family]
    log = BuildLog(monkeypatch, cls, layer_key)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=rf"config {layer_key}={HUGE['layers']} asks for more layers than the "
                                             r"checkpoint holds \(2 \((encoder\.)?layers\.0 \.\. (encoder\.)?layers\.1\)\)"):
            load(cls, folders, family, how, **{layer_key: HUGE["layers"]})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert all(layers <= 2 for layers, _ in log.sizes), log.sizes  # only the check's probe was built
    assert peak < 30 * 2**20, peak  # 1e5 layers' modules, even on the meta device, are gigabytes of Python objects


@pytest.mark.parametrize("how", ["from_pretrain", "from_pretrained"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_huge_vocabulary_is_refused_before_building_naming_key_and_tensor(folders, monkeypatch, family, how):
    cls, _, layer_key, embedding, _ = FAMILIES[family]
    log = BuildLog(monkeypatch, cls, layer_key)
    with pytest.raises(ValueError, match=rf"do not fit {cls.__name__}: {embedding}: checkpoint \(50, 16\) vs model "
                                         rf"\({HUGE['vocab']}, 16\) \(config vocab_size={HUGE['vocab']}\)"):
        load(cls, folders, family, how, vocab_size=HUGE["vocab"])
    # the only model built is the check's probe, whose parameters are meta tensors
    assert all(layers <= 2 for layers, _ in log.sizes), log.sizes


def test_the_generic_layer_kwarg_name_is_checked_too(folders):
    with pytest.raises(ValueError, match=r"config n_layer=100000 asks for more layers"):
        flagai_hf.GPT2LMHeadModel.from_pretrained(folders / "gpt2", num_hidden_layers=100_000)


def test_a_huge_config_json_is_refused_too(folders, tmp_path):
    folder = tmp_path / "bert"
    folder.mkdir()
    (folder / "model.safetensors").symlink_to(folders / "bert" / "model.safetensors")
    config = json.loads((folders / "bert" / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "num_hidden_layers": HUGE["layers"]}))
    for loader in (lambda: flagai_hf.BertModel.from_pretrained(folder),
                   lambda: flagai_hf.BertModel.from_pretrain(tmp_path, "bert")):
        with pytest.raises(ValueError, match=r"config num_hidden_layers=100000 asks for more layers"):
            loader()


def test_fewer_layers_through_from_pretrained_is_refused_as_a_partial_model(folders):
    with pytest.raises(ValueError, match=r"have no place in BertModel as configured: config num_hidden_layers=1, "
                                         r"the checkpoint holds 2 .*layers\.1\.attention"):
        flagai_hf.BertModel.from_pretrained(folders / "bert", num_hidden_layers=1)


@pytest.mark.parametrize("layout", ["pickle", "sharded"])
def test_pickle_and_sharded_checkpoints_are_checked_from_their_headers(folders, tmp_path, monkeypatch, layout):
    cls, config_class, _, _, sizes = FAMILIES["bert"]
    model = cls.from_pretrained(folders / "bert")
    folder = tmp_path / "bert"
    if layout == "pickle":
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(sizes))  # FlagAI's legacy layout
        torch.save({"module": model.state_dict()}, folder / "pytorch_model.bin")
    else:
        model.save_pretrained(folder, max_shard_size="20KB")
        assert (folder / "model.safetensors.index.json").is_file()
    read = []
    monkeypatch.setattr(flagai_hf.loading, "read_weights", lambda *args, **kwargs: read.append(args))
    with pytest.raises(ValueError, match=r"embeddings\.word_embeddings\.weight: checkpoint \(50, 16\) vs model "
                                         r"\(1000000000000, 16\)"):
        cls.from_pretrain(tmp_path, "bert", vocab_size=HUGE["vocab"])
    assert read == []  # refused from the headers: no tensor was read


def test_ignore_mismatched_sizes_still_reinitialises_a_changed_label_count(tmp_path):
    torch.manual_seed(0)
    sizes = FAMILIES["bert"][4]
    classifier = flagai_hf.BertForSequenceClassification(flagai_hf.FlagAIBertConfig(**sizes, num_labels=3))
    classifier.save_pretrained(tmp_path / "cls")
    with pytest.raises(ValueError, match=r"classifier\.weight: checkpoint \(3, 16\) vs model \(5, 16\)"):
        flagai_hf.BertForSequenceClassification.from_pretrained(tmp_path / "cls", num_labels=5)
    model = flagai_hf.BertForSequenceClassification.from_pretrained(tmp_path / "cls", num_labels=5,
                                                                    ignore_mismatched_sizes=True)
    assert model.classifier.weight.shape == (5, 16)
    assert torch.equal(model.bert.embeddings.word_embeddings.weight,
                       classifier.bert.embeddings.word_embeddings.weight)
    # the opt-in covers heads only: backbone sizes must still fit
    with pytest.raises(ValueError, match=r"embeddings\.word_embeddings\.weight: checkpoint \(50, 16\)"):
        flagai_hf.BertForSequenceClassification.from_pretrained(tmp_path / "cls", vocab_size=HUGE["vocab"],
                                                                ignore_mismatched_sizes=True)


def test_zero_layers_still_loads_an_embeddings_only_model(folders):
    model = flagai_hf.BertModel.from_pretrain(folders, "bert", num_hidden_layers=0)
    assert len(model.layers) == 0
    assert all(param.device.type == "cpu" for param in model.parameters())
