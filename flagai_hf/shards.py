"""Sharded safetensors folders in transformers' layout: ``model-0000i-of-0000n.safetensors`` files and a
``model.safetensors.index.json`` whose ``weight_map`` says which file holds each tensor.

- ``read_sharded_safetensors(folder)``: the folder's tensors, memory-mapped (nothing is read until a tensor is used),
  following ``weight_map`` exactly; with ``shapes_only=True`` meta tensors read from the shards' headers (names,
  shapes, dtypes; no values), as ``read_safetensors_shapes`` gives them for one file. The index is untrusted input: an entry that points outside the folder (``../x``,
  an absolute path, a symlink out), a tensor the index maps to a shard that lacks it, or a tensor found in a shard
  the index does not name for it is an error naming the entry.
- ``write_sharded_safetensors(folder, tensors, produce)``: write a folder shard by shard from a plan (a state dict
  of meta tensors: names, shapes, dtypes) and a function that produces one real tensor at a time. Each shard's
  header is written from the plan first and every tensor is appended as soon as it is produced, so at most one tensor
  is in memory (used by the Megatron converter and the GLM-10b benchmark writers). The shard plan and file names are
  huggingface_hub's (``split_torch_state_dict_into_shards``), as in ``save_pretrained``.
"""

import json
from collections.abc import Callable
from pathlib import Path

import torch
from huggingface_hub import split_torch_state_dict_into_shards
from safetensors import safe_open

INDEX_NAME = "model.safetensors.index.json"
# safetensors' dtype names (its header's "dtype" field) -> torch dtypes
SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                      "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2, "I64": torch.int64,
                      "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}


def path_inside(folder: Path, name, what: str, root: Path | None = None) -> Path:
    """``folder / name`` when ``name`` (read from a file inside ``folder``; ``what`` says which entry) is a relative
    path that stays inside ``folder`` (or ``root``, a folder above it) after following symlinks; ``ValueError``
    naming the entry otherwise. ``root`` is for the Hugging Face cache, whose snapshot files are symlinks into the
    repository's ``blobs/``: the name itself must still stay inside ``folder``."""
    from .download.names import UnsafeFileName, check_file_name

    try:
        check_file_name(name, what, max_depth=8)
    except UnsafeFileName as error:
        raise ValueError(str(error)) from None
    path = folder / name
    root = (root or folder).resolve()
    if not path.resolve().is_relative_to(root):
        raise ValueError(f"Refusing {what}: {name!r} leads to {path.resolve()}, outside {root} (a symlink out of "
                         "the folder); paths named inside a model folder must stay inside it")
    return path


