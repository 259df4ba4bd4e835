"""flagai-hf convert (flagai_hf/conversion/convert.py) round trips: FlagAI -> native -> FlagAI and native -> FlagAI
-> native give identical tensors.

The FlagAI checkpoints are written here from FlagAI's tensor names as its classes save them (flagai-reference.md
§3.1, §3.2), independently of the key maps under test.
"""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import flagai_hf
from flagai_hf.conversion import convert
from flagai_hf.loading import FAMILIES
from flagai_hf.models.bert import BertPreTrainedModel

H, LAYERS, HEADS, VOCAB, POSITIONS, CLASSES, INNER = 32, 2, 4, 120, 24, 5, 8

BERT_CONFIG = {"vocab_size": VOCAB, "hidden_size": H, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
               "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
               "max_position_embeddings": POSITIONS, "type_vocab_size": 2, "initializer_range": 0.02,
               "layernorm_epsilon": 1e-12, "class_num": CLASSES, "inner_dim": INNER}
GLM_CONFIG = {"num_layers": LAYERS, "vocab_size": VOCAB, "hidden_size": H, "num_attention_heads": HEADS,
              "embedding_dropout_prob": 0.1, "attention_dropout_prob": 0.1, "output_dropout_prob": 0.1,
              "max_sequence_length": POSITIONS, "max_memory_length": 0, "checkpoint_activations": False,
              "checkpoint_num_layers": 1, "parallel_output": True, "relative_encoding": False,
              "block_position_encoding": True, "output_predict": True, "spell_length": None, "spell_func": "lstm",
              "attention_scale": 1.0, "class_num": CLASSES}


def bert_flagai_shapes(prefix: str, pooler: bool) -> dict[str, tuple]:
    """FlagAI's BertModel names (under ``prefix``): fused query_key_value, LayerNorm, intermediate / output."""
    shapes = {"embeddings.word_embeddings.weight": (VOCAB, H), "embeddings.position_embeddings.weight": (POSITIONS, H),
              "embeddings.token_type_embeddings.weight": (2, H), "embeddings.LayerNorm.weight": (H,),
              "embeddings.LayerNorm.bias": (H,)}
    for i in range(LAYERS):
        layer = f"encoder.layer.{i}."
        shapes.update({
            layer + "attention.self.query_key_value.weight": (3 * H, H), layer + "attention.self.query_key_value.bias": (3 * H,),
            layer + "attention.output.dense.weight": (H, H), layer + "attention.output.dense.bias": (H,),
            layer + "attention.output.LayerNorm.weight": (H,), layer + "attention.output.LayerNorm.bias": (H,),
            layer + "intermediate.dense.weight": (4 * H, H), layer + "intermediate.dense.bias": (4 * H,),
            layer + "output.dense.weight": (H, 4 * H), layer + "output.dense.bias": (H,),
            layer + "output.LayerNorm.weight": (H,), layer + "output.LayerNorm.bias": (H,),
        })
    if pooler:
        shapes.update({"pooler.dense.weight": (H, H), "pooler.dense.bias": (H,)})
    return {prefix + name: shape for name, shape in shapes.items()}


LM_HEAD = {"cls.predictions.transform.dense.weight": (H, H), "cls.predictions.transform.dense.bias": (H,),
           "cls.predictions.transform.LayerNorm.weight": (H,), "cls.predictions.transform.LayerNorm.bias": (H,),
           "cls.predictions.decoder.weight": (VOCAB, H), "cls.predictions.decoder.bias": (VOCAB,)}

# our class -> FlagAI's tensor names and shapes for the FlagAI class it corresponds to
BERT_CASES = {
    "BertModel": bert_flagai_shapes("", pooler=True),
    "BertForMaskedLM": {**bert_flagai_shapes("model.", pooler=False), **LM_HEAD},
    "BertForSeq2seq": {**bert_flagai_shapes("model.", pooler=False), **LM_HEAD},
    "BertForSequenceClassification": {**bert_flagai_shapes("model.", pooler=True), "out_layer.weight": (CLASSES, H),
                                      "out_layer.bias": (CLASSES,)},
    "BertForSequenceLabeling": {**bert_flagai_shapes("model.", pooler=False), "final_dense.weight": (CLASSES, H),
                                "final_dense.bias": (CLASSES,)},
    "BertForSequenceLabelingCRF": {**bert_flagai_shapes("model.", pooler=False), "final_dense.weight": (CLASSES, H),
                                   "final_dense.bias": (CLASSES,), "crf_layer.trans": (CLASSES, CLASSES)},
    "BertForSequenceLabelingGP": {**bert_flagai_shapes("model.", pooler=False),
                                  "gp.dense.weight": (CLASSES * INNER * 2, H), "gp.dense.bias": (CLASSES * INNER * 2,)},
}


