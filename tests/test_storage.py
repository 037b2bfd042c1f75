"""Both storage backends behind one interface: local directory and S3.

S3 runs against moto twice: in-process (`mock_aws`, boto3 only, since moto cannot
intercept aiobotocore's HTTP client) and as a real HTTP server on loopback.
"""

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from moto import mock_aws

from core.settings import Settings
from storage import ObjectNotFound, StorageError, create_storage, open_async_storage
from storage.local import LocalStorage
from storage.s3 import MULTIPART_PART_BYTES
from tests.conftest import s3_client, s3_settings_for


@pytest.fixture(params=["local", "s3-server", "s3-in-process"])
def backend_settings(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Settings]:
    if request.param == "local":
        yield Settings(STORAGE_BACKEND="local", STORAGE_DIR=tmp_path / "storage")
    elif request.param == "s3-server":
        bucket = request.getfixturevalue("s3_bucket")
        yield s3_settings_for(request.getfixturevalue("s3_endpoint"), bucket)
    else:
        with mock_aws():
            settings = s3_settings_for(None, "in-process")
            create_storage(settings).client.create_bucket(Bucket="in-process")
            yield settings


def test_put_get_roundtrip(backend_settings: Settings, tmp_path: Path) -> None:
    storage = create_storage(backend_settings)
    storage.put_bytes("jobs/a/pages/00001.txt", "héllo".encode())

    assert storage.get_bytes("jobs/a/pages/00001.txt") == "héllo".encode()
    assert storage.exists("jobs/a/pages/00001.txt")
    destination = tmp_path / "copy"
    storage.download("jobs/a/pages/00001.txt", destination)
    assert destination.read_bytes() == "héllo".encode()


def test_missing_object(backend_settings: Settings, tmp_path: Path) -> None:
    storage = create_storage(backend_settings)

    assert not storage.exists("jobs/none/source")
    with pytest.raises(ObjectNotFound):
        storage.get_bytes("jobs/none/source")
    with pytest.raises(ObjectNotFound):
        storage.download("jobs/none/source", tmp_path / "x")


def test_delete_prefix(backend_settings: Settings) -> None:
    storage = create_storage(backend_settings)
    for key in ("jobs/a/source", "jobs/a/pages/00001.txt", "jobs/ab/source"):
        storage.put_bytes(key, b"x")

    assert storage.delete_prefix("jobs/a/") == 2
    assert not storage.exists("jobs/a/source")
    assert not storage.exists("jobs/a/pages/00001.txt")
    assert storage.exists("jobs/ab/source")


def test_local_rejects_escaping_keys(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "root")

    for key in ("../outside", "/etc/passwd", "jobs/../../x", ""):
        with pytest.raises(ValueError, match="invalid object key"):
            storage.path_for(key)


@pytest.fixture(params=["local", "s3-server"])
def async_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    if request.param == "local":
        return Settings(STORAGE_BACKEND="local", STORAGE_DIR=tmp_path / "storage")
    bucket = request.getfixturevalue("s3_bucket")
    return s3_settings_for(request.getfixturevalue("s3_endpoint"), bucket)


def pending_uploads(settings: Settings) -> list:
    if settings.STORAGE_BACKEND != "s3":
        root = Path(settings.STORAGE_DIR)
        return list(root.rglob("*.part")) if root.exists() else []
    client = s3_client(settings.S3_ENDPOINT_URL)
    return client.list_multipart_uploads(Bucket=settings.S3_BUCKET).get("Uploads", [])


@pytest.mark.parametrize("size", [10, MULTIPART_PART_BYTES * 2 + 123])
def test_upload_commit(async_settings: Settings, size: int) -> None:
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)

    async def upload() -> bytes:
        async with open_async_storage(async_settings) as storage:
            writer = await storage.open_upload("jobs/u/source")
            for start in range(0, len(data), 65536):
                await writer.write(data[start : start + 65536])
            await writer.commit()
            return await storage.get_bytes("jobs/u/source")

    assert anyio.run(upload) == data
    assert pending_uploads(async_settings) == []


@pytest.mark.parametrize("size", [10, MULTIPART_PART_BYTES + 1])
def test_upload_abort_leaves_nothing(async_settings: Settings, size: int) -> None:
    async def upload_then_abort() -> None:
        async with open_async_storage(async_settings) as storage:
            writer = await storage.open_upload("jobs/u/source")
            await writer.write(b"x" * size)
            await writer.abort()

    anyio.run(upload_then_abort)

    assert not create_storage(async_settings).exists("jobs/u/source")
    assert pending_uploads(async_settings) == []


def test_async_delete_prefix(async_settings: Settings) -> None:
    sync = create_storage(async_settings)
    sync.put_bytes("jobs/d/source", b"1")
    sync.put_bytes("jobs/d/pages/00001.txt", b"2")

    async def delete() -> int:
        async with open_async_storage(async_settings) as storage:
            return await storage.delete_prefix("jobs/d/")

    assert anyio.run(delete) == 2
    assert not sync.exists("jobs/d/source")


def test_check_ok(async_settings: Settings) -> None:
    async def check() -> None:
        async with open_async_storage(async_settings) as storage:
            await storage.check()

    anyio.run(check)


def test_check_missing_bucket(s3_endpoint: str, s3_bucket: str) -> None:
    settings = s3_settings_for(s3_endpoint, "no-such-bucket")

    async def check() -> None:
        async with open_async_storage(settings) as storage:
            await storage.check()

    with pytest.raises(StorageError, match="no-such-bucket"):
        anyio.run(check)


def test_unreachable_endpoint_is_storage_error(tmp_path: Path) -> None:
    settings = s3_settings_for("http://127.0.0.1:9", "bucket")
    storage = create_storage(settings)

    with pytest.raises(StorageError):
        storage.put_bytes("jobs/x/source", b"x")