def read_index(index: Path) -> dict[str, str]:
    """The ``weight_map`` of a ``model.safetensors.index.json`` (tensor name -> shard file name), checked for form:
    a JSON object with a ``weight_map`` object of strings, no tensor listed twice."""
    def no_duplicates(pairs):
        keys = [key for key, _ in pairs]
        twice = sorted({key for key in keys if keys.count(key) > 1})
        if twice:
            raise ValueError(f"{index} lists {', '.join(map(repr, twice))} more than once")
        return dict(pairs)

    try:
        payload = json.loads(index.read_text(encoding="utf-8"), object_pairs_hook=no_duplicates)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{index} is not valid JSON: {error}") from error
    weight_map = payload.get("weight_map") if isinstance(payload, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise ValueError(f"{index} has no weight_map: expected {{\"weight_map\": {{tensor name: shard file}}}}")
    not_names = sorted(f"{key!r}: {value!r}" for key, value in weight_map.items() if not isinstance(value, str))
    if not_names:
        raise ValueError(f"{index} weight_map entries must name shard files (strings): {', '.join(not_names)}")
    return weight_map


def header_tensor(handle, name: str) -> torch.Tensor:
    """Tensor ``name`` of an open safetensors file as a meta tensor: its shape and dtype from the header, no values
    read."""
    sliced = handle.get_slice(name)
    return torch.empty(sliced.get_shape(), dtype=SAFETENSORS_DTYPES.get(sliced.get_dtype(), torch.uint8),
                       device="meta")


def read_safetensors_shapes(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of one safetensors file as meta tensors (shapes and dtypes from its header; nothing else read)."""
    with safe_open(path, framework="pt") as handle:
        return {name: header_tensor(handle, name) for name in handle.keys()}


def read_sharded_safetensors(folder: Path, shapes_only: bool = False, index_name: str = INDEX_NAME,
                             root: Path | None = None) -> dict[str, torch.Tensor]:
    """Every tensor of a sharded safetensors folder, memory-mapped, each from the shard the index names for it; with
    ``shapes_only``, as meta tensors read from the shards' headers. ``index_name``: another index file (a
    ``variant``'s, ``model.safetensors.index.fp16.json``); ``root``: see ``path_inside``."""
    index = folder / index_name
    weight_map = read_index(index)
    by_shard: dict[str, list[str]] = {}
    for name, shard in weight_map.items():
        by_shard.setdefault(shard, []).append(name)
    tensors = {}
    for shard, names in by_shard.items():
        path = path_inside(folder, shard, f"{index} weight_map entry {names[0]!r}", root=root)
        if not path.is_file():
            raise FileNotFoundError(f"{index} maps {names[0]!r} to {shard}, which is not in {folder}")
        with safe_open(path, framework="pt") as handle:
            present = set(handle.keys())
            lacking = [name for name in names if name not in present]
            if lacking:
                raise ValueError(f"{index} maps {', '.join(lacking)} to {shard}, which does not hold them")
            elsewhere = sorted(present - set(names))
            if elsewhere:
                mapped = ", ".join(f"{name} (mapped to {weight_map.get(name, 'no shard')})" for name in elsewhere)
                raise ValueError(f"{path} holds tensors that {index} does not map to it: {mapped}")
            for name in names:
                tensors[name] = header_tensor(handle, name) if shapes_only else handle.get_tensor(name)
    return tensors


def write_sharded_safetensors(folder: Path, plan: dict[str, torch.Tensor], produce: Callable[[str], torch.Tensor],
                              max_shard_size: int | str = "2GB") -> dict:
    """Write the tensors of ``plan`` (name -> a tensor, typically on the meta device, giving shape and dtype) to
    ``folder`` as sharded safetensors plus the index, asking ``produce(name)`` for each real tensor and writing it out
    at once (one tensor in memory at a time); returns the index. A single shard is written as ``model.safetensors``
    (no index), as transformers does."""
    folder.mkdir(parents=True, exist_ok=True)
    split = split_torch_state_dict_into_shards(plan, max_shard_size=max_shard_size)
    for filename, names in split.filename_to_tensors.items():
        write_safetensors_streaming(folder / filename, {name: plan[name] for name in names}, produce)
    index = {"metadata": {"total_size": split.metadata["total_size"]}, "weight_map": split.tensor_to_filename}
    if split.is_sharded:
        (folder / INDEX_NAME).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return index


_DTYPE_NAMES = {dtype: name for name, dtype in SAFETENSORS_DTYPES.items()}


def write_safetensors_streaming(path: Path, plan: dict[str, torch.Tensor], produce: Callable[[str], torch.Tensor],
                                metadata: dict[str, str] | None = None) -> None:
    """One safetensors file holding the tensors of ``plan`` (in its order), written as they are produced: the header
    (the format's 8-byte little-endian length, then JSON with each tensor's dtype, shape and byte range, padded to 8
    bytes) comes from the plan, then each ``produce(name)`` is checked against it and appended."""
    header, offset = {"__metadata__": metadata or {"format": "pt"}}, 0
    for name, tensor in plan.items():
        if tensor.dtype not in _DTYPE_NAMES:
            raise ValueError(f"{name}: safetensors cannot store {tensor.dtype}")
        size = tensor.numel() * tensor.element_size()
        header[name] = {"dtype": _DTYPE_NAMES[tensor.dtype], "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as handle:
        handle.write(len(encoded).to_bytes(8, "little") + encoded)
        for name, planned in plan.items():
            tensor = produce(name)
            if tensor.shape != planned.shape or tensor.dtype != planned.dtype:
                raise ValueError(f"{name}: produced {tuple(tensor.shape)} {tensor.dtype}, planned "
                                 f"{tuple(planned.shape)} {planned.dtype}")
            handle.write(tensor_bytes(tensor))
            del tensor


def tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """The raw (little-endian, C-order) bytes of a CPU tensor, without a copy when it is contiguous."""
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy()) if flat.numel() else memoryview(b"")