def glm_flagai_shapes(prefix: str) -> dict[str, tuple]:
    rows = POSITIONS + 1  # block position encoding: max_sequence_length + 1 rows
    shapes = {"word_embeddings.weight": (VOCAB, H), "transformer.position_embeddings.weight": (rows, H),
              "transformer.block_position_embeddings.weight": (rows, H),
              "transformer.final_layernorm.weight": (H,), "transformer.final_layernorm.bias": (H,)}
    for i in range(LAYERS):
        layer = f"transformer.layers.{i}."
        shapes.update({
            layer + "input_layernorm.weight": (H,), layer + "input_layernorm.bias": (H,),
            layer + "attention.query_key_value.weight": (3 * H, H), layer + "attention.query_key_value.bias": (3 * H,),
            layer + "attention.dense.weight": (H, H), layer + "attention.dense.bias": (H,),
            layer + "post_attention_layernorm.weight": (H,), layer + "post_attention_layernorm.bias": (H,),
            layer + "mlp.dense_h_to_4h.weight": (4 * H, H), layer + "mlp.dense_h_to_4h.bias": (4 * H,),
            layer + "mlp.dense_4h_to_h.weight": (H, 4 * H), layer + "mlp.dense_4h_to_h.bias": (H,),
        })
    return {prefix + name: shape for name, shape in shapes.items()}


GLM_CASES = {
    "GLMModel": glm_flagai_shapes(""),
    "GLMForConditionalGeneration": glm_flagai_shapes(""),  # FlagAI's GLMForSeq2Seq delegates state_dict: no prefix
    "GLMForMultipleChoice": glm_flagai_shapes(""),  # FlagAI's GLMForMultiTokenCloze
    "GLMForSequenceClassification": {**glm_flagai_shapes("model."), "pool_layer.weight": (H, H),
                                     "pool_layer.bias": (H,), "multichoice_head.weight": (CLASSES, H),
                                     "multichoice_head.bias": (CLASSES,)},
}


GPT2_CONFIG = {"vocab_size": VOCAB, "n_embd": H, "n_layer": LAYERS, "n_head": HEADS, "n_positions": POSITIONS,
               "n_inner": None, "activation_function": "gelu_new", "checkpoint_activations": False}


def gpt2_flagai_shapes() -> dict[str, tuple]:
    """FlagAI's GPT2Model: transformers' names in nn.Linear layout [out, in]; lm_head exists (equal to wte here)."""
    shapes = {"transformer.wte.weight": (VOCAB, H), "transformer.wpe.weight": (POSITIONS, H),
              "transformer.ln_f.weight": (H,), "transformer.ln_f.bias": (H,), "lm_head.weight": (VOCAB, H)}
    for i in range(LAYERS):
        layer = f"transformer.h.{i}."
        shapes.update({
            layer + "ln_1.weight": (H,), layer + "ln_1.bias": (H,),
            layer + "ln_2.weight": (H,), layer + "ln_2.bias": (H,),
            layer + "attn.c_attn.weight": (3 * H, H), layer + "attn.c_attn.bias": (3 * H,),
            layer + "attn.c_proj.weight": (H, H), layer + "attn.c_proj.bias": (H,),
            layer + "mlp.c_fc.weight": (4 * H, H), layer + "mlp.c_fc.bias": (4 * H,),
            layer + "mlp.c_proj.weight": (H, 4 * H), layer + "mlp.c_proj.bias": (H,),
        })
    return shapes


T5_FF, T5_KV = 48, 8
T5_CONFIG = {"vocab_size": VOCAB, "d_model": H, "d_kv": T5_KV, "d_ff": T5_FF, "num_layers": LAYERS,
             "num_decoder_layers": LAYERS, "num_heads": HEADS, "relative_attention_num_buckets": 8,
             "dropout_rate": 0.1, "layer_norm_epsilon": 1e-6, "feed_forward_proj": "gated-gelu",
             "initializer_factor": 1.0, "decoder_start_token_id": 0, "pad_token_id": 0, "use_cache": True,
             "checkpoint_activations": False}


