"""examples/ner/run_ner.py (HF Trainer) under `torchrun --nproc_per_node 2` on the CPU: two gloo processes train with
DDP, only rank 0 prints, saves and writes metrics.json."""

import json
import os
import subprocess
import sys

from accelerate_runs import REPO, run_env

RUN_NER = os.path.join(REPO, "examples", "ner", "run_ner.py")


def test_run_ner_under_torchrun(tmp_path):
    out = tmp_path / "ner"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", RUN_NER,
               "--train_sentences", "32", "--eval_sentences", "16", "--max_steps", "2", "--batch_size", "4",
               "--hidden_size", "32", "--num_layers", "1", "--num_heads", "2", "--logging_steps", "1",
               "--output_dir", str(out)]
    done = subprocess.run(command, env=run_env(), capture_output=True, text=True, timeout=240, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["processes"] == 2 and metrics["global_step"] == 2
    assert len(metrics["loss_history"]) == 2
    assert (out / "model" / "model.safetensors").is_file()
    output = done.stdout + done.stderr
    assert output.count("wrote ") == 1 and output.count("model: BertForSequenceLabeling") == 1  # rank 0 only
    assert "find_unused_parameters=True" not in output
