"""FlagAI's import paths ``flagai.model.<family>_model`` and ``flagai.model.predictor.predictor``, so that migrating
code changes only the package name. The classes are flagai_hf's own (``flagai_hf.models``)."""
