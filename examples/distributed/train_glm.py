#!/usr/bin/env python
"""GLM fine-tuning past one machine: FSDP2 or DeepSpeed ZeRO-3 through accelerate (People's Daily title generation).

The task is ``examples/title_generation``'s (body -> title blank filling with ``[gMASK]``, the same data, encoding and
``GLMSeq2SeqCollator``); the loop is ``examples/train_accelerate.py``'s (its sampler, checkpoint rotation, resume and
metrics log come from ``examples/accelerate_loop.py``, which both scripts share). What this script adds is the engine:

    accelerate launch --config_file examples/distributed/glm10b_fsdp.yaml examples/distributed/train_glm.py \\
        --init_from /path/to/glm-10b-ch --mixed_precision bf16 ...                       # 8 GPUs, FSDP2
    accelerate launch --config_file examples/distributed/glm10b_deepspeed_zero3.yaml \\
        examples/distributed/train_glm.py --init_from /path/to/glm-10b-ch ...            # 8 GPUs, ZeRO-3
    torchrun --nproc_per_node 2 examples/distributed/train_glm.py --fsdp --config tiny   # 2 CPU processes, gloo

(multi-node recipes: docs/distributed.md.) With ``accelerate launch`` the FSDP / DeepSpeed settings come from the
config file; without it, ``--fsdp`` builds the plugin the GLM-10b yaml describes: FSDP2, full shard (parameters,
gradients and AdamW states split over the ranks, re-sharded after each forward), one FSDP unit per GLM block
(``PreNormBlock``), activation checkpointing per block (``--no_activation_checkpointing`` turns it off), sharded
``torch.distributed.checkpoint`` state dicts. ``--mixed_precision bf16`` computes in bf16 with fp32 sharded master
weights and fp32 gradient reduction (``MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)``); bf16 runs on
GPUs with bf16 support and on CPUs.

CPU processes: accelerate 1.16 enables FSDP only on accelerator devices and DeepSpeed only with ``cpu=False`` (CPU
processes stay ``MULTI_CPU``, plain DDP, and the plugin is ignored). torch's FSDP2 and DeepSpeed's CPU accelerator both
run on CPU over gloo, so ``enable_sharding_on_cpu`` below sets the state fields accelerate sets on GPUs; everything
else (``fully_shard`` per block, activation checkpointing, the optimizer's parameter swap, ``backward``,
``clip_grad_norm_``, ``save_state`` / ``load_state``) is accelerate's own FSDP2 / DeepSpeed code.

One optimizer step: every process takes ``--gradient_accumulation_steps`` micro-batches of ``--batch_size`` pairs;
the loss is the title-token cross-entropy summed over the global batch divided by its labelled-token count, so any
process count with the same global batch computes the same losses and gradients (up to summation order). Checkpoints
(``--checkpoint_every``) are ``accelerator.save_state`` folders ``<output_dir>/checkpoints/step_<N>``: under FSDP the
model and optimizer as DCP shards (``pytorch_model_fsdp_0/``, ``optimizer_0/``, one ``.distcp`` file per rank), the
scheduler, the loop position and every rank's RNG state; ``--resume`` continues bitwise on CPU.

Outputs in ``<output_dir>``: ``metrics.jsonl`` (a ``train`` record per step, ``eval`` records, a ``summary``),
``weights_digest_rank<r>.json`` (SHA-256 of every tensor of the FULL, gathered state dict as rank ``r`` sees it:
identical files prove the shards assemble to one model), and ``model/`` (``save_pretrained`` of the gathered weights,
loadable with ``GLMForConditionalGeneration.from_pretrained``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from accelerate import Accelerator  # noqa: E402
from accelerate.state import PartialState  # noqa: E402
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin, set_seed  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from transformers import get_linear_schedule_with_warmup  # noqa: E402

_HERE = os.path.dirname(os.path.abspath(__file__))
_EXAMPLES = os.path.dirname(_HERE)
sys.path.append(_EXAMPLES)  # examples/, for example_common
import accelerate_loop as _loop  # noqa: E402
from accelerate_loop import add_loop_arguments, check_loop_arguments  # noqa: E402
from example_common import load_module  # noqa: E402

_titles = load_module("flagai_examples_title_generation_train_glm",
                      os.path.join(_EXAMPLES, "title_generation", "train_glm.py"))
_data = load_module("flagai_examples_title_generation_data", os.path.join(_EXAMPLES, "title_generation", "data.py"))

from flagai_hf.models.glm import GLMForConditionalGeneration  # noqa: E402
from flagai_hf.models.glm.tokenization_flagai_glm import GLMChineseTokenizer, GLMSeq2SeqCollator  # noqa: E402

BLOCK_CLASS = "PreNormBlock"  # GLM's transformer block: one FSDP unit and one checkpointed region each


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("model")
    g.add_argument("--config", choices=list(_titles.MODEL_SIZES), default="tiny",
                   help="model size, randomly initialised unless --init_from: tiny 256x2, small 512x6, base 768x12, "
                        "large 1024x24 (GLM-large-ch); GLM-10b-ch's shape is --hidden_size 4096 --num_layers 48 "
                        "--num_heads 64")
    g.add_argument("--init_from", default=None,
                   help="a flagai_hf / Hub GLM folder to fine-tune (from_pretrained) instead of a random model")
    g.add_argument("--hidden_size", type=int, default=None, help="override the size's hidden size")
    g.add_argument("--num_layers", type=int, default=None, help="override the size's number of layers")
    g.add_argument("--num_heads", type=int, default=None, help="override the size's number of attention heads")
    g.add_argument("--dropout", type=float, default=0.0, help="embedding, attention and output dropout")
    g = p.add_argument_group("data")
    g.add_argument("--train_pairs", type=int, default=-1, help="first N training pairs (-1: all ~1,420)")
    g.add_argument("--eval_pairs", type=int, default=64, help="first N held-out pairs (0: no evaluation)")
    g.add_argument("--max_source_length", type=int, default=64,
                   help="source tokens including [CLS], [gMASK] and <|endoftext|> (the body is cut)")
    g.add_argument("--max_target_length", type=int, default=32, help="title tokens including <|endofpiece|>")
    g = p.add_argument_group("distribution")
    g.add_argument("--fsdp", action="store_true",
                   help="shard with FSDP2 as examples/distributed/glm10b_fsdp.yaml does, when not started by "
                        "`accelerate launch` with an FSDP config (which takes precedence)")
    g.add_argument("--no_activation_checkpointing", dest="activation_checkpointing", action="store_false",
                   help="keep every block's activations (--fsdp, and the non-sharded runs)")
    add_loop_arguments(p, item="pairs", batch_size=8, learning_rate=5e-4,
                       output_dir=os.path.join("outputs", "glm_distributed"))
    args = p.parse_args(argv)
    check_loop_arguments(p, args)
    return args


# ------------------------------------------------------------------------------------------------- sharded engine
def fsdp_plugin(args) -> FullyShardedDataParallelPlugin | None:
    """The FSDP2 plugin: ``accelerate launch``'s (its config file / flags reach the processes as ``FSDP_*``
    variables) or, with ``--fsdp``, the settings of ``glm10b_fsdp.yaml``; None when the run is not sharded by FSDP."""
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        plugin = FullyShardedDataParallelPlugin()  # reads the FSDP_* environment, as Accelerator() would
    elif args.fsdp:
        plugin = FullyShardedDataParallelPlugin(
            fsdp_version=2, reshard_after_forward=True, auto_wrap_policy="transformer_based_wrap",
            transformer_cls_names_to_wrap=[BLOCK_CLASS], state_dict_type="SHARDED_STATE_DICT",
            activation_checkpointing=args.activation_checkpointing)
    else:
        return None
    if plugin.fsdp_version != 2:
        raise ValueError(f"this script trains with FSDP2 (fsdp_version: 2, as glm10b_fsdp.yaml); the accelerate "
                         f"config asks for FSDP version {plugin.fsdp_version}")
    return plugin


def enable_sharding_on_cpu(accelerator: Accelerator, plugin: FullyShardedDataParallelPlugin | None) -> str | None:
    """Turn FSDP2 / DeepSpeed on for CPU processes, which accelerate 1.16 leaves as plain DDP (``MULTI_CPU``).

    ``AcceleratorState`` switches a run to ``DistributedType.FSDP`` (and stores the plugin) only when the processes
    sit on accelerator devices, and to ``DistributedType.DEEPSPEED`` only when ``cpu`` is False (which on a machine
    without one leaves no distributed backend at all). torch's FSDP2 (``fully_shard``) works on CPU tensors over gloo,
    and so does DeepSpeed (its CPU accelerator communicates over gloo). This sets what ``AcceleratorState`` sets on
    GPUs, after the gloo process group is up and before anything is prepared: the state's ``distributed_type`` (and
    the process state's copy of it) and the plugin; for DeepSpeed also the plugin's mixed precision and selection, and
    the state's own mixed precision "no" (DeepSpeed casts itself). All the sharding work stays accelerate's. Returns
    the engine it enabled ("FSDP" / "DEEPSPEED") or None.
    """
    state = accelerator.state
    if state.distributed_type != DistributedType.MULTI_CPU:
        return None
    if plugin is not None:
        state.fsdp_plugin = plugin
        state.distributed_type = DistributedType.FSDP
    elif os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        from accelerate.utils import DeepSpeedPlugin

        deepspeed_plugin = DeepSpeedPlugin()  # reads the DeepSpeed config / ACCELERATE_DEEPSPEED_* environment
        deepspeed_plugin.set_mixed_precision(state._mixed_precision)
        deepspeed_plugin.select(_from_accelerator_state=True)
        state.deepspeed_plugins = deepspeed_plugin
        state._mixed_precision = "no"
        state.distributed_type = DistributedType.DEEPSPEED
    else:
        return None
    PartialState._shared_state["distributed_type"] = state.distributed_type
    return state.distributed_type.value


def keep_tied_embedding_gathered(model) -> None:
    """GLM's output projection is its word embedding (``logits = hidden @ word_embeddings.weight.T``, no head module,
    so ``get_output_embeddings()`` is None). accelerate takes the embedding for untied and gives it an FSDP unit of its
    own, re-sharded right after the lookup at the start of the forward; the projection at the end would then meet the
    sharded DTensor. Not re-sharding that unit after forward (what accelerate does for tied embeddings) keeps the
    gathered weight for the projection; both uses' gradients add up in it before its one reduce-scatter."""
    from torch.distributed.fsdp import FSDPModule

    embedding = model.get_input_embeddings()
    if isinstance(embedding, FSDPModule):
        embedding.set_reshard_after_forward(False)


