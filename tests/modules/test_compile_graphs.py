"""torch.compile: every family's forward traces as one graph (no graph break), a compiled training step matches
eager, and value checks stay errors (eager: ValueError as before; compiled: an in-graph assertion, same message)."""

import pytest
import torch
import torch._dynamo as dynamo
from transformers import PreTrainedModel, StaticCache

import flagai_hf as F
from flagai_hf.auto_registration import AUTO_MODELS
from flagai_hf.modules.checks import check_values, known_all_true

B, T = 2, 8
# Dropout is off in every config: eager and compiled training steps must compute the same function.
BERT = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            max_position_embeddings=64, num_labels=5, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
GLM = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=40,
           pad_token_id=0, eos_token_id=1, sop_token_id=2, mask_token_ids=[3, 4, 5], embedding_dropout_prob=0.0,
           attention_dropout_prob=0.0, output_dropout_prob=0.0, classifier_dropout=0.0)
GPT2 = dict(vocab_size=99, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=98, eos_token_id=98,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
T5 = dict(vocab_size=64, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
          relative_attention_max_distance=20, dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0,
          eos_token_id=1)


def batch(**extra):
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(6, 60, (B, T), generator=generator)
    padding = torch.ones(B, T, dtype=torch.long)
    padding[1, -3:] = 0  # a padded row: masks must stay in the graph, not be dropped on the host
    inputs = {"input_ids": ids, "attention_mask": padding}
    for name, kind in extra.items():
        inputs[name] = {"tokens": torch.randint(0, 5, (B, T), generator=generator), "ids": ids,
                        "classes": torch.tensor([1, 2]),
                        "segments": torch.cat([torch.zeros(B, 4, dtype=torch.long),
                                               torch.ones(B, 4, dtype=torch.long)], 1)}[kind]
    return inputs


def multiple_choice_batch():
    """The Hub / FlagAI form: one row (B, T) with a blank, sep index, and per choice its target ids and the
    positions predicting them (B, C, L), -100-padded."""
    generator = torch.Generator().manual_seed(0)
    positions = torch.stack([torch.arange(T), torch.zeros(T, dtype=torch.long)])  # (2, T): positions, block positions
    return {"input_ids": torch.randint(6, 60, (B, T), generator=generator),
            "position_ids": positions[None].expand(B, 2, T).clone(), "attention_mask": torch.tensor([4, 4]),
            "choice_ids": torch.tensor([[[10, 11], [12, -100]]] * B),
            "choice_indices": torch.tensor([[[4, 5], [6, -100]]] * B), "labels": torch.tensor([0, 1])}


CASES = {  # name -> (model factory, inputs)
    "BertModel": (lambda: F.BertModel(F.FlagAIBertConfig(**BERT)), batch()),
    "BertForSequenceLabeling": (lambda: F.BertForSequenceLabeling(F.FlagAIBertConfig(**BERT)), batch(labels="tokens")),
    "BertForSequenceLabelingCRF": (lambda: F.BertForSequenceLabelingCRF(F.FlagAIBertConfig(**BERT)),
                                   batch(labels="tokens")),
    "BertForSequenceLabelingGP": (lambda: F.BertForSequenceLabelingGP(F.FlagAIBertConfig(**BERT)), batch()),
    "BertForSequenceClassification": (lambda: F.BertForSequenceClassification(F.FlagAIBertConfig(**BERT)),
                                      batch(labels="classes")),
    "BertForMaskedLM": (lambda: F.BertForMaskedLM(F.FlagAIBertConfig(**BERT)), batch(labels="ids")),
    "BertForSeq2seq": (lambda: F.BertForSeq2seq(F.FlagAIBertConfig(**BERT)), batch(token_type_ids="segments")),
    "GLMModel": (lambda: F.GLMModel(F.GLMConfig(**GLM)), batch()),
    "GLMForConditionalGeneration": (lambda: F.GLMForConditionalGeneration(F.GLMConfig(**GLM)), batch(labels="ids")),
    "GLMForSequenceClassification": (lambda: F.GLMForSequenceClassification(F.GLMConfig(**GLM, num_labels=3)),
                                     batch(labels="classes")),
    "GPT2Model": (lambda: F.GPT2Model(F.FlagAIGPT2Config(**GPT2)), batch(labels="ids")),
    "T5Model": (lambda: F.T5Model(F.FlagAIT5Config(**T5)), batch(labels="ids")),
    "T5EncoderModel": (lambda: F.T5EncoderModel(F.FlagAIT5Config(**T5)), batch()),
    "BertForClsClassifier": (lambda: F.BertForClsClassifier(F.FlagAIBertConfig(**BERT)), batch(labels="classes")),
    "GPT2LMHeadModel": (lambda: F.GPT2LMHeadModel(F.FlagAIGPT2Config(**GPT2)), batch(labels="ids")),
    "T5ForConditionalGeneration": (lambda: F.T5ForConditionalGeneration(F.FlagAIT5Config(**T5)), batch(labels="ids")),
    "GLMForMultipleChoice": (lambda: F.GLMForMultipleChoice(F.GLMConfig(**GLM)), multiple_choice_batch()),
    "GLMForSeq2Seq": (lambda: F.GLMForSeq2Seq(F.GLMConfig(**GLM)), batch(labels="ids")),
}


def exported_model_names() -> list[str]:
    """Every model class name ``flagai_hf`` exports (``__all__``, aliases included): each needs a case above, so a new
    head is traced as soon as it is exported."""
    return sorted(name for name in F.__all__
                  if isinstance(getattr(F, name), type) and issubclass(getattr(F, name), PreTrainedModel))


def test_cases_are_the_exported_model_classes():
    exported = exported_model_names()
    assert not set(CASES) - set(exported), "cases for names flagai_hf does not export"
    registered = {model for _, _, model in AUTO_MODELS}  # what the Auto classes resolve to
    assert registered <= {getattr(F, name) for name in exported}, "an Auto-registered model class is not exported"


@pytest.fixture(autouse=True)
def fresh_dynamo():
    dynamo.reset()
    yield
    dynamo.reset()


@pytest.mark.parametrize("name", exported_model_names())
def test_forward_is_one_graph(name):
    assert name in CASES, f"flagai_hf exports {name}: add a (factory, inputs) case for it to CASES"
    make, inputs = CASES[name]
    torch.manual_seed(0)
    model = make().eval()
    assert type(model) is getattr(F, name)
    explanation = dynamo.explain(model)(**inputs)
    reasons = [f"{reason.reason} at {reason.user_stack[-1] if reason.user_stack else '?'}"
               for reason in explanation.break_reasons]
    assert explanation.graph_break_count == 0, reasons
    assert explanation.graph_count == 1


def training_objective(outputs) -> torch.Tensor:
    """The head's loss, or for a base model (no labels) the sum of its first output."""
    if outputs.get("loss") is not None:
        return outputs["loss"]
    return next(value for value in outputs.values() if isinstance(value, torch.Tensor)).sum()


@pytest.mark.parametrize("name", exported_model_names())
def test_compiled_training_step_matches_eager(name):
    make, inputs = CASES[name]
    torch.manual_seed(0)
    model = make().train()
    eager_loss = training_objective(model(**inputs))
    eager_loss.backward()
    eager_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)

    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    loss = training_objective(compiled(**inputs))
    loss.backward()
    # Both run oneDNN's linear (the compiled graph through flagai_hf::onednn_linear); the backward products are
    # formed in another order, so gradients agree up to fp32 summation order.
    torch.testing.assert_close(loss, eager_loss, rtol=1e-5, atol=1e-5)
    assert eager_grads
    parameters = dict(model.named_parameters())
    for name_, grad in eager_grads.items():
        torch.testing.assert_close(parameters[name_].grad, grad, rtol=1e-4, atol=1e-5, msg=name_)


