"""Finding and downloading model folders for ``from_pretrain`` (imported lazily: ``import flagai_hf`` stays light).

- ``sources``: the resolution chain (local folder, Hugging Face Hub, BAAI ModelHub, S3 mirror) and its settings;
- ``huggingface``, ``modelhub``, ``s3``: one module per network source;
- ``fetch``: streamed, resumable, verified, bounded (size cap, deadlines) HTTP download of one file;
- ``formats``: the structure checks of files a source lists with neither size nor digest;
- ``locking``: one download per machine (a file lock in the model folder);
- ``markers``: complete / interrupted / user folders;
- ``names``: FlagAI's model names and the checks on server-given file names.
"""

from .fetch import DeadlineExceeded, DiskError, FetchError, IntegrityError, MissingRemoteFile
from .names import HUB_REPOS, KNOWN_NAMES, UnsafeFileName, check_file_name
from .sources import SETTING_NAMES, DownloadSettings, ModelNotFoundError, resolve

__all__ = [
    "DeadlineExceeded", "DiskError", "DownloadSettings", "FetchError", "HUB_REPOS", "IntegrityError", "KNOWN_NAMES",
    "MissingRemoteFile", "ModelNotFoundError", "SETTING_NAMES", "UnsafeFileName", "check_file_name", "resolve",
]
