"""The object-storage interface: async for the API, blocking for the workers."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class ObjectNotFound(Exception):
    """The key does not exist in the bucket or directory."""


class StorageError(Exception):
    """The backend failed or refused the request (network, credentials, bucket)."""


class ObjectChanged(Exception):
    """The object was replaced after it was checked."""


@dataclass(frozen=True)
class ObjectStat:
    size: int
    # Changes whenever the object is replaced (the S3 ETag).
    etag: str


class PresignNotSupported(Exception):
    """The backend cannot hand out URLs for direct uploads (the local backend)."""


@dataclass(frozen=True)
class PresignedUpload:
    url: str
    method: str
    headers: dict[str, str]


class ObjectStorage(Protocol):
    """Blocking access, for worker processes."""

    def download(self, key: str, destination: Path) -> None: ...

    def put_bytes(self, key: str, data: bytes) -> None: ...

    def get_bytes(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def delete_prefix(self, prefix: str) -> int: ...


class Upload(Protocol):
    """An object being written chunk by chunk; it becomes visible only on commit."""

    async def write(self, chunk: bytes) -> None: ...

    async def commit(self) -> None: ...

    async def abort(self) -> None: ...


class AsyncObjectStorage(Protocol):
    """Non-blocking access, for the API's event loop."""

    async def open_upload(self, key: str) -> Upload: ...

    async def get_bytes(self, key: str) -> bytes: ...

    def iter_bytes(self, key: str) -> AsyncIterator[bytes]:
        """Yield the object's bytes in chunks; raise ObjectNotFound before the first."""
        ...

    async def delete_prefix(self, prefix: str) -> int: ...

    async def stat(self, key: str) -> ObjectStat:
        """Return the object's size and version tag; raise ObjectNotFound if missing."""
        ...

    async def copy(self, source: str, destination: str, if_etag: str) -> None:
        """Copy `source` to `destination` if its tag is still `if_etag`.

        Raises ObjectChanged when the source was replaced since it was checked.
        """
        ...

    async def read_head(self, key: str, length: int) -> bytes:
        """Return the object's first `length` bytes (a ranged GET)."""
        ...

    def presign_put(self, key: str, expires_s: int) -> PresignedUpload:
        """Return a URL a client can PUT the object to; raise PresignNotSupported."""
        ...

    async def check(self) -> None:
        """Raise StorageError unless the backend responds and the bucket is usable."""
        ...
