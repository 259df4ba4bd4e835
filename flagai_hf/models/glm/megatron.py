"""THUDM Megatron checkpoints of GLM: model-parallel shards merged into one (mp = 1) state dict.

THUDM's GLM code (Megatron-LM + DeepSpeed) saves ``{save}/{tag}/mp_rank_{NN}_model_states.pt``, one file per
model-parallel rank, with the tensors under ``["module"]`` and the tag (an iteration or ``release``) in
``{save}/latest_checkpointed_iteration.txt`` (DeepSpeed also writes ``latest``). The tensors keep THUDM's names
(the spec's §9); how each one is split across ranks:

- ``word_embeddings.weight`` (VocabParallelEmbedding): contiguous vocabulary rows -> concatenated on dim 0;
- ``attention.query_key_value`` (ColumnParallelLinear, stride 3): rank r holds ``[q_r; k_r; v_r]`` for its heads
  -> every rank's q rows, then every rank's k rows, then the v rows (THUDM's ``change_mp.py``);
- ``mlp.dense_h_to_4h`` (ColumnParallelLinear): output rows, weight and bias -> dim 0;
- ``attention.dense`` and ``mlp.dense_4h_to_h`` (RowParallelLinear): the weight's input columns -> dim 1; the bias
  is added after the all-reduce, so every rank holds all of it;
- layer norms, position tables and the plain ``torch.nn.Linear`` heads of THUDM's classification model
  (``pool_layer``, ``multichoice_head``) are replicated.

Replicated tensors must be equal on every rank, and every rank must hold the same names: anything else is an error,
as is a name not listed above. Downstream THUDM models wrap the backbone as ``model.`` (kept; the key map strips it).
"""

import ctypes
import mmap
import re
import zipfile
from pathlib import Path

import torch

from ...loading import torch_load_weights
from ...shards import path_inside

SHARD_NAME = re.compile(r"mp_rank_(\d+)_model_states\.pt")
TRACKER_FILES = ("latest_checkpointed_iteration.txt", "latest")  # THUDM's, DeepSpeed's

_BACKBONE = r"(?:model\.)?"
_LAYER = _BACKBONE + r"transformer\.layers\.\d+\."
ROWS, QKV, COLUMNS, REPLICATED = "rows", "qkv", "columns", "replicated"
PARTITIONS = (
    (re.compile(_BACKBONE + r"word_embeddings\.weight"), ROWS),
    (re.compile(_LAYER + r"attention\.query_key_value\.(weight|bias)"), QKV),
    (re.compile(_LAYER + r"mlp\.dense_h_to_4h\.(weight|bias)"), ROWS),
    (re.compile(_LAYER + r"(attention\.dense|mlp\.dense_4h_to_h)\.weight"), COLUMNS),
    (re.compile(_LAYER + r"(attention\.dense|mlp\.dense_4h_to_h)\.bias"), REPLICATED),
    (re.compile(_LAYER + r"(input_layernorm|post_attention_layernorm)\.(weight|bias)"), REPLICATED),
    (re.compile(_BACKBONE + r"transformer\.final_layernorm\.(weight|bias)"), REPLICATED),
    (re.compile(_BACKBONE + r"transformer\.(block_)?position_embeddings\.weight"), REPLICATED),
    (re.compile(r"(pool_layer|multichoice_head)\.(weight|bias)"), REPLICATED),
)


def partition_of(name: str) -> str | None:
    """How tensor ``name`` is split across model-parallel ranks (``None``: not a GLM tensor we know)."""
    return next((kind for pattern, kind in PARTITIONS if pattern.fullmatch(name)), None)


def merge_megatron_shards(state_dicts: list[dict], num_attention_heads: int) -> dict:
    """Merge the ``module`` state dicts of ranks 0..N-1 (in rank order) into one mp = 1 state dict (THUDM names)."""
    names = check_shard_names(state_dicts, num_attention_heads)
    return {name: merge_tensor(name, [state_dict[name] for state_dict in state_dicts], num_attention_heads)
            for name in names}


