"""The resolution chain of ``from_pretrain``: which sources are asked, in which order, with which settings.

``resolve(download_path, model_name, **options)`` returns a folder ready to load, trying in order (configurable):

- ``local``: ``download_path/model_name/`` when complete (our marker) or a user's folder (config.json, none of our
  markers); a folder our downloader left unfinished is never loaded;
- ``hf``: the Hugging Face Hub (``HF_ENDPOINT`` mirrors work) for FlagAI's names (``names.HUB_REPOS``) or a repo id;
- ``modelhub``: the BAAI ModelHub REST API (``modelhub_url``);
- ``s3``: an S3-compatible mirror (``s3_endpoint``, ``s3_bucket``, ``s3_prefix``), objects at
  ``<prefix>/<model_name>/<file>``.

Settings come from keyword arguments, else environment variables read at call time (``FLAGAI_HF_SOURCES``,
``FLAGAI_HF_MODELHUB_URL``, ``FLAGAI_HF_S3_ENDPOINT``, ...; see ``DownloadSettings``). Each attempt is logged;
when every source fails, one ``ModelNotFoundError`` names each source tried and why. ``HF_HUB_OFFLINE=1`` skips the
network sources.

Each network source is asked in two steps: ``plan(model_name)`` lists the files and checks every name, size and
digest the source gives (no disk is touched), then ``download(plan, folder)`` fetches them under the folder's lock.
So a source offering a bad name leaves no folder and no lock behind.
"""

import contextlib
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from transformers.utils import logging

from . import markers
from .fetch import DiskError, FetchOptions, RemoteFile, fetch, verify
from .locking import folder_lock
from .names import KNOWN_NAMES, check_model_name, is_known

logger = logging.get_logger(__name__)

SOURCE_NAMES = ("local", "hf", "modelhub", "s3")
DEFAULT_MODELHUB_URL = "https://model.baai.ac.cn"
_TRUE = {"1", "true", "yes", "on"}
OFFLINE = "skipped: HF_HUB_OFFLINE=1 (or TRANSFORMERS_OFFLINE=1) forbids network access"