def test_out_of_range_ids_still_raise():
    model = F.GPT2Model(F.FlagAIGPT2Config(**GPT2)).eval()
    bad = torch.tensor([[1, 2, 99]])
    with pytest.raises(ValueError, match=r"input_ids contains 99, outside \[0, 99\)"):
        model(input_ids=bad)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    compiled(input_ids=torch.tensor([[1, 2, 3]]))
    with pytest.raises(RuntimeError, match=r"input_ids contains an id outside \[0, 99\)"):
        compiled(input_ids=bad)


def test_check_helpers_eager_and_compiled():
    with pytest.raises(ValueError, match="must be positive"):
        check_values((torch.tensor([1, -1]) > 0).all(), "must be positive")
    check_values((torch.tensor([1, 2]) > 0).all(), "must be positive")
    assert known_all_true(torch.ones(3, dtype=torch.bool))
    assert not known_all_true(torch.tensor([True, False]))

    @torch.compile(fullgraph=True, backend="aot_eager")
    def positive_sum(x):
        check_values((x > 0).all(), "must be positive")
        return x.sum() if known_all_true(x > 0) else x.sum() * 1  # the shortcut is never taken while compiling

    assert positive_sum(torch.tensor([1.0, 2.0])).item() == 3.0
    with pytest.raises(RuntimeError, match="must be positive"):
        positive_sum(torch.tensor([1.0, -2.0]))


