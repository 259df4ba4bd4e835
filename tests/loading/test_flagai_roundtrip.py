"""conversion/convert.py round trips: FlagAI -> native -> FlagAI and native -> FlagAI -> native give identical tensors.

The FlagAI checkpoints are written here from FlagAI's tensor names as its classes save them (flagai-reference.md
§3.1, §3.2), independently of the key maps under test.
"""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import flagai_hf
from flagai_hf.loading import FAMILIES
from flagai_hf.models.bert import BertPreTrainedModel

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("conversion_convert", REPO / "conversion" / "convert.py")
convert = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(convert)

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


def write_flagai_folder(folder: Path, config: dict, shapes: dict[str, tuple], tie: tuple[str, str] | None = None):
    generator = torch.Generator().manual_seed(0)
    state = {name: torch.randn(shape, generator=generator) for name, shape in shapes.items()}
    if tie:  # an output embedding saved equal to the input embedding
        state[tie[0]] = state[tie[1]].clone()
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    torch.save({"module": state}, folder / "pytorch_model.bin")  # FlagAI's Trainer format
    return state


def assert_same_tensors(got: dict, expected: dict):
    assert sorted(got) == sorted(expected)
    for name, tensor in expected.items():
        assert torch.equal(got[name], tensor), name


CASES = [(name, BERT_CONFIG, shapes) for name, shapes in BERT_CASES.items()] + \
        [(name, GLM_CONFIG, shapes) for name, shapes in GLM_CASES.items()]


@pytest.mark.parametrize("class_name, config, shapes", CASES, ids=[case[0] for case in CASES])
def test_flagai_to_native_to_flagai_is_identical(tmp_path, class_name, config, shapes):
    tie = ("cls.predictions.decoder.weight", "model.embeddings.word_embeddings.weight") \
        if class_name == "BertForMaskedLM" else None  # MLM: tied; UniLM (BertForSeq2seq): untied
    original = write_flagai_folder(tmp_path / "flagai", config, shapes, tie)
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
    if class_name.startswith("GLM"):
        config = cls.config_class.from_flagai_dict(GLM_CONFIG)
    else:
        config = cls.config_class.from_flagai_dict(BERT_CONFIG)
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


def test_bert_intermediate_size_flagai_cannot_hold_is_refused():
    config = flagai_hf.FlagAIBertConfig.from_flagai_dict({**BERT_CONFIG, "intermediate_size": 3 * H})
    with pytest.raises(ValueError, match="intermediate_size = 4 \\* hidden_size"):
        FAMILIES["flagai_bert"].to_flagai.config(config)
