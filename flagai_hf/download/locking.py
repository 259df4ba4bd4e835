"""One download per machine: a file lock in the model folder.

Every process that needs ``download_path/model_name`` (several scripts, or every rank of a torch.distributed /
accelerate job on one machine) takes ``<folder>/.flagai_hf.lock`` before downloading. The first one downloads while
the others block on the lock, then find the folder complete and load it: no barrier is needed, so ranks that never
call ``from_pretrain`` do not hang, and a process killed mid-download releases the lock (the OS drops it).
"""

import contextlib
import time
from pathlib import Path

from filelock import FileLock, Timeout
from transformers.utils import logging

logger = logging.get_logger(__name__)

LOCK_NAME = ".flagai_hf.lock"


@contextlib.contextmanager
def folder_lock(folder: Path, timeout: float):
    """Hold the download lock of ``folder``; ``TimeoutError`` naming the folder after ``timeout`` seconds."""
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder / LOCK_NAME))
    started = time.monotonic()
    try:
        lock.acquire(timeout=0)
    except Timeout:
        logger.info(f"Another process is downloading into {folder}; waiting for it (at most {timeout:.0f}s)")
        try:
            lock.acquire(timeout=timeout, poll_interval=0.2)
        except Timeout:
            raise TimeoutError(
                f"Waited {time.monotonic() - started:.0f}s for the download lock {folder / LOCK_NAME}, held by another "
                f"process downloading this model. Pass a larger lock_timeout (or FLAGAI_HF_LOCK_TIMEOUT) if the "
                f"download is slow; no process should hold it otherwise (a killed process releases it)."
            ) from None
    try:
        yield
    finally:
        lock.release()
