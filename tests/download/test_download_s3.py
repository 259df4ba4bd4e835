"""from_pretrain from an S3-compatible mirror: moto's S3 server on 127.0.0.1, reached when the Hub is unreachable."""

import hashlib

import pytest
from download_servers import closed_port, folder_files, logits_of, tiny_bert_folder

from flagai_hf import BertModel
from flagai_hf.download import DownloadSettings, ModelNotFoundError, markers

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

BUCKET, PREFIX, MODEL = "models", "mirror/flagai", "BERT-base-en"


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    folder = tiny_bert_folder(tmp_path_factory.mktemp("source"))
    return folder, folder_files(folder), logits_of(BertModel.from_pretrained(folder))


@pytest.fixture(scope="module")
def s3(source):
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
                          aws_secret_access_key="test")
    client.create_bucket(Bucket=BUCKET, ACL="public-read")
    for name, data in source[1].items():
        extra = {"ChecksumAlgorithm": "SHA256"} if name == "config.json" else {}  # the others carry an MD5 ETag
        client.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{MODEL}/{name}", Body=data, ACL="public-read", **extra)
    client.put_object(Bucket=BUCKET, Key=f"{PREFIX}/hostile/config.json", Body=b"{}", ACL="public-read")
    client.put_object(Bucket=BUCKET, Key=f"{PREFIX}/hostile/a/b/deep.bin", Body=b"x", ACL="public-read")
    yield endpoint
    server.stop()


@pytest.fixture
def online(monkeypatch):
    """Network sources allowed, the Hub and the ModelHub pointing at closed local ports (unreachable)."""
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("FLAGAI_HF_MODELHUB_URL", f"http://127.0.0.1:{closed_port()}")


def test_falls_back_to_s3_when_the_hub_is_unreachable(s3, source, tmp_path, online, monkeypatch):
    # Configured through the environment, read at call time.
    monkeypatch.setenv("FLAGAI_HF_SOURCES", "local,hf,modelhub,s3")
    monkeypatch.setenv("FLAGAI_HF_S3_ENDPOINT", s3)
    monkeypatch.setenv("FLAGAI_HF_S3_BUCKET", BUCKET)
    monkeypatch.setenv("FLAGAI_HF_S3_PREFIX", PREFIX)
    monkeypatch.setenv("FLAGAI_HF_RETRIES", "1")
    model = BertModel.from_pretrain(tmp_path, MODEL, retry_backoff=0.01, progress=False)
    assert (logits_of(model) - source[2]).abs().max().item() == 0.0
    folder = tmp_path / MODEL
    assert markers.inspect(folder).state is markers.State.COMPLETE
    for name, data in source[1].items():
        assert (folder / name).read_bytes() == data


def test_s3_objects_carry_their_digests(s3, source):
    from flagai_hf.download.s3 import S3Source

    settings = DownloadSettings(s3_endpoint=s3, s3_bucket=BUCKET, s3_prefix=PREFIX)
    s3_source = S3Source(settings)
    client = s3_source._client()
    config = s3_source._remote_file(client, f"{PREFIX}/{MODEL}/config.json", "config.json")
    assert config.sha256 == hashlib.sha256(source[1]["config.json"]).hexdigest()
    weights = s3_source._remote_file(client, f"{PREFIX}/{MODEL}/model.safetensors", "model.safetensors")
    assert weights.md5 == hashlib.md5(source[1]["model.safetensors"]).hexdigest()
    assert weights.size == len(source[1]["model.safetensors"])


def test_signed_requests_with_credentials(s3, source, tmp_path, online):
    model = BertModel.from_pretrain(tmp_path, MODEL, sources=["s3"], s3_endpoint=s3, s3_bucket=BUCKET,
                                    s3_prefix=PREFIX, s3_access_key_id="test", s3_secret_access_key="test",
                                    progress=False)
    assert (logits_of(model) - source[2]).abs().max().item() == 0.0


def test_hostile_object_names_are_refused(s3, tmp_path, online):
    with pytest.raises(ModelNotFoundError, match=r"s3: UnsafeFileName: Refusing file name 'a/b/deep.bin' from S3 "
                                                 r"mirror s3://models/mirror/flagai/"):
        BertModel.from_pretrain(tmp_path, "hostile", sources="s3", s3_endpoint=s3, s3_bucket=BUCKET,
                                s3_prefix=PREFIX, progress=False)
    assert not (tmp_path / "hostile" / "config.json").exists()


def test_missing_model_and_unconfigured_mirror_are_reported(s3, tmp_path, online):
    with pytest.raises(ModelNotFoundError, match="has no objects under 'mirror/flagai/GLM-large-ch/'"):
        BertModel.from_pretrain(tmp_path, "GLM-large-ch", sources="s3", s3_endpoint=s3, s3_bucket=BUCKET,
                                s3_prefix=PREFIX, progress=False)
    with pytest.raises(ModelNotFoundError, match=r"s3: not configured: pass s3_bucket"):
        BertModel.from_pretrain(tmp_path, "GLM-large-ch", sources="s3", progress=False)


@pytest.fixture
def proxy(s3):
    from download_servers import FaultProxy

    with FaultProxy(s3) as server:
        yield server


def s3_load(proxy, path, **options):
    return BertModel.from_pretrain(path, MODEL, sources="local,s3", s3_endpoint=proxy.url, s3_bucket=BUCKET,
                                   s3_prefix=PREFIX, retry_backoff=0.01, progress=False, **options)


def test_s3_dropped_connection_and_server_errors_are_survived(proxy, source, tmp_path, online):
    proxy.faults["/model.safetensors"] = ["drop", "503", "drop"]
    proxy.faults["/config.json"] = ["503", "503"]
    model = s3_load(proxy, tmp_path)
    assert (logits_of(model) - source[2]).abs().max().item() == 0.0
    ranges = [header for path, header in proxy.ranges if path.endswith("/model.safetensors")]
    assert len(ranges) >= 2 and "bytes=0-" not in ranges
    assert (tmp_path / MODEL / "model.safetensors").read_bytes() == source[1]["model.safetensors"]


@pytest.mark.parametrize("name, check", [("model.safetensors", "md5"), ("config.json", "sha256")])
def test_s3_corrupted_object_fails_its_digest(proxy, tmp_path, online, name, check):
    proxy.faults[f"/{name}"] = ["corrupt"]
    with pytest.raises(ModelNotFoundError, match=rf"{name} from S3 mirror .*: {check} \w+ differs from the "
                                                 rf"advertised"):
        s3_load(proxy, tmp_path)
    folder = tmp_path / MODEL
    assert not (folder / name).exists() and not list(folder.glob("*.part"))
    assert not markers.inspect(folder).state.loadable
