"""benchmarks/bench_glm10b_write.py and bench_glm10b.py at a tiny size: both writers give the same weights (the
Megatron layout merges back exactly), the folders load, the driver's plain-torch spec forward matches our GLM, and
the cold-file helpers work. Nothing is timed."""

import json
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import bench_glm10b  # noqa: E402
import bench_glm10b_write as writer  # noqa: E402

from flagai_hf import GLMForConditionalGeneration  # noqa: E402
from flagai_hf.models.glm.megatron import MegatronShards  # noqa: E402
from flagai_hf.shards import read_sharded_safetensors  # noqa: E402

TINY = writer.flagai_config(num_layers=2, hidden_size=64, num_attention_heads=4, vocab_size=256,
                            max_sequence_length=32)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("glm10b")
    writer.write_safetensors_folder(root / "st", TINY, torch.bfloat16, seed=3, max_shard_size="40KB")
    writer.write_megatron_folder(root / "mg", TINY, torch.bfloat16, seed=3, world_size=4)
    return root


def test_full_size_plan_is_glm10b_ch():
    plan = writer.thudm_plan(writer.flagai_config(), torch.bfloat16)
    assert sum(t.numel() for t in plan.values()) == 9_879_633_920  # glm-spec §1
    assert len(plan) == 12 * 48 + 5


def test_safetensors_folder_is_sharded_and_loads_in_bf16(folders):
    index = json.loads((folders / "st" / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 2
    model = GLMForConditionalGeneration.from_pretrained(folders / "st")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    name = "transformer.layers.1.mlp.dense_4h_to_h.weight"
    expected = writer.random_tensor(name, (64, 256), torch.bfloat16, seed=3, num_layers=2)
    assert torch.equal(model.glm.layers[1].mlp.dense_4h_to_h.weight, expected)


def test_megatron_layout_merges_to_the_safetensors_weights(folders):
    shards = MegatronShards(folders / "mg", TINY["num_attention_heads"])
    assert [path.name for path in shards.paths] == [f"mp_rank_{r:02d}_model_states.pt" for r in range(4)]
    rank0 = shards.state_dicts[0]
    assert rank0["transformer.layers.0.attention.query_key_value.weight"].shape == (48, 64)  # 3 x 64 / 4 rows
    assert rank0["transformer.layers.0.attention.dense.weight"].shape == (64, 16)  # input columns split
    assert rank0["word_embeddings.weight"].shape == (64, 64)  # vocabulary rows split
    native = read_sharded_safetensors(folders / "st")
    loaded = GLMForConditionalGeneration.from_pretrain(folders, "mg")
    assert loaded.dtype == torch.bfloat16  # the checkpoint's dtype, no float32 copy
    state = loaded.state_dict()
    assert set(state) == set(native) and all(torch.equal(state[name], native[name]) for name in native)


def test_spec_forward_on_the_shards_equals_our_model(folders):
    ranks = [torch.load(path, weights_only=True)["module"] for path in bench_glm10b.weight_files(folders / "mg")]
    ids = torch.randint(0, 256, (1, 10))
    reference = bench_glm10b.spec_forward(ranks, TINY, 2, ids, sep=5)
    model = GLMForConditionalGeneration.from_pretrained(folders / "st", dtype=torch.float32).eval()
    with torch.inference_mode():
        ours = model(ids, attention_mask=torch.tensor([5])).logits[0]
    torch.testing.assert_close(ours.double(), reference, rtol=0, atol=1e-5)
    assert reference.dtype == torch.float64


def test_make_cold_evicts_freshly_read_files(folders):
    for path in bench_glm10b.weight_files(folders / "st"):
        path.read_bytes()
    assert bench_glm10b.make_cold(folders / "st") <= 1.0  # a fraction (0 where eviction works)
    path = bench_glm10b.weight_files(folders / "st")[0]
    path.read_bytes()
    with open(path, "rb") as handle:
        resident, pages = bench_glm10b.resident_pages(handle.fileno(), path.stat().st_size)
    assert pages > 0 and 0 <= resident <= pages


def mapped_file_ranges(folder: Path) -> list[tuple[int, int]]:
    """Address ranges of this process's memory mappings of files inside ``folder`` (``/proc/self/maps``)."""
    ranges = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5].startswith(str(folder)):
            start, end = (int(value, 16) for value in fields[0].split("-"))
            ranges.append((start, end))
    return ranges


@pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="needs Linux's /proc/self/maps")
@pytest.mark.parametrize("loader", ["from_pretrained", "load_folder"])
def test_bf16_folder_loads_as_the_mapped_files_themselves(folders, loader):
    from flagai_hf.loading import load_folder

    folder = (folders / "st").resolve()
    model = GLMForConditionalGeneration.from_pretrained(folder) if loader == "from_pretrained" \
        else load_folder(GLMForConditionalGeneration, folder)
    ranges = mapped_file_ranges(folder)
    assert ranges
    params = dict(model.named_parameters())
    assert {p.dtype for p in params.values()} == {torch.bfloat16}  # no float32 detour
    copied = [name for name, p in params.items() if not any(a <= p.data_ptr() < b for a, b in ranges)]
    assert copied == []  # every parameter is a view of a shard's mapping: no second copy
