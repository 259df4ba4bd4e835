"""Serve a directory of exported model folders as a Hugging Face Hub mirror (``HF_ENDPOINT``).

    flagai-hf serve-mirror DIR [--host 127.0.0.1] [--port 8080]

DIR holds ``ORG/NAME/`` folders (``flagai-hf export ... --repo-id ORG/NAME --mirror DIR``). Clients then load
them by repo id::

    HF_ENDPOINT=http://127.0.0.1:8080 python -c "from transformers import AutoModelForSeq2SeqLM; \\
        AutoModelForSeq2SeqLM.from_pretrained('ORG/NAME', trust_remote_code=True)"

The first line printed is ``serving DIR at URL`` (``--port 0`` picks a free port). Stop it with Ctrl-C. It has no
authentication: keep it on 127.0.0.1 or a trusted network.
"""

import argparse
import sys
from pathlib import Path

from ..export.mirror import HubMirror


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path, help="the mirror directory (DIR/ORG/NAME/ folders)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0: any free port")
    args = parser.parse_args(argv)
    try:
        mirror = HubMirror(args.directory, host=args.host, port=args.port)
    except (FileNotFoundError, OSError) as error:
        raise SystemExit(f"error: {error}") from error
    print(f"serving {args.directory} at {mirror.url}", flush=True)
    print(f"repos: {', '.join(mirror.repo_ids()) or '(none yet)'}; set HF_ENDPOINT={mirror.url}", flush=True)
    try:
        mirror.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