@dataclass(frozen=True)
class DownloadSettings:
    """Where ``from_pretrain`` looks and how it downloads. Each field is a keyword argument of ``from_pretrain``;
    left out, it comes from the environment variable in its comment, else the default."""

    sources: tuple[str, ...] = SOURCE_NAMES  # FLAGAI_HF_SOURCES="local,hf,modelhub,s3"
    hf_endpoint: str | None = None  # HF_ENDPOINT (default https://huggingface.co)
    hf_revision: str | None = None  # branch, tag or commit of the Hub repository (default: main)
    hf_token: str | bool | None = None  # HF_TOKEN / the saved login, as huggingface_hub does
    modelhub_url: str = DEFAULT_MODELHUB_URL  # FLAGAI_HF_MODELHUB_URL
    s3_endpoint: str | None = None  # FLAGAI_HF_S3_ENDPOINT, e.g. https://ks3-cn-beijing.ksyuncs.com
    s3_bucket: str | None = None  # FLAGAI_HF_S3_BUCKET
    s3_prefix: str = ""  # FLAGAI_HF_S3_PREFIX: objects are <prefix>/<model_name>/<file>
    s3_region: str | None = None  # FLAGAI_HF_S3_REGION (else AWS_DEFAULT_REGION, else us-east-1)
    s3_access_key_id: str | None = None  # else boto3's chain (AWS_ACCESS_KEY_ID, ~/.aws, ...)
    s3_secret_access_key: str | None = None
    s3_anonymous: bool | None = None  # FLAGAI_HF_S3_ANONYMOUS; default: anonymous when no credentials are found
    connect_timeout: float = 10.0  # FLAGAI_HF_CONNECT_TIMEOUT, seconds
    read_timeout: float = 60.0  # FLAGAI_HF_READ_TIMEOUT, seconds without a byte
    download_retries: int = 4  # FLAGAI_HF_RETRIES: failed requests in a row before a source gives up
    retry_backoff: float = 0.5  # first wait between retries, doubled each time
    lock_timeout: float = 6 * 3600.0  # FLAGAI_HF_LOCK_TIMEOUT: how long to wait for another process's download
    progress: bool = True  # a tqdm bar per file
    file_deadline: float = 6 * 3600.0  # FLAGAI_HF_FILE_DEADLINE: seconds for one file, every retry included
    api_deadline: float = 120.0  # FLAGAI_HF_API_DEADLINE: seconds for one API call, every retry included
    max_unverified_size: int = 16 << 30  # FLAGAI_HF_MAX_UNVERIFIED_SIZE: bytes of a file listed without a size

    @classmethod
    def from_call(cls, **given) -> "DownloadSettings":
        """Settings from ``from_pretrain``'s keyword arguments, the environment filling the rest (read now)."""
        env = os.environ
        values = {
            "sources": env.get("FLAGAI_HF_SOURCES"),
            "hf_endpoint": env.get("HF_ENDPOINT"),
            "modelhub_url": env.get("FLAGAI_HF_MODELHUB_URL"),
            "s3_endpoint": env.get("FLAGAI_HF_S3_ENDPOINT"),
            "s3_bucket": env.get("FLAGAI_HF_S3_BUCKET"),
            "s3_prefix": env.get("FLAGAI_HF_S3_PREFIX"),
            "s3_region": env.get("FLAGAI_HF_S3_REGION"),
            "s3_anonymous": _flag(env.get("FLAGAI_HF_S3_ANONYMOUS")),
            "connect_timeout": _number(env, "FLAGAI_HF_CONNECT_TIMEOUT", float),
            "read_timeout": _number(env, "FLAGAI_HF_READ_TIMEOUT", float),
            "download_retries": _number(env, "FLAGAI_HF_RETRIES", int),
            "lock_timeout": _number(env, "FLAGAI_HF_LOCK_TIMEOUT", float),
            "file_deadline": _number(env, "FLAGAI_HF_FILE_DEADLINE", float),
            "api_deadline": _number(env, "FLAGAI_HF_API_DEADLINE", float),
            "max_unverified_size": _number(env, "FLAGAI_HF_MAX_UNVERIFIED_SIZE", int),
        }
        values.update({key: value for key, value in given.items() if value is not None})
        values = {key: value for key, value in values.items() if value is not None}
        if "sources" in values:
            values["sources"] = parse_sources(values["sources"])
        return cls(**values)

    @property
    def fetch_options(self) -> FetchOptions:
        return FetchOptions(connect_timeout=self.connect_timeout, read_timeout=self.read_timeout,
                            retries=self.download_retries, backoff=self.retry_backoff, progress=self.progress,
                            file_deadline=self.file_deadline, api_deadline=self.api_deadline,
                            max_unverified_size=self.max_unverified_size)


SETTING_NAMES = frozenset(field.name for field in dataclasses.fields(DownloadSettings))


def parse_sources(sources) -> tuple[str, ...]:
    """``"local,hf"`` or ``["local", "hf"]`` -> ``("local", "hf")``; unknown names are an error listing the known."""
    names = [part.strip() for part in sources.split(",")] if isinstance(sources, str) else list(sources)
    names = [name for name in names if name]
    unknown = [name for name in names if name not in SOURCE_NAMES]
    if unknown or not names:
        raise ValueError(f"Unknown download source(s) {unknown or names!r}: sources are a non-empty list of "
                         f"{', '.join(SOURCE_NAMES)} (argument `sources` or FLAGAI_HF_SOURCES)")
    return tuple(dict.fromkeys(names))


class SourceUnavailable(Exception):
    """A source cannot serve this model (not configured, offline, no such model, ...): the next one is tried."""


class ModelNotFoundError(FileNotFoundError):
    """Every source failed; ``attempts`` holds (source, reason) pairs."""

    def __init__(self, model_name: str, folder: Path, attempts: list[tuple[str, str]]):
        self.model_name, self.folder, self.attempts = model_name, folder, attempts
        lines = "\n".join(f"  - {source}: {reason}" for source, reason in attempts)
        message = f"Could not load or download {model_name!r} into {folder}. Sources tried, in order:\n{lines}"
        if not is_known(model_name):
            message += (f"\n{model_name!r} is not a known model name. Known FlagAI names: {', '.join(KNOWN_NAMES)}; "
                        f"a Hugging Face repo id ('org/name') also works.")
        super().__init__(message)


