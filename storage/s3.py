"""Storage in an S3-compatible bucket (AWS S3, MinIO, Cloudflare R2).

Workers use boto3; the API uses aioboto3 so that no request blocks its event loop.
Both build their clients from the same settings.
"""

import asyncio
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aioboto3
import boto3
from aiobotocore.config import AioConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from core.settings import Settings
from storage.base import (
    ObjectChanged,
    ObjectNotFound,
    ObjectStat,
    PresignedUpload,
    StorageError,
)

# S3 requires every part but the last to be at least 5 MiB; R2 also requires all parts
# but the last to have the same size, which a fixed part size satisfies. 10,000 parts
# of 5 MiB allow objects up to about 48 GiB.
MULTIPART_PART_BYTES = 5 * 1024 * 1024
# Parts of one upload sent while the next one is received. Each costs a part's size
# of memory, and more in copies inside aiobotocore. With one, a 500 MB upload grew
# the API's RSS by about 31 MiB in bench/upload.py.
PARTS_IN_FLIGHT = 1

STREAM_CHUNK_BYTES = 64 * 1024

_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


def _client_options(settings: Settings) -> dict[str, Any]:
    secret = settings.AWS_SECRET_ACCESS_KEY
    return {
        "endpoint_url": settings.S3_ENDPOINT_URL,
        "region_name": settings.S3_REGION,
        "aws_access_key_id": settings.AWS_ACCESS_KEY_ID,
        "aws_secret_access_key": secret.get_secret_value() if secret else None,
    }


def _config_options(settings: Settings) -> dict[str, Any]:
    return {
        "connect_timeout": 5,
        "read_timeout": 30,
        "retries": {"max_attempts": 3, "mode": "standard"},
        "s3": {"addressing_style": settings.S3_ADDRESSING_STYLE},
        # Presigned URLs would otherwise use SigV2 with a custom endpoint, which R2
        # and recent S3 regions reject.
        "signature_version": "s3v4",
        # boto3 >= 1.36 adds CRC checksums to every upload by default, which some
        # S3-compatible services (Cloudflare R2 among them) have rejected.
        "request_checksum_calculation": "when_required",
        "response_checksum_validation": "when_required",
    }


def _translate(error: Exception, action: str, key: str) -> Exception:
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        if code in _NOT_FOUND_CODES:
            return ObjectNotFound(key)
        return StorageError(f"{action} {key} failed: {code or error}")
    return StorageError(f"{action} {key} failed: {error}")


class S3Storage:
    """Blocking bucket access for the workers."""

    def __init__(self, settings: Settings) -> None:
        self.bucket = settings.S3_BUCKET
        self.client = boto3.client(
            "s3",
            config=Config(**_config_options(settings)),
            **_client_options(settings),
        )

    def download(self, key: str, destination: Path) -> None:
        try:
            self.client.download_file(self.bucket, key, str(destination))
        except (BotoCoreError, ClientError) as error:
            raise _translate(error, "downloading", key) from error

    def put_bytes(self, key: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data)
        except (BotoCoreError, ClientError) as error:
            raise _translate(error, "writing", key) from error

    def get_bytes(self, key: str) -> bytes:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
            return response["Body"].read()
        except (BotoCoreError, ClientError) as error:
            raise _translate(error, "reading", key) from error

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if isinstance(_translate(error, "", key), ObjectNotFound):
                return False
            raise _translate(error, "checking", key) from error
        except BotoCoreError as error:
            raise _translate(error, "checking", key) from error
        return True

    def delete_prefix(self, prefix: str) -> int:
        deleted = 0
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if keys:
                    self.client.delete_objects(
                        Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True}
                    )
                    deleted += len(keys)
        except (BotoCoreError, ClientError) as error:
            raise _translate(error, "deleting", prefix) from error
        return deleted