def check_shard_names(state_dicts: list[dict], num_attention_heads: int) -> list[str]:
    """The tensor names of the ranks' state dicts, checked: every rank holds the same names, all of them GLM's, and
    the heads split evenly across the ranks."""
    if not state_dicts:
        raise ValueError("No model-parallel shards to merge")
    world_size = len(state_dicts)
    if num_attention_heads % world_size:
        raise ValueError(f"{world_size} model-parallel shards cannot split {num_attention_heads} attention heads")
    names = list(state_dicts[0])
    for rank, state_dict in enumerate(state_dicts[1:], start=1):
        if set(state_dict) != set(names):
            only_0, only_rank = sorted(set(names) - set(state_dict)), sorted(set(state_dict) - set(names))
            raise ValueError(f"Model-parallel shards hold different tensors: only rank 0 has {only_0 or 'none'}, "
                             f"only rank {rank} has {only_rank or 'none'}")
    unknown = sorted(name for name in names if partition_of(name) is None)
    if unknown:
        raise ValueError(f"Megatron checkpoint has tensors with unknown names (not GLM's): {', '.join(unknown)}")
    return names


def merge_tensor(name: str, tensors: list[torch.Tensor], num_attention_heads: int) -> torch.Tensor:
    """One tensor of the mp = 1 model from its ranks' parts (in rank order). Meta tensors give the merged shape
    (and the shape checks) without data; replicated values are then not compared."""
    kind = partition_of(name)
    if kind == REPLICATED:
        differing = [rank for rank, tensor in enumerate(tensors[1:], start=1)
                     if tensor.shape != tensors[0].shape
                     or (tensor.device.type != "meta" and not torch.equal(tensor, tensors[0]))]
        if differing:
            raise ValueError(f"{name} should be the same on every model-parallel rank, but ranks "
                             f"{', '.join(map(str, differing))} differ from rank 0")
        return tensors[0]
    if kind == QKV:
        return _merge_qkv(name, tensors, num_attention_heads)
    return _concatenate(name, tensors, dim=0 if kind == ROWS else 1)


def _concatenate(name: str, tensors: list[torch.Tensor], dim: int) -> torch.Tensor:
    shapes = {tuple(size for axis, size in enumerate(t.shape) if axis != dim) for t in tensors}
    if tensors[0].dim() <= dim or len(shapes) != 1 or len({t.dim() for t in tensors}) != 1:
        raise ValueError(f"{name}: shards of shapes {[tuple(t.shape) for t in tensors]} cannot be joined on dim {dim}")
    return torch.cat(tensors, dim=dim)


def _merge_qkv(name: str, tensors: list[torch.Tensor], num_attention_heads: int) -> torch.Tensor:
    rows = {t.shape[0] if t.dim() in (1, 2) else -1 for t in tensors}
    per_rank = next(iter(rows)) // 3
    hidden = per_rank * len(tensors)
    if len(rows) != 1 or per_rank * 3 != next(iter(rows)) or hidden % num_attention_heads \
            or (tensors[0].dim() == 2 and tensors[0].shape[1] != hidden):
        raise ValueError(f"{name}: shards of shapes {[tuple(t.shape) for t in tensors]} are not "
                         f"[q; k; v] blocks of {num_attention_heads // len(tensors)} heads each")
    chunks = [t.split(per_rank, dim=0) for t in tensors]  # each rank: (q_r, k_r, v_r)
    return torch.cat([rank_chunks[part] for part in range(3) for rank_chunks in chunks], dim=0)


