"""Convert a model folder between layouts (native flagai_hf, FlagAI legacy): ``flagai-hf convert``.

A thin wrapper for running it from a checkout (``python conversion/convert.py --help``); the code is
``flagai_hf/conversion/convert.py``.
"""

import sys

from flagai_hf.conversion.convert import main, model_class, write_tokenizer  # noqa: F401 (convert_glm_megatron.py)

if __name__ == "__main__":
    sys.exit(main())
