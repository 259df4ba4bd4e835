"""The conversion commands of ``flagai-hf`` (``flagai_hf/cli.py``), one module per command, each with ``main(argv)``:

* ``convert``: a folder in any layout flagai_hf reads -> a native folder, or -> FlagAI's legacy layout;
* ``export_hub``: a Hub-ready folder that transformers loads alone (``trust_remote_code=True``);
* ``serve_mirror``: a directory of exported folders served as a Hub mirror (``HF_ENDPOINT``);
* ``convert_glm_megatron``: THUDM Megatron model-parallel shards -> a native GLM folder, streaming.

``conversion/*.py`` in the repository are thin wrappers that run these from a checkout.
"""
