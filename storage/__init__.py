"""Object storage: one interface, a local-directory backend and an S3 backend."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from core.settings import Settings
from storage.base import (
    AsyncObjectStorage,
    ObjectChanged,
    ObjectNotFound,
    ObjectStorage,
    PresignedUpload,
    PresignNotSupported,
    StorageError,
    Upload,
)

__all__ = [
    "AsyncObjectStorage",
    "ObjectChanged",
    "ObjectNotFound",
    "ObjectStorage",
    "PresignNotSupported",
    "PresignedUpload",
    "StorageError",
    "Upload",
    "create_storage",
    "open_async_storage",
]


def create_storage(settings: Settings) -> ObjectStorage:
    """Return the blocking backend that STORAGE_BACKEND names, for worker processes."""
    if settings.STORAGE_BACKEND == "s3":
        from storage.s3 import S3Storage

        return S3Storage(settings)
    from storage.local import LocalStorage

    return LocalStorage(settings.STORAGE_DIR)


@asynccontextmanager
async def open_async_storage(settings: Settings) -> AsyncIterator[AsyncObjectStorage]:
    """Yield the non-blocking backend that STORAGE_BACKEND names, for the API."""
    if settings.STORAGE_BACKEND == "s3":
        from storage.s3 import open_async_s3_storage

        async with open_async_s3_storage(settings) as storage:
            yield storage
        return
    from storage.local import AsyncLocalStorage

    yield AsyncLocalStorage(settings.STORAGE_DIR)