def t5_flagai_shapes(decoder: bool = True) -> dict[str, tuple]:
    """FlagAI's T5 (T5-base-ch style: gated-gelu, untied lm_head): transformers' T5 names."""
    inner = HEADS * T5_KV
    shapes = {"shared.weight": (VOCAB, H), "encoder.embed_tokens.weight": (VOCAB, H)}
    stacks = ("encoder", "decoder") if decoder else ("encoder",)
    for stack in stacks:
        shapes[f"{stack}.final_layer_norm.weight"] = (H,)
        shapes[f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"] = (8, HEADS)
        for i in range(LAYERS):
            layer = f"{stack}.block.{i}.layer."
            shapes.update({layer + f"0.SelfAttention.{x}.weight": (inner, H) for x in "qkv"})
            shapes.update({layer + "0.SelfAttention.o.weight": (H, inner), layer + "0.layer_norm.weight": (H,)})
            ff = layer + ("2" if stack == "decoder" else "1")
            shapes.update({ff + ".DenseReluDense.wi_0.weight": (T5_FF, H),
                           ff + ".DenseReluDense.wi_1.weight": (T5_FF, H),
                           ff + ".DenseReluDense.wo.weight": (H, T5_FF), ff + ".layer_norm.weight": (H,)})
            if stack == "decoder":
                shapes.update({layer + f"1.EncDecAttention.{x}.weight": (inner, H) for x in "qkv"})
                shapes.update({layer + "1.EncDecAttention.o.weight": (H, inner), layer + "1.layer_norm.weight": (H,)})
    if decoder:
        shapes.update({"decoder.embed_tokens.weight": (VOCAB, H), "lm_head.weight": (VOCAB, H)})
    return shapes


# tensors a FlagAI checkpoint holds as copies of another (class name -> {copy: original})
TIES = {
    "BertForMaskedLM": {"cls.predictions.decoder.weight": "model.embeddings.word_embeddings.weight"},  # UniLM: untied
    "GPT2Model": {"lm_head.weight": "transformer.wte.weight"},
    "T5Model": {"encoder.embed_tokens.weight": "shared.weight", "decoder.embed_tokens.weight": "shared.weight"},
    "T5EncoderModel": {"encoder.embed_tokens.weight": "shared.weight"},
}


def write_flagai_folder(folder: Path, config: dict, shapes: dict[str, tuple], ties: dict | None = None):
    generator = torch.Generator().manual_seed(0)
    state = {name: torch.randn(shape, generator=generator) for name, shape in shapes.items()}
    for copy, original in (ties or {}).items():  # e.g. an output embedding saved equal to the input embedding
        state[copy] = state[original].clone()
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    torch.save({"module": state}, folder / "pytorch_model.bin")  # FlagAI's Trainer format
    return state


def assert_same_tensors(got: dict, expected: dict):
    assert sorted(got) == sorted(expected)
    for name, tensor in expected.items():
        assert torch.equal(got[name], tensor), name


CASES = [(name, BERT_CONFIG, shapes) for name, shapes in BERT_CASES.items()] + \
        [(name, GLM_CONFIG, shapes) for name, shapes in GLM_CASES.items()] + \
        [("GPT2Model", GPT2_CONFIG, gpt2_flagai_shapes()), ("T5Model", T5_CONFIG, t5_flagai_shapes()),
         ("T5EncoderModel", T5_CONFIG, t5_flagai_shapes(decoder=False))]
CONFIGS = {name: config for name, config, _ in CASES}


@pytest.mark.parametrize("class_name, config, shapes", CASES, ids=[case[0] for case in CASES])
def test_flagai_to_native_to_flagai_is_identical(tmp_path, class_name, config, shapes):
    original = write_flagai_folder(tmp_path / "flagai", config, shapes, TIES.get(class_name))
    convert.to_native(tmp_path / "flagai", tmp_path / "native", class_name)
    assert json.loads((tmp_path / "native" / "config.json").read_text())["architectures"] == [class_name]
    convert.to_flagai(tmp_path / "native", tmp_path / "back", None)  # the class comes from the native config

    assert_same_tensors(torch.load(tmp_path / "back" / "pytorch_model.bin", weights_only=True), original)
    written = json.loads((tmp_path / "back" / "config.json").read_text())
    assert "model_type" not in written  # a FlagAI folder: FlagAI keys, no transformers model_type
    for key, value in config.items():
        assert written[key] == value, key


@pytest.mark.parametrize("class_name", [name for name, _, _ in CASES])
def test_native_to_flagai_to_native_is_identical(tmp_path, class_name):
    cls = getattr(flagai_hf, class_name)
    config = cls.config_class.from_flagai_dict(CONFIGS[class_name])
    if class_name.startswith("T5"):
        config.tie_word_embeddings = False  # T5-base-ch: an untied LM head
    torch.manual_seed(0)
    cls(config).save_pretrained(tmp_path / "native")
    convert.to_flagai(tmp_path / "native", tmp_path / "flagai", class_name)
    convert.to_native(tmp_path / "flagai", tmp_path / "again", class_name)

    assert_same_tensors(load_file(tmp_path / "again" / "model.safetensors"),
                        load_file(tmp_path / "native" / "model.safetensors"))
    before = json.loads((tmp_path / "native" / "config.json").read_text())
    after = json.loads((tmp_path / "again" / "config.json").read_text())
    assert {k: v for k, v in after.items() if k != "transformers_version"} == \
        {k: v for k, v in before.items() if k != "transformers_version"}


def test_flagai_labeling_checkpoint_with_unused_pooler_converts(tmp_path):
    """FlagAI's BertModel always has a pooler; our labeling class has none, so it is left out (reported, not kept)."""
    shapes = {**bert_flagai_shapes("model.", pooler=True), "final_dense.weight": (CLASSES, H),
              "final_dense.bias": (CLASSES,)}
    original = write_flagai_folder(tmp_path / "flagai", BERT_CONFIG, shapes)
    convert.to_native(tmp_path / "flagai", tmp_path / "native", "BertForSequenceLabeling")
    convert.to_flagai(tmp_path / "native", tmp_path / "back", None)
    back = torch.load(tmp_path / "back" / "pytorch_model.bin", weights_only=True)
    assert_same_tensors(back, {k: v for k, v in original.items() if not k.startswith("model.pooler.")})


def test_flagai_tokenizer_files_are_copied(tmp_path):
    write_flagai_folder(tmp_path / "flagai", BERT_CONFIG, BERT_CASES["BertModel"])
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *[chr(0x4E00 + i) for i in range(VOCAB - 5)]]
    (tmp_path / "flagai" / "vocab.txt").write_text("\n".join(vocabulary) + "\n", encoding="utf-8")
    convert.to_native(tmp_path / "flagai", tmp_path / "native", "BertModel")
    assert (tmp_path / "native" / "tokenizer.json").is_file()
    convert.to_flagai(tmp_path / "native", tmp_path / "back", None)
    assert (tmp_path / "back" / "vocab.txt").read_text(encoding="utf-8").split() == vocabulary


