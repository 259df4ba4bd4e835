"""Export a model as a Hub-ready folder that loads with transformers alone: ``flagai-hf export``.

A thin wrapper for running it from a checkout (``python conversion/export_hub.py --help``); the code is
``flagai_hf/conversion/export_hub.py``.
"""

import sys

from flagai_hf.conversion.export_hub import main

if __name__ == "__main__":
    sys.exit(main())
