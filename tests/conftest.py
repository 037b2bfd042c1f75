"""Fixtures: a real redis-server, moto's S3 server, API clients and full stacks."""

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from fastapi.testclient import TestClient
from redis import Redis

from api.keys import entry_for
from api.main import create_app
from core.settings import Settings
from tests.support.servers import moto_s3_server, redis_server
from tests.support.stack import Stack, running_stack

DATA = Path(__file__).parent / "data"
CASES = DATA / "cases"
BUCKET = "pindai-test"
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@pytest.fixture(scope="session")
def redis_base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a redis-server started for this test session."""
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
def redis_url(redis_base_url: str) -> Iterator[str]:
    """An emptied database (1) on the session's Redis, for one test."""
    url = redis_base_url.rsplit("/", 1)[0] + "/1"
    client = Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """URL of moto's S3 server, on loopback, for this test session."""
    with moto_s3_server() as url:
        yield url


@pytest.fixture
def s3_bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh, empty bucket on the moto server."""
    for name, value in S3_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    client = s3_client(s3_endpoint)
    client.create_bucket(Bucket=BUCKET)
    yield BUCKET
    empty_bucket(client, BUCKET)
    client.delete_bucket(Bucket=BUCKET)


def s3_client(endpoint: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


def empty_bucket(client, bucket: str) -> None:
    for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        client.abort_multipart_upload(
            Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
        )
    for item in client.list_objects_v2(Bucket=bucket).get("Contents", []):
        client.delete_object(Bucket=bucket, Key=item["Key"])


def s3_settings_for(endpoint: str | None, bucket: str, **overrides: object) -> Settings:
    """Return s3-backend settings for `endpoint`; None means AWS, as mock_aws needs."""
    values: dict[str, object] = {
        "STORAGE_BACKEND": "s3",
        "S3_BUCKET": bucket,
        "S3_ENDPOINT_URL": endpoint,
        "S3_REGION": "us-east-1",
        "S3_ADDRESSING_STYLE": "path",
        **S3_CREDENTIALS,
    }
    values.update(overrides)
    return Settings(**values)


def make_settings(redis_url: str, storage_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "REDIS_URL": redis_url,
        "STORAGE_BACKEND": "local",
        "STORAGE_DIR": storage_dir,
        "LOG_JSON": True,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def s3_settings(
    redis_url: str, tmp_path: Path, s3_endpoint: str, s3_bucket: str
) -> Settings:
    return s3_settings_for(
        s3_endpoint,
        s3_bucket,
        REDIS_URL=redis_url,
        STORAGE_DIR=tmp_path / "unused",
        LOG_JSON=True,
        MAX_UPLOAD_BYTES=20_000_000,
    )


@pytest.fixture
def s3_api(s3_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(s3_settings), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def settings(redis_url: str, tmp_path: Path) -> Settings:
    return make_settings(redis_url, tmp_path / "storage")


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """The API in-process, on the session's Redis and a local storage directory."""
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def local_stack(
    redis_base_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """API and two workers on local storage, shared by the integration tests."""
    root = tmp_path_factory.mktemp("local-stack")
    with running_stack(redis_base_url, root, 2) as stack:
        yield stack


@pytest.fixture(scope="session")
def s3_stack(
    redis_base_url: str, s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """API and two workers on a bucket of moto's S3 server."""
    root = tmp_path_factory.mktemp("s3-stack")
    client = s3_client(s3_endpoint)
    client.create_bucket(Bucket="pindai-stack")
    with running_stack(
        redis_base_url,
        root,
        3,
        STORAGE_BACKEND="s3",
        S3_BUCKET="pindai-stack",
        S3_ENDPOINT_URL=s3_endpoint,
        S3_REGION="us-east-1",
        S3_ADDRESSING_STYLE="path",
        **S3_CREDENTIALS,
    ) as stack:
        yield stack


# API keys of the operations stack, by name; the stack is configured with their digests.
OPS_KEYS = {"alice": "alice-test-key-0001", "bob": "bob-test-key-0002"}
OPS_METRICS_TOKEN = "metrics-test-token"
OPS_WEBHOOK_SECRET = "webhook-test-secret"


@pytest.fixture(scope="session")
def ops_stack(
    redis_base_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """API and two workers with API keys, a metrics token and webhooks switched on.

    Webhooks may reach loopback, where the tests run their receivers, a delivery
    times out after 2 s, and a failed one is retried after 1 s instead of 30 s.
    """
    root = tmp_path_factory.mktemp("ops-stack")
    api_keys = ",".join(entry_for(name, key) for name, key in OPS_KEYS.items())
    with running_stack(
        redis_base_url,
        root,
        5,
        API_KEYS=api_keys,
        METRICS_TOKEN=OPS_METRICS_TOKEN,
        WEBHOOK_SECRET=OPS_WEBHOOK_SECRET,
        WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8",
        WEBHOOK_RETRY_SECONDS="1",
        WEBHOOK_MAX_ATTEMPTS="3",
        WEBHOOK_TIMEOUT_SECONDS="2",
    ) as stack:
        yield stack


@pytest.fixture(params=["local", "s3"])
def stack(request: pytest.FixtureRequest) -> Stack:
    """Each storage backend's stack in turn."""
    return request.getfixturevalue(f"{request.param}_stack")
