"""Importing and using flagai_hf changes no process-wide torch setting (issue 14): the fp32 matmul precision, oneDNN
switches, default dtype, threads, grad mode, determinism, TF32 flags. Checked in a fresh interpreter, so import-time
effects count, across a forward, a training step, generation, bf16 packing and the low-precision path."""

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent('''
    import json, torch

    def flags():
        return {
            "mkldnn.matmul.fp32_precision": torch.backends.mkldnn.matmul.fp32_precision,
            "mkldnn.enabled": torch.backends.mkldnn.enabled,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "default_dtype": str(torch.get_default_dtype()),
            "threads": torch.get_num_threads(),
            "grad_enabled": torch.is_grad_enabled(),
            "deterministic": torch.are_deterministic_algorithms_enabled(),
            "cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
            "cudnn.benchmark": torch.backends.cudnn.benchmark,
            "autocast_cpu": torch.is_autocast_enabled("cpu"),
        }

    before = flags()
    import flagai_hf as F
    from flagai_hf.modules.linear import packed_linear_weights
    from flagai_hf.modules.low_precision import low_precision_linear_weights
    after_import = flags()

    torch.manual_seed(0)
    model = F.GPT2LMHeadModel(F.FlagAIGPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2, n_positions=32))
    ids = torch.randint(0, 50, (2, 6))
    model(input_ids=ids, labels=ids)["loss"].backward()
    model.eval()
    model.generate(ids[:1, :3], max_new_tokens=3, do_sample=False)
    with low_precision_linear_weights(model, "int8"), torch.no_grad():
        model(input_ids=ids)
    bert = F.BertForSequenceLabeling(F.FlagAIBertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                                        num_attention_heads=2, intermediate_size=32, num_labels=3))
    bert(input_ids=ids, labels=ids % 3)["loss"].backward()
    with packed_linear_weights(bert.to(torch.bfloat16).eval()), torch.no_grad():
        bert(input_ids=ids)
    print(json.dumps({"before": before, "after_import": after_import, "after_use": flags()}))
''')


def test_import_and_use_change_no_process_wide_torch_setting():
    import json

    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    states = json.loads(result.stdout.strip().splitlines()[-1])
    assert states["after_import"] == states["before"]
    assert states["after_use"] == states["before"]
