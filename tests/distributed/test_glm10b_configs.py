"""The GLM-10b accelerate configs in examples/distributed/ parse with accelerate's own loader and launcher, and the
FSDP one turns into the intended FullyShardedDataParallelPlugin (FSDP2, full shard, block wrap, activation
checkpointing, sharded state dicts); its wrap class is the block GLM really uses."""

import os

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import FullyShardedDataParallelPlugin
from accelerate.utils.launch import prepare_multi_gpu_env

from flagai_hf.models.glm import GLMConfig, GLMForConditionalGeneration

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "distributed")
FSDP_YAML = os.path.join(CONFIGS, "glm10b_fsdp.yaml")
DEEPSPEED_YAML = os.path.join(CONFIGS, "glm10b_deepspeed_zero3.yaml")


def launch_args(config_file: str):
    args = launch_command_parser().parse_args(["--config_file", config_file, "train.py"])
    args, _, _ = _validate_launch_command(args)
    return args


def test_fsdp_config_loads():
    config = load_config_from_file(FSDP_YAML)
    assert config.distributed_type.value == "FSDP" and str(config.mixed_precision) == "bf16"
    assert config.num_processes == 8 and config.num_machines == 1
    assert config.fsdp_config["fsdp_version"] == 2


def test_fsdp_config_becomes_the_plugin(monkeypatch):
    args = launch_args(FSDP_YAML)
    assert args.use_fsdp and args.num_processes == 8
    env = prepare_multi_gpu_env(args)  # what `accelerate launch` hands each rank
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    for key, value in env.items():
        if key.startswith(("FSDP_", "ACCELERATE_")):
            monkeypatch.setenv(key, value)
    plugin = FullyShardedDataParallelPlugin()  # read from the environment, as Accelerator() does
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True  # full shard
    assert plugin.transformer_cls_names_to_wrap == ["PreNormBlock"]
    assert plugin.activation_checkpointing is True and plugin.cpu_offload is not True
    assert plugin.state_dict_type.name == "SHARDED_STATE_DICT"
    model = GLMForConditionalGeneration(GLMConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2,
                                                  num_attention_heads=2, max_position_embeddings=32))
    blocks = [m for m in model.modules() if type(m).__name__ in plugin.transformer_cls_names_to_wrap]
    assert len(blocks) == 2  # one FSDP unit per GLM layer
    assert "PreNormBlock" in model._no_split_modules


def test_deepspeed_config_loads():
    config = load_config_from_file(DEEPSPEED_YAML)
    assert config.distributed_type.value == "DEEPSPEED" and str(config.mixed_precision) == "bf16"
    ds = config.deepspeed_config
    assert ds["zero_stage"] == 3 and ds["zero3_init_flag"] is True
    assert ds["offload_optimizer_device"] == ds["offload_param_device"] == "none"
    args = launch_args(DEEPSPEED_YAML)
    assert args.use_deepspeed and args.zero_stage == 3 and args.num_processes == 8


@pytest.mark.parametrize("path", [FSDP_YAML, DEEPSPEED_YAML])
def test_two_machine_override(path):
    args = launch_command_parser().parse_args(["--config_file", path, "--num_machines", "2", "--num_processes", "16",
                                               "--machine_rank", "1", "--main_process_ip", "10.0.0.1", "train.py"])
    args, _, _ = _validate_launch_command(args)
    assert (args.num_machines, args.num_processes, args.machine_rank, args.main_process_ip) == (2, 16, 1, "10.0.0.1")