def resolve(download_path, model_name: str, settings: DownloadSettings | None = None) -> Path:
    """The folder ``download_path/model_name`` once it is complete, downloading it first if needed."""
    settings = settings or DownloadSettings.from_call()
    check_model_name(model_name)
    folder = Path(download_path) / model_name
    attempts: list[tuple[str, str]] = []

    if "local" in settings.sources:
        state = markers.inspect(folder)
        if state.state.loadable:
            return folder
        logger.info(f"from_pretrain: local: {state.reason}")
        attempts.append(("local", state.reason))
    network = [name for name in settings.sources if name != "local"]
    if not network:
        raise ModelNotFoundError(model_name, folder, attempts)
    if _offline():
        attempts += [(name, OFFLINE) for name in network]
        raise ModelNotFoundError(model_name, folder, attempts)

    with contextlib.ExitStack() as held:
        locked = False
        for name in network:
            source = make_source(name, settings)
            try:
                label = source.describe()
                logger.info(f"from_pretrain: trying {label} for {model_name!r}")
                plan = source.plan(model_name)  # file names, sizes, digests, all checked: nothing is written yet
            except Exception as error:  # noqa: BLE001 -- every failure is reported, then the next source is tried
                attempts.append(_failed(name, model_name, error))
                continue
            if not locked:  # the folder and its lock appear only once a source offers valid files
                held.enter_context(folder_lock(folder, settings.lock_timeout))
                locked = True
                if "local" in settings.sources:  # another process may have finished while we waited
                    state = markers.inspect(folder)
                    if state.state.loadable:
                        return folder
            try:
                markers.begin(folder, name, model_name)
                files = source.download(plan, folder)
            except DiskError:  # the disk's fault: another source would fail the same way
                raise
            except Exception as error:  # noqa: BLE001
                attempts.append(_failed(name, model_name, error))
                continue
            markers.finish(folder, name, model_name, files)
            logger.info(f"from_pretrain: downloaded {model_name!r} from {label} into {folder} ({len(files)} files)")
            return folder
    _drop_empty_marker_folder(folder)
    raise ModelNotFoundError(model_name, folder, attempts)


def _failed(name: str, model_name: str, error: Exception) -> tuple[str, str]:
    reason = f"{type(error).__name__}: {error}" if not isinstance(error, SourceUnavailable) else str(error)
    logger.warning(f"from_pretrain: {name} failed for {model_name!r}: {reason}")
    return name, reason


def make_source(name: str, settings: DownloadSettings):
    if name == "hf":
        from .huggingface import HubSource

        return HubSource(settings)
    if name == "modelhub":
        from .modelhub import ModelHubSource

        return ModelHubSource(settings)
    from .s3 import S3Source

    return S3Source(settings)


def download_files(remotes: list[RemoteFile], folder: Path, label: str, settings: DownloadSettings) -> dict:
    """Fetch each file into ``folder`` (a file already there that passes the check is kept); returns the manifest
    name -> {"size", "sha256", "checked_by"} for the completion marker (``checked_by``: "sha256", "md5", "size", or
    "structure" for a file listed with neither size nor digest, see ``formats``)."""
    manifest = {}
    for remote in remotes:
        target = folder / remote.name
        digest = None
        if target.is_file():
            try:
                digest = verify(target, remote, label)
                logger.info(f"{remote.name}: already downloaded and verified")
            except OSError:
                digest = None
        if digest is None:
            digest = fetch(remote, target, label, settings.fetch_options)
        manifest[remote.name] = {"size": target.stat().st_size, "sha256": digest, "checked_by": remote.checked_by}
    return manifest


def _offline() -> bool:
    env = os.environ
    return any(env.get(name, "").strip().lower() in _TRUE for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _drop_empty_marker_folder(folder: Path) -> None:
    """After a download that fetched nothing: drop our in-progress marker, so the folder reads as missing, not as
    an interrupted download (the lock file stays: another process may be waiting on it)."""
    if folder.is_dir() and all(path.name in (".flagai_hf.lock", markers.IN_PROGRESS) for path in folder.iterdir()):
        (folder / markers.IN_PROGRESS).unlink(missing_ok=True)


def _flag(value: str | None) -> bool | None:
    return None if value is None or not value.strip() else value.strip().lower() in _TRUE


def _number(env, name: str, kind):
    value = env.get(name)
    if value is None or not value.strip():
        return None
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a {kind.__name__}") from None