def test_family_without_flagai_layout_is_refused(tmp_path, monkeypatch):
    torch.manual_seed(0)
    flagai_hf.BertModel(flagai_hf.FlagAIBertConfig.from_flagai_dict(BERT_CONFIG)).save_pretrained(tmp_path / "native")
    monkeypatch.setattr(FAMILIES["flagai_bert"], "to_flagai", None)
    with pytest.raises(SystemExit, match="No FlagAI layout is registered for the flagai_bert family.*flagai_glm"):
        convert.to_flagai(tmp_path / "native", tmp_path / "flagai", None)


def test_class_without_flagai_counterpart_and_unknown_tensors_are_refused_by_name():
    layout = FAMILIES["flagai_bert"].to_flagai
    config = flagai_hf.FlagAIBertConfig.from_flagai_dict(BERT_CONFIG)

    class BertWithExtra(flagai_hf.BertForSequenceLabeling):
        def __init__(self, config):
            super().__init__(config)
            self.extra = torch.nn.Linear(2, 2)

    with pytest.raises(ValueError, match=r"unknown names: extra\.bias, extra\.weight"):
        layout(BertWithExtra(config))

    class Unlisted(BertPreTrainedModel):
        pass

    with pytest.raises(ValueError, match="Unlisted has no FlagAI counterpart.*BertForSequenceLabelingGP"):
        layout.flagai_class(Unlisted)


def test_t5_flagai_cannot_hold_is_refused():
    layout = FAMILIES["flagai_t5"].to_flagai
    with pytest.raises(ValueError, match="never scales the decoder output"):
        layout(flagai_hf.T5Model(flagai_hf.FlagAIT5Config(**T5_CONFIG, tie_word_embeddings=True)))
    with pytest.raises(ValueError, match="relative_attention_max_distance=128"):
        layout(flagai_hf.T5Model(flagai_hf.FlagAIT5Config.from_flagai_dict(
            T5_CONFIG, tie_word_embeddings=False, relative_attention_max_distance=64)))


def test_bert_intermediate_size_flagai_cannot_hold_is_refused():
    config = flagai_hf.FlagAIBertConfig.from_flagai_dict({**BERT_CONFIG, "intermediate_size": 3 * H})
    with pytest.raises(ValueError, match="intermediate_size = 4 \\* hidden_size"):
        FAMILIES["flagai_bert"].to_flagai.config(config)
