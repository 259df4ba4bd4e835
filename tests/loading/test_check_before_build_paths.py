"""Issue 12 item 3 (rest): ``from_pretrained`` runs the pre-build config-vs-checkpoint check (see
``test_cost_before_checks.py``) also with ``subfolder=``, with a weight ``variant=`` (single and sharded) and for a
Hub id, whose config and weights are looked up in the Hugging Face cache the way transformers looks them up
(offline here: a cache laid out as huggingface_hub lays it out, snapshot files symlinked into ``blobs/``)."""

import hashlib
import shutil

import pytest
import torch

import flagai_hf

SIZES = {"vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
         "max_position_embeddings": 16}
TOO_MANY = r"config num_hidden_layers=100000 asks for more layers than the checkpoint holds \(2 \(layers\.0"
TOO_BIG = r"embeddings\.word_embeddings\.weight: checkpoint \(50, 16\) vs model \(1000000000000, 16\)"


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return flagai_hf.BertModel(flagai_hf.FlagAIBertConfig(**SIZES))


@pytest.fixture
def built(monkeypatch):
    """The layer counts of every BertModel built (the check's own probe has at most 2)."""
    sizes = []
    original = flagai_hf.BertModel.__init__

    def init(self, config, *args, **kwargs):
        sizes.append(config.num_hidden_layers)
        original(self, config, *args, **kwargs)

    monkeypatch.setattr(flagai_hf.BertModel, "__init__", init)
    return sizes


def test_subfolder_is_checked_before_building(model, tmp_path, built):
    model.save_pretrained(tmp_path / "repo" / "bert")
    with pytest.raises(ValueError, match=TOO_MANY):
        flagai_hf.BertModel.from_pretrained(tmp_path / "repo", subfolder="bert", num_hidden_layers=100_000)
    assert max(built) <= 2
    loaded = flagai_hf.BertModel.from_pretrained(tmp_path / "repo", subfolder="bert")
    assert torch.equal(loaded.embeddings.word_embeddings.weight, model.embeddings.word_embeddings.weight)


@pytest.mark.parametrize("shard", [None, "20KB"])
def test_variant_weights_are_the_ones_checked(model, tmp_path, built, shard):
    folder = tmp_path / "bert"
    model.save_pretrained(folder, variant="fp16", **({"max_shard_size": shard} if shard else {}))
    # a plain model.safetensors of another (3-layer) model beside it must not be what is checked
    other = flagai_hf.BertModel(flagai_hf.FlagAIBertConfig(**{**SIZES, "num_hidden_layers": 3}))
    other.save_pretrained(tmp_path / "other")
    shutil.copy(tmp_path / "other" / "model.safetensors", folder / "model.safetensors")
    built.clear()
    with pytest.raises(ValueError, match=TOO_BIG):
        flagai_hf.BertModel.from_pretrained(folder, variant="fp16", vocab_size=10**12)
    with pytest.raises(ValueError, match=TOO_MANY):
        flagai_hf.BertModel.from_pretrained(folder, variant="fp16", num_hidden_layers=100_000)
    assert max(built) <= 2
    loaded = flagai_hf.BertModel.from_pretrained(folder, variant="fp16")  # 2 layers: the variant's, accepted
    for got, want in zip(loaded.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(got, want)


def test_use_safetensors_false_checks_the_pickle_transformers_loads(model, tmp_path):
    folder = tmp_path / "bert"
    deeper = flagai_hf.BertModel(flagai_hf.FlagAIBertConfig(**{**SIZES, "num_hidden_layers": 3}))
    deeper.save_pretrained(folder)  # config.json: 3 layers
    torch.save(deeper.state_dict(), folder / "pytorch_model.bin")  # 3 layers
    model.save_pretrained(tmp_path / "two")
    shutil.copy(tmp_path / "two" / "model.safetensors", folder / "model.safetensors")  # 2 layers beside it
    loaded = flagai_hf.BertModel.from_pretrained(folder, use_safetensors=False)
    assert len(loaded.layers) == 3
    with pytest.raises(ValueError, match=r"config num_hidden_layers=100000 asks for more layers than the checkpoint "
                                         r"holds \(3 \(layers\.0"):
        flagai_hf.BertModel.from_pretrained(folder, use_safetensors=False, num_hidden_layers=100_000)
    with pytest.raises(ValueError, match=TOO_MANY):  # by default the safetensors file, as transformers
        flagai_hf.BertModel.from_pretrained(folder, num_hidden_layers=100_000)


def hub_cache(cache, repo_id, source):
    """``cache`` laid out as huggingface_hub's cache holding ``source``'s files as repository ``repo_id`` at main:
    ``models--owner--name/{blobs/<digest>, snapshots/<commit>/<file> -> ../../blobs/<digest>, refs/main}``."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0" * 40
    snapshot = repo / "snapshots" / commit
    for path in sorted(source.rglob("*")):
        if not path.is_file():
            continue
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        blob = repo / "blobs" / digest
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, blob)
        link = snapshot / path.relative_to(source)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(blob)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return snapshot


@pytest.mark.parametrize("layout", ["single", "sharded", "subfolder"])
def test_a_hub_id_is_checked_from_its_cached_files_before_building(model, tmp_path, built, layout):
    source = tmp_path / "source"
    model.save_pretrained(source / "sub" if layout == "subfolder" else source,
                          **({"max_shard_size": "20KB"} if layout == "sharded" else {}))
    cache = tmp_path / "cache"
    hub_cache(cache, "someone/tiny-bert", source)
    options = {"cache_dir": cache, **({"subfolder": "sub"} if layout == "subfolder" else {})}
    with pytest.raises(ValueError, match=TOO_MANY):
        flagai_hf.BertModel.from_pretrained("someone/tiny-bert", num_hidden_layers=100_000, **options)
    with pytest.raises(ValueError, match=TOO_BIG):
        flagai_hf.BertModel.from_pretrained("someone/tiny-bert", vocab_size=10**12, **options)
    assert max(built) <= 2
    loaded = flagai_hf.BertModel.from_pretrained("someone/tiny-bert", **options)
    assert torch.equal(loaded.embeddings.word_embeddings.weight, model.embeddings.word_embeddings.weight)


def test_a_hub_shard_symlinked_out_of_the_cache_repository_is_refused(model, tmp_path):
    source = tmp_path / "source"
    model.save_pretrained(source, max_shard_size="20KB")
    snapshot = hub_cache(tmp_path / "cache", "someone/tiny-bert", source)
    shard = next(snapshot.glob("model-00001-*.safetensors"))
    outside = tmp_path / "elsewhere.safetensors"
    shutil.copy(shard, outside)
    shard.unlink()
    shard.symlink_to(outside)  # the cache's own links point into its blobs/, never out of the repository
    with pytest.raises(ValueError, match=r"outside .*models--someone--tiny-bert"):
        flagai_hf.BertModel.from_pretrained("someone/tiny-bert", cache_dir=tmp_path / "cache")


def test_a_hub_id_not_in_the_cache_is_left_to_transformers(tmp_path):
    with pytest.raises(OSError, match=r"couldn.t find them in the cached files"):  # transformers' own message
        flagai_hf.BertModel.from_pretrained("someone/absent", cache_dir=tmp_path / "empty")