class _S3Upload:
    """Streams an object into the bucket: one PUT when small, a multipart upload if not.

    Bytes are buffered up to one part (5 MiB) and at most PARTS_IN_FLIGHT parts are
    sent at once, so memory per upload stays near (1 + PARTS_IN_FLIGHT) x 5 MiB
    whatever the file size. `abort` cancels the parts in flight and the multipart
    upload, so that no parts are left behind in the bucket.
    """

    def __init__(self, client: Any, bucket: str, key: str) -> None:
        self._client = client
        self._bucket = bucket
        self._key = key
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._next_part = 1
        self._etags: dict[int, str] = {}
        self._in_flight: set[asyncio.Task] = set()

    async def write(self, chunk: bytes) -> None:
        self._buffer.extend(chunk)
        while len(self._buffer) >= MULTIPART_PART_BYTES:
            part = bytes(self._buffer[:MULTIPART_PART_BYTES])
            del self._buffer[:MULTIPART_PART_BYTES]
            await self._start_part(part)

    async def commit(self) -> None:
        try:
            if self._upload_id is None:
                await self._client.put_object(
                    Bucket=self._bucket, Key=self._key, Body=bytes(self._buffer)
                )
                return
            if self._buffer:
                await self._start_part(bytes(self._buffer))
                self._buffer.clear()
            await self._wait_for_parts(len(self._in_flight))
            parts = [
                {"ETag": self._etags[number], "PartNumber": number}
                for number in sorted(self._etags)
            ]
            await self._client.complete_multipart_upload(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": parts},
            )
        except (BotoCoreError, ClientError) as error:
            raise _translate(error, "writing", self._key) from error

    async def abort(self) -> None:
        self._buffer.clear()
        for task in self._in_flight:
            task.cancel()
        await asyncio.gather(*self._in_flight, return_exceptions=True)
        self._in_flight.clear()
        if self._upload_id is None:
            return
        try:
            await self._client.abort_multipart_upload(
                Bucket=self._bucket, Key=self._key, UploadId=self._upload_id
            )
        except (BotoCoreError, ClientError) as error:
            raise _translate(error, "aborting upload of", self._key) from error

    async def _start_part(self, data: bytes) -> None:
        if self._upload_id is None:
            try:
                created = await self._client.create_multipart_upload(
                    Bucket=self._bucket, Key=self._key
                )
            except (BotoCoreError, ClientError) as error:
                raise _translate(error, "writing", self._key) from error
            self._upload_id = created["UploadId"]
        if len(self._in_flight) >= PARTS_IN_FLIGHT:
            await self._wait_for_parts(len(self._in_flight) - PARTS_IN_FLIGHT + 1)
        number = self._next_part
        self._next_part += 1
        self._in_flight.add(asyncio.create_task(self._send_part(number, data)))

    async def _wait_for_parts(self, count: int) -> None:
        """Wait until `count` parts in flight are done; raise the first failure."""
        while count > 0 and self._in_flight:
            done, _ = await asyncio.wait(
                self._in_flight, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                self._in_flight.discard(task)
                task.result()
                count -= 1

    async def _send_part(self, number: int, data: bytes) -> None:
        try:
            response = await self._client.upload_part(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=data,
            )
        except (BotoCoreError, ClientError) as error:
            raise _translate(error, "writing", self._key) from error
        self._etags[number] = response["ETag"]


class AsyncS3Storage:
    """Non-blocking bucket access for the API, over one aiobotocore client."""

    def __init__(self, client: Any, bucket: str, presigner: Any) -> None:
        self.client = client
        self.bucket = bucket
        # A boto3 client for the public endpoint; signing a URL makes no request.
        self.presigner = presigner

    def presign_put(self, key: str, expires_s: int) -> PresignedUpload:
        url = self.presigner.generate_presigned_url(
            "put_object",
            Params={"Bucket": self.bucket, "Key": key},
            ExpiresIn=expires_s,
        )
        return PresignedUpload(url=url, method="PUT", headers={})

    async def stat(self, key: str) -> ObjectStat:
        try:
            response = await self.client.head_object(Bucket=self.bucket, Key=key)
        except (BotoCoreError, ClientError) as error:
            raise _translate(error, "checking", key) from error
        return ObjectStat(size=int(response["ContentLength"]), etag=response["ETag"])

    async def copy(self, source: str, destination: str, if_etag: str) -> None:
        try:
            await self.client.copy_object(
                Bucket=self.bucket,
                Key=destination,
                CopySource={"Bucket": self.bucket, "Key": source},
                CopySourceIfMatch=if_etag,
            )
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in ("PreconditionFailed", "412"):
                raise ObjectChanged(source) from error
            raise _translate(error, "copying", source) from error
        except BotoCoreError as error:
            raise _translate(error, "copying", source) from error

    async def read_head(self, key: str, length: int) -> bytes:
        try:
            response = await self.client.get_object(
                Bucket=self.bucket, Key=key, Range=f"bytes=0-{length - 1}"
            )
            async with response["Body"] as body:
                return await body.read()
        except (BotoCoreError, ClientError) as error:
            raise _translate(error, "reading", key) from error

    async def open_upload(self, key: str) -> _S3Upload:
        return _S3Upload(self.client, self.bucket, key)

    async def get_bytes(self, key: str) -> bytes:
        try:
            response = await self.client.get_object(Bucket=self.bucket, Key=key)
            async with response["Body"] as body:
                return await body.read()
        except (BotoCoreError, ClientError) as error:
            raise _translate(error, "reading", key) from error

    async def iter_bytes(self, key: str) -> AsyncIterator[bytes]:
        try:
            response = await self.client.get_object(Bucket=self.bucket, Key=key)
        except (BotoCoreError, ClientError) as error:
            raise _translate(error, "reading", key) from error
        # The body is read through aiobotocore's StreamingBody, whose read() takes a
        # size; entering it as a context manager would give aiohttp's raw response.
        body = response["Body"]
        try:
            while chunk := await body.read(STREAM_CHUNK_BYTES):
                yield chunk
        except (BotoCoreError, ClientError, OSError) as error:
            raise _translate(error, "reading", key) from error
        finally:
            body.close()

    async def delete_prefix(self, prefix: str) -> int:
        deleted = 0
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if keys:
                    await self.client.delete_objects(
                        Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True}
                    )
                    deleted += len(keys)
        except (BotoCoreError, ClientError) as error:
            raise _translate(error, "deleting", prefix) from error
        return deleted

    async def merge_lifecycle_rules(self, rules: list[dict[str, Any]]) -> None:
        """Add or replace pindai's rules, keeping every other rule of the bucket.

        A PUT replaces a bucket's whole lifecycle configuration, so the current
        rules are read first and only rules with the same IDs are replaced.
        """
        try:
            current = await self.client.get_bucket_lifecycle_configuration(
                Bucket=self.bucket
            )
            existing = current.get("Rules", [])
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code != "NoSuchLifecycleConfiguration":
                raise _translate(error, "reading lifecycle of", self.bucket) from error
            existing = []
        except BotoCoreError as error:
            raise _translate(error, "reading lifecycle of", self.bucket) from error
        ours = {rule["ID"] for rule in rules}
        merged = [rule for rule in existing if rule.get("ID") not in ours] + rules
        try:
            await self.client.put_bucket_lifecycle_configuration(
                Bucket=self.bucket, LifecycleConfiguration={"Rules": merged}
            )
        except (BotoCoreError, ClientError) as error:
            raise _translate(error, "writing lifecycle of", self.bucket) from error

    async def check(self) -> None:
        try:
            await self.client.head_bucket(Bucket=self.bucket)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            raise StorageError(
                f"bucket {self.bucket} is missing or not accessible ({code})"
            ) from error
        except BotoCoreError as error:
            raise StorageError(
                f"bucket {self.bucket} did not respond: {error}"
            ) from error


