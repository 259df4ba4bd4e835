"""Convert a THUDM Megatron GLM checkpoint (model-parallel shards) into a native folder: ``flagai-hf megatron-merge``.

A thin wrapper for running it from a checkout (``python conversion/convert_glm_megatron.py --help``); the code is
``flagai_hf/conversion/convert_glm_megatron.py``.
"""

import sys

from flagai_hf.conversion.convert_glm_megatron import convert_megatron, main, native_names  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
