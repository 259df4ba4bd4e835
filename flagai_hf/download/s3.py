"""An S3-compatible mirror (AWS, Kingsoft KS3, MinIO, ...): objects at ``<prefix>/<model_name>/<file>``.

The objects are listed with ListObjectsV2 and read with HeadObject (size, ``ChecksumSHA256`` when the upload stored
one, the ETag, which is the MD5 of a single-part upload); the bytes come through the shared resumable fetcher from a
pre-signed GET URL (a plain URL when anonymous). Anonymous access needs no credentials; explicit keys, or boto3's
usual chain (``AWS_ACCESS_KEY_ID``, ``~/.aws``, ...), sign the requests. Needs boto3 (``pip install flagai_hf[s3]``).
"""

import base64
import os
from pathlib import Path

from .fetch import RemoteFile
from .names import check_file_name
from .sources import DownloadSettings, SourceUnavailable, download_files

URL_LIFETIME = 6 * 3600  # seconds a pre-signed URL stays valid (resumes reuse it)


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
        for page in paginator.paginate(Bucket=self.settings.s3_bucket, Prefix=key_prefix):
            keys += [entry["Key"] for entry in page.get("Contents", []) if not entry["Key"].endswith("/")]
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
        options = {"connect_timeout": settings.connect_timeout, "read_timeout": settings.read_timeout,
                   "retries": {"max_attempts": settings.download_retries + 1, "mode": "standard"}}
        if anonymous:
            options["signature_version"] = UNSIGNED
        region = settings.s3_region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        return session.client("s3", endpoint_url=settings.s3_endpoint, region_name=region, config=Config(**options))