def find_megatron_shards(folder) -> list[Path]:
    """The ``mp_rank_XX_model_states.pt`` files of ``folder``, sorted by rank; ``[]`` when it has none.

    Looked for where THUDM's loader looks: in the tag folder that ``latest_checkpointed_iteration.txt`` (or
    DeepSpeed's ``latest``) names (a folder inside ``folder``: a tag leading outside it is refused), else in
    ``folder`` itself, else in ``folder/release``, else in the only
    iteration subfolder. Missing ranks (e.g. 00 and 02 without 01) are an error.
    """
    folder = Path(folder)
    tracker = next((folder / name for name in TRACKER_FILES if (folder / name).is_file()), None)
    if tracker is not None:
        tag = tracker.read_text(encoding="utf-8", errors="replace").strip()
        tag_folder = path_inside(folder, tag, f"the checkpoint tag in {tracker}")
        shards = _shards_in(tag_folder)
        if not shards:
            raise FileNotFoundError(f"{tracker} names checkpoint {tag!r}, but {tag_folder} holds no "
                                    "mp_rank_XX_model_states.pt")
        return shards
    for candidate in (folder, folder / "release"):
        shards = _shards_in(candidate)
        if shards:
            return shards
    iterations = sorted((p for p in folder.iterdir() if p.is_dir() and p.name.isdigit() and _shards_in(p)),
                        key=lambda p: int(p.name)) if folder.is_dir() else []
    if len(iterations) > 1:
        raise ValueError(f"{folder} holds Megatron checkpoints of several iterations "
                         f"({', '.join(p.name for p in iterations)}) and no latest_checkpointed_iteration.txt: "
                         "name the one to load (its folder, or a tracker file holding its iteration)")
    return _shards_in(iterations[0]) if iterations else []


def _shards_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    ranks: dict[int, list[Path]] = {}
    for path in folder.iterdir():
        match = SHARD_NAME.fullmatch(path.name)
        if match and path.is_file():
            ranks.setdefault(int(match.group(1)), []).append(path)
    if not ranks:
        return []
    twice = [str(path) for paths in ranks.values() if len(paths) > 1 for path in paths]
    if twice:
        raise ValueError(f"Several shard files for one model-parallel rank: {', '.join(sorted(twice))}")
    missing = sorted(set(range(max(ranks) + 1)) - set(ranks))
    if missing:
        absent = ", ".join(f"mp_rank_{rank:02d}_model_states.pt" for rank in missing)
        raise FileNotFoundError(f"{folder} lacks model-parallel shards {absent} "
                                f"(it holds ranks {', '.join(f'{rank:02d}' for rank in sorted(ranks))})")
    return [ranks[rank][0] for rank in sorted(ranks)]


def _numpy_globals() -> list:
    """NumPy types in the RNG state (``np_rng_state``) that THUDM's training checkpoints carry next to ``module``:
    arrays rebuilt from raw bytes, no code run. Listed under both NumPy 2's and NumPy 1's module names."""
    try:
        import numpy
    except ImportError:
        return []
    core = getattr(numpy, "_core", None) or numpy.core
    reconstruct = core.multiarray._reconstruct
    allowed = [numpy.ndarray, numpy.dtype]
    if hasattr(numpy, "dtypes"):  # NumPy >= 1.25 pickles the dtype's class too
        allowed.append(numpy.dtypes.UInt32DType)
    allowed += [(reconstruct, f"{module}.multiarray._reconstruct") for module in ("numpy._core", "numpy.core")]
    return allowed


def load_megatron_shard(path: Path) -> dict[str, torch.Tensor]:
    """The ``module`` state dict of one shard, read with ``torch.load(weights_only=True)``, memory-mapped when the
    file is a zip archive (torch >= 1.6): training checkpoints also hold optimizer states, which are then never read,
    and ``MegatronShards`` reads a tensor's pages only when it merges it."""
    with torch.serialization.safe_globals(_numpy_globals()):
        checkpoint = torch_load_weights(path, accepted="a Megatron model state {'module': {name: tensor}, ...}",
                                        mmap=zipfile.is_zipfile(path))
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("module"), dict):
        found = ", ".join(map(str, checkpoint)) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ValueError(f"{path} is not a Megatron model state: no 'module' state dict (found {found})")
    return checkpoint["module"]