def full_state_dict(accelerator: Accelerator, model) -> dict[str, torch.Tensor]:
    """Every tensor of the model, whole, on every rank (FSDP / ZeRO-3: all-gathered from the shards)."""
    if accelerator.is_fsdp2:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=False))
    module = accelerator.unwrap_model(model)
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(module.parameters())):  # ZeRO-3: each rank holds a partition
            return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}
    return module.state_dict()


# -------------------------------------------------------------------------------------------------- model, loss
def build_model(args, tokenizer) -> GLMForConditionalGeneration:
    if args.init_from:
        return GLMForConditionalGeneration.from_pretrained(args.init_from)
    # title_generation's builder sizes the position table for source + generated title: the longest title here.
    return _titles.build_model(argparse.Namespace(**vars(args), max_new_tokens=args.max_target_length), tokenizer)


def title_logits(model, batch) -> torch.Tensor:
    return model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                 attention_mask=batch["attention_mask"]).logits  # (B, T, vocab)


def token_loss_sum(model, batch) -> torch.Tensor:
    """Cross-entropy summed (not averaged) over the labelled (title) tokens of ``batch``, in fp32."""
    return F.cross_entropy(title_logits(model, batch).float().flatten(0, 1), batch["labels"].flatten(),
                           ignore_index=-100, reduction="sum")


