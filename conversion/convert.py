"""Convert a model folder between layouts (native flagai_hf, FlagAI legacy): ``flagai-hf convert``.

A thin wrapper for running it from a checkout (``python conversion/convert.py --help``); the code is
``flagai_hf/conversion/convert.py``.
"""

import sys

from flagai_hf.conversion.convert import main

if __name__ == "__main__":
    sys.exit(main())