@asynccontextmanager
async def open_async_s3_storage(settings: Settings) -> AsyncIterator[AsyncS3Storage]:
    """Yield an AsyncS3Storage whose client lives as long as the context."""
    session = aioboto3.Session()
    config = AioConfig(**_config_options(settings))
    public = dict(_client_options(settings))
    public["endpoint_url"] = settings.S3_PUBLIC_ENDPOINT_URL or settings.S3_ENDPOINT_URL
    presigner = boto3.client("s3", config=Config(**_config_options(settings)), **public)
    async with session.client(
        "s3", config=config, **_client_options(settings)
    ) as client:
        yield AsyncS3Storage(client, settings.S3_BUCKET, presigner)


def job_lifecycle_rules(result_ttl_seconds: int) -> list[dict[str, Any]]:
    """Expire job objects a day after their records, and stale multipart uploads.

    Lifecycle rules count whole days and run about once a day, so the expiry is
    rounded up and one day added: objects never vanish while their job is readable.
    """
    days = math.ceil(result_ttl_seconds / 86_400) + 1
    return [
        {
            "ID": "pindai-expire-jobs",
            "Filter": {"Prefix": "jobs/"},
            "Status": "Enabled",
            "Expiration": {"Days": days},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
        },
        {
            # Direct uploads are copied under jobs/ when they become a job. What is
            # left here was never used, or was put again after its job was made.
            "ID": "pindai-expire-uploads",
            "Filter": {"Prefix": "uploads/"},
            "Status": "Enabled",
            "Expiration": {"Days": 1},
        },
    ]