@torch.no_grad()
def evaluate(accelerator: Accelerator, model, loader) -> dict:
    """Token-mean held-out loss over the whole evaluation set, whatever the process count: every process scores its
    share, and the per-pair sums are gathered with ``gather_for_metrics`` (which drops the pairs repeated to even out
    the last batch)."""
    model.eval()
    loss_sum, count = 0.0, 0
    for batch in loader:
        labels = batch["labels"]  # (B, T)
        token_losses = F.cross_entropy(title_logits(model, batch).float().transpose(1, 2), labels,
                                       ignore_index=-100, reduction="none")  # (B, T); 0 where unlabelled
        sums, counts = accelerator.gather_for_metrics((token_losses.sum(1), (labels != -100).sum(1)))
        loss_sum += sums.double().sum().item()
        count += counts.sum().item()
    model.train()
    return {"eval_loss": loss_sum / max(count, 1), "eval_tokens": count}


# --------------------------------------------------------------------------------------------------------- main
def main(argv=None) -> dict:
    args = parse_args(argv)
    use_cpu = args.cpu or not torch.accelerator.is_available()
    plugin = fsdp_plugin(args)
    accelerator = Accelerator(mixed_precision=args.mixed_precision, cpu=use_cpu, fsdp_plugin=plugin,
                              step_scheduler_with_optimizer=False)  # the schedule counts optimizer steps
    shim = enable_sharding_on_cpu(accelerator, plugin)
    sharded = accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
    if accelerator.is_fsdp2 and accelerator.mixed_precision == "bf16":
        from torch.distributed.fsdp import MixedPrecisionPolicy

        # bf16 compute on the gathered parameters, fp32 master shards, fp32 gradient reduce-scatter
        accelerator.state.fsdp_plugin.mixed_precision_policy = MixedPrecisionPolicy(
            param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    if accelerator.distributed_type == DistributedType.DEEPSPEED and args.gradient_accumulation_steps != 1:
        raise ValueError("under DeepSpeed, set gradient_accumulation_steps in the DeepSpeed config, not "
                         f"--gradient_accumulation_steps {args.gradient_accumulation_steps}")
    world = accelerator.num_processes
    is_main = accelerator.is_main_process
    os.makedirs(args.output_dir, exist_ok=True)
    checkpoint_root = os.path.join(args.output_dir, _loop.CHECKPOINT_DIR)
    log = _loop.MetricsLog(os.path.join(args.output_dir, _loop.METRICS_FILE), enabled=is_main)
    say = accelerator.print

    # Data: title_generation's pairs and encoding (each process reads the same slice; it is small and deterministic).
    train_pairs, eval_pairs = _data.load_split(args.train_pairs, args.eval_pairs)
    tokenizer = GLMChineseTokenizer()

    def examples(pairs):  # {"source": body ids + [gMASK], "target": title}, what GLMSeq2SeqCollator takes
        sources = _titles.encode_sources([body for body, _ in pairs], tokenizer, args.max_source_length, False)
        return [{"source": source, "target": title} for source, (_, title) in zip(sources, pairs)]

    train_examples, eval_examples = examples(train_pairs), examples(eval_pairs)
    collator = GLMSeq2SeqCollator(tokenizer, max_source_length=args.max_source_length,
                                  max_target_length=args.max_target_length)
    sampler, train_loader, schedule = _loop.training_data(args, train_examples, collator, world)
    global_batch, steps_per_epoch, total_steps, warmup_steps = schedule
    eval_loader = DataLoader(eval_examples, batch_size=args.batch_size, collate_fn=collator)

    # Model, optimizer, schedule: the same initialisation on every process; prepare() shards it.
    set_seed(args.seed)
    model = build_model(args, tokenizer)
    config, n_params = model.config, sum(p.numel() for p in model.parameters())
    if args.activation_checkpointing and not accelerator.is_fsdp2:
        model.activation_checkpointing_enable()  # FSDP: the plugin wraps each block in accelerate's checkpoint wrapper
    optimizer = torch.optim.AdamW(_loop.optimizer_groups(model, args.weight_decay), lr=args.learning_rate)
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup_steps, total_steps)
    model, optimizer, train_loader, eval_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, eval_loader, scheduler)
    if accelerator.is_fsdp2:
        keep_tied_embedding_gathered(model)
    state = _loop.TrainState(global_batch)
    accelerator.register_for_checkpointing(state)
    say(f"{world} process(es) ({accelerator.distributed_type.value}"
        f"{f', {shim} enabled on CPU by this script' if shim else ''}, {accelerator.device}, mixed precision "
        f"{accelerator.mixed_precision}); GLM {config.hidden_size}x{config.num_hidden_layers}, "
        f"{n_params / 1e6:.2f}M parameters; {len(train_examples)} training pairs, global batch {global_batch} = "
        f"{args.batch_size} x {args.gradient_accumulation_steps} accumulation x {world} processes; {total_steps} steps")

    resumed = _loop.resume(accelerator, args, checkpoint_root, state, log)
    timing = _loop.train_loop(accelerator, args, model, optimizer, scheduler, train_loader, sampler, state, log,
                              loss_sum=token_loss_sum, steps_per_epoch=steps_per_epoch, total_steps=total_steps,
                              checkpoint_root=checkpoint_root, resumed=resumed,
                              evaluate=(lambda: evaluate(accelerator, model, eval_loader)) if eval_examples else None)
    train_seconds = timing["train_seconds"]

    summary = {"kind": "summary", "step": state.step, "processes": world,
               "distributed_type": accelerator.distributed_type.value, "enabled_on_cpu_by_script": shim,
               "sharded": sharded, "device": str(accelerator.device), "mixed_precision": accelerator.mixed_precision,
               "global_batch": global_batch, "parameters": n_params, "train_seconds": round(train_seconds, 3),
               "samples_per_s": timing["samples_per_s"]}
    if eval_examples:
        final = evaluate(accelerator, model, eval_loader)
        log.append({"kind": "eval", "step": state.step, **final})
        summary["eval_loss"] = final["eval_loss"]
        say(f"step {state.step}: held-out loss {final['eval_loss']:.4f}")
    weights = full_state_dict(accelerator, model)  # collective under FSDP: every rank takes part
    with open(os.path.join(args.output_dir, f"weights_digest_rank{accelerator.process_index}.json"), "w",
              encoding="utf-8") as f:
        json.dump(_loop.state_dict_digest(weights), f, indent=0, sort_keys=True)
    accelerator.wait_for_everyone()
    if not args.no_save_model:
        model_dir = os.path.join(args.output_dir, "model")
        if is_main:  # from a plain (meta) model of the same config: the prepared one's class is FSDP's subclass
            with torch.device("meta"):
                plain = GLMForConditionalGeneration(config)
            plain.save_pretrained(model_dir, state_dict=weights)
            tokenizer.save_pretrained(model_dir)
        summary["model_dir"] = model_dir
    log.append(summary)
    say(f"done: {state.step} steps in {train_seconds:.1f}s; metrics in {log.path}")
    accelerator.end_training()
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
