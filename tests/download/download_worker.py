"""Run by the download tests in other processes: ``from_pretrain`` from a fake ModelHub, then report the weights'
digest. As a script (under torchrun) it joins a gloo process group first and prints one JSON line per rank."""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from download_servers import weights_digest  # noqa: E402

from flagai_hf import BertModel  # noqa: E402


def load_and_digest(hub_url: str, download_path: str, model_name: str) -> dict:
    started = time.time()
    model = BertModel.from_pretrain(download_path, model_name, sources="local,modelhub", modelhub_url=hub_url,
                                    retry_backoff=0.05, progress=False)
    return {"pid": os.getpid(), "started": started, "rank": os.environ.get("RANK"), "digest": weights_digest(model)}


def main(hub_url: str, download_path: str, model_name: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo")
    print(json.dumps(load_and_digest(hub_url, download_path, model_name)), flush=True)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:4])
