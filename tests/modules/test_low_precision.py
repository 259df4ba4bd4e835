import pytest
import torch
from torch import nn

from flagai_hf.modules.linear import Linear
from flagai_hf.modules.low_precision import (
    dequantize_linear_weights,
    low_precision_linear_weights,
    quantize_linear_weights,
)


def _model():
    torch.manual_seed(0)
    return nn.Sequential(Linear(16, 32), nn.GELU(), Linear(32, 8, bias=False))


def _dequantized_reference(model, x, mode):
    h = x
    for module in model:
        if isinstance(module, Linear):
            w = module.weight.detach()
            if mode == "bf16":
                w = w.to(torch.bfloat16).float()
            else:
                s = w.abs().amax(1).clamp(min=1e-12) / 127
                w = torch.round(w / s[:, None]).clamp(-127, 127) * s[:, None]
            h = nn.functional.linear(h, w, module.bias)
        else:
            h = module(h)
    return h


@pytest.mark.parametrize("mode", ["bf16", "int8"])
def test_numerics_undo_and_errors(mode):
    model = _model()
    x = torch.randn(3, 5, 16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        fp32 = model(x)
        ref = _dequantized_reference(model, x, mode)
        assert quantize_linear_weights(model, mode) == 2
        out = model(x)
    assert out.dtype == torch.float32 and out.shape == fp32.shape
    tol = 5e-2  # bf16 activations (both paths) and bf16 scales (int8)
    assert (out - ref).abs().max() < tol
    with pytest.raises(RuntimeError, match="dequantize_linear_weights"):
        model.state_dict()
    with pytest.raises(RuntimeError, match="no gradient"):
        model(x.requires_grad_())
    assert dequantize_linear_weights(model) == 2
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    with torch.no_grad():
        assert torch.equal(model(x.detach()), fp32)


def test_context_manager_and_bad_mode():
    model = _model()
    with low_precision_linear_weights(model, "int8") as count:
        assert count == 2
    model.state_dict()
    with pytest.raises(ValueError, match="mode"):
        quantize_linear_weights(model, "fp8")


@pytest.mark.parametrize("mode", ["bf16", "int8"])
def test_tiny_gpt2_bert_and_glm(mode):
    from flagai_hf import (
        BertForMaskedLM,
        FlagAIBertConfig,
        FlagAIGPT2Config,
        GLMConfig,
        GLMForConditionalGeneration,
        GPT2LMHeadModel,
    )
    torch.manual_seed(0)
    models = [GPT2LMHeadModel(FlagAIGPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2, n_positions=32)),
              BertForMaskedLM(FlagAIBertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                               num_attention_heads=2, intermediate_size=32)),
              GLMForConditionalGeneration(GLMConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                                    num_attention_heads=2, max_position_embeddings=32))]
    ids = torch.randint(0, 50, (2, 7))
    for model in models:
        model.eval()
        with torch.no_grad():
            fp32 = model(input_ids=ids).logits
            with low_precision_linear_weights(model, mode) as count:
                assert count > 0
                low = model(input_ids=ids).logits
                if isinstance(model, GPT2LMHeadModel):  # the tied lm_head is quantized, the embedding table is not
                    assert model.lm_head._lp_mode == mode
                    assert model.lm_head.weight is model.get_input_embeddings().weight
                    assert model.lm_head.weight.dtype == torch.float32
            again = model(input_ids=ids).logits
        assert (low - fp32).abs().max() < 0.1
        assert torch.equal(again, fp32)
