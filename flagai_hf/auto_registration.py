"""Registration of every family with transformers' Auto classes (run once, on ``import flagai_hf``)."""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForMultipleChoice,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
)

from .models import bert, glm, gpt2, t5

# (Auto class, config class, model class) for every pairing that exists.
AUTO_MODELS = [
    (AutoModel, bert.FlagAIBertConfig, bert.BertModel),
    (AutoModelForMaskedLM, bert.FlagAIBertConfig, bert.BertForMaskedLM),
    (AutoModelForSequenceClassification, bert.FlagAIBertConfig, bert.BertForSequenceClassification),
    (AutoModelForTokenClassification, bert.FlagAIBertConfig, bert.BertForSequenceLabeling),
    (AutoModel, glm.GLMConfig, glm.GLMModel),
    (AutoModelForSeq2SeqLM, glm.GLMConfig, glm.GLMForConditionalGeneration),
    (AutoModelForMultipleChoice, glm.GLMConfig, glm.GLMForMultipleChoice),
    (AutoModelForSequenceClassification, glm.GLMConfig, glm.GLMForSequenceClassification),
    (AutoModel, gpt2.FlagAIGPT2Config, gpt2.GPT2Model),
    (AutoModelForCausalLM, gpt2.FlagAIGPT2Config, gpt2.GPT2LMHeadModel),
    # FlagAI's T5Model is the encoder-decoder LM (T5ForConditionalGeneration is the same class)
    (AutoModel, t5.FlagAIT5Config, t5.T5Model),
    (AutoModelForSeq2SeqLM, t5.FlagAIT5Config, t5.T5ForConditionalGeneration),
]
# (config class, default tokenizer, other tokenizers of the family that AutoTokenizer must find by their class name)
AUTO_TOKENIZERS = [
    (bert.FlagAIBertConfig, bert.FlagAIBertTokenizer, None),
    (glm.GLMConfig, glm.GLMChineseTokenizer, glm.GLMEnglishTokenizer),
    # GPT2-base-ch's FlagAIBertTokenizer is found by name through the BERT entry
    (gpt2.FlagAIGPT2Config, gpt2.FlagAIGPT2Tokenizer, None),
    (t5.FlagAIT5Config, t5.T5SentencePieceTokenizer, t5.T5ChineseTokenizer),
]


def register_all() -> None:
    configs = {config for _, config, _ in AUTO_MODELS}
    for config in configs:
        AutoConfig.register(config.model_type, config, exist_ok=True)
    for auto_class, config, model in AUTO_MODELS:
        auto_class.register(config, model, exist_ok=True)
    for config, tokenizer, other in AUTO_TOKENIZERS:
        # ``slow_tokenizer_class`` only adds ``other`` to the classes AutoTokenizer resolves by the name that
        # tokenizer_config.json records; ``tokenizer`` stays the default for the config.
        AutoTokenizer.register(config, tokenizer_class=tokenizer, slow_tokenizer_class=other, exist_ok=True)
