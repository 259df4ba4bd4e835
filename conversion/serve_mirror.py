"""Serve a directory of exported model folders as a Hugging Face Hub mirror: ``flagai-hf serve-mirror``.

A thin wrapper for running it from a checkout (``python conversion/serve_mirror.py --help``); the code is
``flagai_hf/conversion/serve_mirror.py``.
"""

import sys

from flagai_hf.conversion.serve_mirror import main

if __name__ == "__main__":
    sys.exit(main())