class MegatronShards:
    """The model-parallel shards of one Megatron checkpoint, memory-mapped, merged one tensor at a time.

    ``plan()`` gives every merged tensor's shape and dtype (meta tensors; the shape checks run there, before any
    data is read); ``merged(name)`` reads that tensor's parts from the shards, merges them, and hands the parts'
    pages back to the kernel, so converting a checkpoint holds about one tensor of it in memory at a time (the
    shards' mapped pages would otherwise stay resident, and counted in the process's memory, until it ends).
    """

    def __init__(self, folder, num_attention_heads: int):
        self.paths = find_megatron_shards(folder)
        if not self.paths:
            raise FileNotFoundError(f"No Megatron shards mp_rank_XX_model_states.pt in {folder}")
        self.num_attention_heads = num_attention_heads
        self.mapped = [zipfile.is_zipfile(path) for path in self.paths]
        self.state_dicts = [load_megatron_shard(path) for path in self.paths]
        self.names = check_shard_names(self.state_dicts, num_attention_heads)

    def plan(self) -> dict[str, torch.Tensor]:
        return {name: merge_tensor(name, [sd[name].to("meta") for sd in self.state_dicts], self.num_attention_heads)
                for name in self.names}

    def merged(self, name: str) -> torch.Tensor:
        parts = [state_dict[name] for state_dict in self.state_dicts]
        tensor = merge_tensor(name, parts, self.num_attention_heads)
        if partition_of(name) == REPLICATED:
            tensor = tensor.clone()  # rank 0's part itself: a copy, not the mapping whose pages are handed back
        for part, mapped in zip(parts, self.mapped):
            if mapped:
                release_mapped_pages(part)
        return tensor


def release_mapped_pages(tensor: torch.Tensor) -> None:
    """Drop the resident pages of a tensor that ``torch.load(mmap=True)`` mapped from its file (a private,
    never-written mapping: reading them again later re-reads the file, so values are unchanged)."""
    madvise = getattr(_LIBC, "madvise", None)
    if madvise is None or not hasattr(mmap, "MADV_DONTNEED"):
        return  # not Linux / no libc: the pages stay until the shards are closed
    storage = tensor.untyped_storage()
    start = storage.data_ptr() // mmap.PAGESIZE * mmap.PAGESIZE
    end = storage.data_ptr() + storage.nbytes()
    madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), mmap.MADV_DONTNEED)


try:
    _LIBC = ctypes.CDLL(None)
except OSError:
    _LIBC = None


def read_megatron_folder(folder: Path, config) -> dict[str, torch.Tensor] | None:
    """GLM's weight reader for ``loading.Family``: a folder of THUDM Megatron shards as one state dict (``None``
    when it holds none).

    A position table whose row count differs from the config's (``max_sequence_length + 1`` with block positions)
    is refused, naming the ``max_sequence_length`` the checkpoint was trained with. THUDM's fine-tuning loader
    instead pads a shorter table with freshly initialised rows before training them; for loading or converting a
    trained model those rows would be untrained random values, silently used for every position past the trained
    length (and different on every load), so that choice is left to whoever fine-tunes (load with the trained length,
    then resize).
    """
    if not find_megatron_shards(folder):
        return None
    shards = MegatronShards(folder, config.num_attention_heads)
    check_position_tables(shards.plan(), config, shards.paths[0].parent)
    return {name: shards.merged(name) for name in shards.names}


def check_position_tables(tensors: dict[str, torch.Tensor], config, where) -> None:
    """Refuse position tables (merged tensors, or meta tensors of their shapes) with another row count than
    ``config`` needs, naming the ``max_sequence_length`` the checkpoint was trained with (see
    ``read_megatron_folder``)."""
    extra = 1 if config.block_position_encoding else 0
    expected = config.max_position_embeddings + extra
    for name, tensor in tensors.items():
        if name.endswith("position_embeddings.weight") and tensor.shape[0] != expected:
            raise ValueError(
                f"{where}: {name} has {tensor.shape[0]} rows, but max_sequence_length="
                f"{config.max_position_embeddings} needs {expected}. The checkpoint was trained with "
                f"max_sequence_length={tensor.shape[0] - extra}: set that in config.json or pass it "
                f"(from_pretrain(..., max_sequence_length={tensor.shape[0] - extra})). Padding the table with "
                "random rows, as THUDM's fine-tuning loader does, is not done: they would be untrained."
            )