def glm_blank_filling_inputs(contexts: list[list[int]], max_gen_length: int) -> dict:
    """GLM spec §8's generation inputs, built by hand: right-padded contexts + [sop], positions (B, 2, s + G) (the mask
    position, then block positions 1..G) and the 4-D mask (B, 1, s + G, s + G): all of the non-pad context, causal
    over the span."""
    length = max(len(context) for context in contexts)
    input_ids, positions, masks = [], [], []
    for context in contexts:
        mask_position = next(i for i, token in enumerate(context) if token in GLM["mask_token_ids"])
        input_ids.append(context + [GLM["pad_token_id"]] * (length - len(context)) + [GLM["sop_token_id"]])
        positions.append([list(range(length)) + [mask_position] * max_gen_length,
                          [0] * length + list(range(1, max_gen_length + 1))])
        padding = torch.tensor([1] * len(context) + [0] * (length - len(context)))
        span = torch.cat([torch.zeros(length, max_gen_length), torch.ones(max_gen_length, max_gen_length).tril()])
        masks.append(torch.cat([padding.expand(length + max_gen_length, length), span], 1)[None])
    return {"input_ids": torch.tensor(input_ids), "position_ids": torch.tensor(positions),
            "generation_attention_mask": torch.stack(masks).long()}


DECODES = {  # name -> (model factory, generate() inputs)
    "GPT2Model": (CASES["GPT2Model"][0], {"input_ids": CASES["GPT2Model"][1]["input_ids"][:1, :4]}),
    "T5Model": (CASES["T5Model"][0], {"input_ids": CASES["T5Model"][1]["input_ids"][:1, :4]}),
    "GLM blank filling (spec section 8)": (CASES["GLMForConditionalGeneration"][0],
                                    glm_blank_filling_inputs([[7, 8, 3, 9, 10], [11, 12, 13, 14, 5, 15, 16]], 6)),
    "GLM plain source": (CASES["GLMForConditionalGeneration"][0],
                         {"input_ids": torch.tensor([[6, 7, 8, 9, 10, 11], [6, 12, 13, 14, 0, 0]]),
                          "attention_mask": torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])}),
}


@pytest.mark.parametrize("name", sorted(DECODES))
def test_compiled_forward_decodes_with_a_static_cache(name):
    """generate(cache_implementation="static") gives the DynamicCache run's tokens and scores, eagerly and through a
    fullgraph-compiled forward (prefill and every decode step trace without a break, else fullgraph raises)."""
    make, inputs = DECODES[name]
    torch.manual_seed(0)
    model = make().eval()
    options = dict(max_new_tokens=6, do_sample=False, eos_token_id=None, return_dict_in_generate=True,
                   output_scores=True)
    dynamic = model.generate(**inputs, **options)
    static = model.generate(**inputs, cache_implementation="static", **options)
    model.forward = torch.compile(model.forward, fullgraph=True, backend="aot_eager")
    compiled = model.generate(**inputs, cache_implementation="static", **options)
    cache = compiled.past_key_values
    assert isinstance(getattr(cache, "self_attention_cache", cache), StaticCache)
    for run in (static, compiled):
        assert torch.equal(run.sequences, dynamic.sequences)
        assert len(run.scores) == options["max_new_tokens"]
        for step, step_dynamic in zip(run.scores, dynamic.scores, strict=True):
            torch.testing.assert_close(step, step_dynamic, rtol=1e-5, atol=1e-5)
