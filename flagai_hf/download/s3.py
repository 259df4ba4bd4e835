"""An S3-compatible mirror (AWS, Kingsoft KS3, MinIO, ...): objects at ``<prefix>/<model_name>/<file>``.

The objects are listed with ListObjectsV2 and read with HeadObject (size, ``ChecksumSHA256`` when the upload stored
one, the ETag, which is the MD5 of a single-part upload); the bytes come through the shared resumable fetcher from a
pre-signed GET URL (a plain URL when anonymous). Anonymous access needs no credentials; explicit keys, or boto3's
usual chain (``AWS_ACCESS_KEY_ID``, ``~/.aws``, ...), sign the requests. Needs boto3 (``pip install flagai_hf[s3]``).

The listing and HEAD calls are bounded as our other API calls are: boto3 builds, signs, retries
(``download_retries``, standard mode) and parses them, but each request is sent by the fetcher's ``exchange``
(``connect_timeout``, ``read_timeout``, at most ``fetch.MAX_API_RESPONSE`` bytes of answer), and each call, its
retries included, ends within ``api_deadline``. A listing is read at most ``MAX_LISTED_OBJECTS`` objects far: a
prefix holding more is refused, so a bucket listing a million keys neither runs for hours nor fills memory. (The
requests go straight to the endpoint, like the file bodies: boto3's proxy settings are not used.)
"""

import base64
import os
from pathlib import Path

from .fetch import Deadline, FetchError, FetchOptions, RemoteFile, TransientFailure, exchange
from .names import check_file_name
from .sources import DownloadSettings, SourceUnavailable, download_files

URL_LIFETIME = 6 * 3600  # seconds a pre-signed URL stays valid (resumes reuse it)
MAX_LISTED_OBJECTS = 10_000  # objects under one model's prefix read from a listing at most
LIST_PAGE_SIZE = 1000  # objects per ListObjectsV2 page (S3's own maximum)


class S3Source:
    def __init__(self, settings: DownloadSettings):
        self.settings = settings
        self.prefix = settings.s3_prefix.strip("/")
        where = f"s3://{settings.s3_bucket}/{self.prefix + '/' if self.prefix else ''}"
        self.label = f"S3 mirror {where} at {settings.s3_endpoint or 'AWS'}"

    def describe(self) -> str:
        if not self.settings.s3_bucket:
            raise SourceUnavailable("not configured: pass s3_bucket (and s3_endpoint, s3_prefix) or set "
                                    "FLAGAI_HF_S3_BUCKET / FLAGAI_HF_S3_ENDPOINT / FLAGAI_HF_S3_PREFIX")
        return self.label

    def plan(self, model_name: str) -> list[RemoteFile]:
        """Every object under ``<prefix>/<model_name>/`` as a file to fetch (listing and HEADs only)."""
        client = self._client()
        key_prefix = f"{self.prefix}/{model_name}/" if self.prefix else f"{model_name}/"
        return [self._remote_file(client, key, key[len(key_prefix):])
                for key in self._keys(client, key_prefix, model_name)]

    def download(self, remotes: list[RemoteFile], folder: Path) -> dict:
        return download_files(remotes, folder, self.label, self.settings)

    def _keys(self, client, key_prefix: str, model_name: str) -> list[str]:
        keys = []
        paginator = client.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.settings.s3_bucket, Prefix=key_prefix,
                                   PaginationConfig={"PageSize": LIST_PAGE_SIZE})
        listed = 0
        for page in pages:
            entries = page.get("Contents", [])
            listed += len(entries)
            if listed > MAX_LISTED_OBJECTS:
                raise FetchError(f"{self.label} lists more than {MAX_LISTED_OBJECTS} objects under {key_prefix!r} "
                                 f"(model {model_name!r}); a model folder holds far fewer, so the listing was "
                                 "stopped there (s3.MAX_LISTED_OBJECTS): check s3_prefix")
            keys += [entry["Key"] for entry in entries if not entry["Key"].endswith("/")]
        if not keys:
            raise SourceUnavailable(f"{self.label} has no objects under {key_prefix!r} (model {model_name!r})")
        return sorted(keys)

    def _remote_file(self, client, key: str, name: str) -> RemoteFile:
        check_file_name(name, self.label)
        head = client.head_object(Bucket=self.settings.s3_bucket, Key=key, ChecksumMode="ENABLED")
        sha256 = head.get("ChecksumSHA256")
        if sha256 and "-" not in sha256:  # a composite (multipart) checksum is not the file's digest
            sha256 = base64.b64decode(sha256).hex()
        else:
            sha256 = None
        etag = head.get("ETag", "").strip('"')
        md5 = etag if len(etag) == 32 and "-" not in etag else None  # a multipart ETag is no MD5
        url = client.generate_presigned_url("get_object", Params={"Bucket": self.settings.s3_bucket, "Key": key},
                                            ExpiresIn=URL_LIFETIME)
        return RemoteFile(name=name, url=url, size=head["ContentLength"], sha256=sha256, md5=md5)

    def _client(self):
        try:
            import boto3
            from botocore import UNSIGNED
            from botocore.config import Config
        except ImportError:
            raise SourceUnavailable("boto3 is not installed: pip install 'flagai_hf[s3]' (or boto3)") from None
        settings = self.settings
        session = boto3.session.Session(aws_access_key_id=settings.s3_access_key_id,
                                        aws_secret_access_key=settings.s3_secret_access_key)
        anonymous = settings.s3_anonymous
        if anonymous is None:
            anonymous = session.get_credentials() is None
        # total_max_attempts counts the first request too: download_retries failures in a row, then one more try
        options = {"connect_timeout": settings.connect_timeout, "read_timeout": settings.read_timeout,
                   "retries": {"total_max_attempts": settings.download_retries + 1, "mode": "standard"}}
        if anonymous:
            options["signature_version"] = UNSIGNED
        region = settings.s3_region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        client = session.client("s3", endpoint_url=settings.s3_endpoint, region_name=region,
                                config=Config(**options))
        BoundedSend(self.label, settings.fetch_options).attach(client)
        return client


class BoundedSend:
    """Sends a boto3 client's requests through ``fetch.exchange``, each API call (all its retries) within
    ``api_deadline``: the ``before-call`` event starts the call's deadline, ``before-send`` (which may answer in
    place of botocore's own HTTP client) makes each request."""

    def __init__(self, label: str, options: FetchOptions):
        self.label, self.options = label, options
        self.deadline = None

    def attach(self, client) -> None:
        client.meta.events.register("before-call.s3", self.start_call)
        client.meta.events.register("before-send.s3", self.send)

    def start_call(self, model, **_):
        self.deadline = Deadline(self.options.api_deadline, f"{self.label}: {model.name}", "api_deadline")

    def send(self, request, **_):
        from botocore.awsrequest import AWSResponse
        from botocore.exceptions import HTTPClientError

        body = request.body
        if hasattr(body, "read"):
            body = body.read()
        try:
            status, _, headers, data = exchange(request.method, request.url, dict(request.headers.items()),
                                                body or None, self.label, self.options, self.deadline)
        except TransientFailure as error:  # botocore's retry handler retries its HTTPClientErrors
            raise HTTPClientError(error=f"{self.label}: {error}") from error
        return AWSResponse(request.url, status, headers, _Body(data))


class _Body:
    """An answer already read, as ``AWSResponse`` reads its ``raw``."""

    def __init__(self, data: bytes):
        self.data = data

    def stream(self, **_):
        yield self.data
