"""Storage in a local directory: the default for one machine, with no extra service.

Objects are files under the root directory, named by their key. Each write goes to a
`.part` file beside the target and is renamed into place when complete, so a reader
never sees a half-written object.
"""

import contextlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import anyio.to_thread

from storage.base import (
    ObjectChanged,
    ObjectNotFound,
    ObjectStat,
    PresignedUpload,
    PresignNotSupported,
    StorageError,
)

_PART_SUFFIX = ".part"
STREAM_CHUNK_BYTES = 64 * 1024


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def path_for(self, key: str) -> Path:
        """Map a key to its file, refusing keys that would leave the root."""
        path = (self.root / key).resolve()
        if not key or not path.is_relative_to(self.root) or path == self.root:
            raise ValueError(f"invalid object key: {key!r}")
        return path

    def download(self, key: str, destination: Path) -> None:
        try:
            shutil.copyfile(self.path_for(key), destination)
        except FileNotFoundError as error:
            raise ObjectNotFound(key) from error
        except OSError as error:
            raise StorageError(f"reading {key} failed: {error}") from error

    def put_bytes(self, key: str, data: bytes) -> None:
        target = self.path_for(key)
        partial = self._partial_path(target)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            partial.write_bytes(data)
            os.replace(partial, target)
        except OSError as error:
            partial.unlink(missing_ok=True)
            raise StorageError(f"writing {key} failed: {error}") from error

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.path_for(key).read_bytes()
        except FileNotFoundError as error:
            raise ObjectNotFound(key) from error
        except OSError as error:
            raise StorageError(f"reading {key} failed: {error}") from error

    def exists(self, key: str) -> bool:
        return self.path_for(key).is_file()

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under `prefix`, a directory-like key prefix."""
        directory = self.path_for(prefix.rstrip("/"))
        if not directory.exists():
            return 0
        if directory.is_file():
            directory.unlink()
            return 1
        count = sum(1 for path in directory.rglob("*") if path.is_file())
        shutil.rmtree(directory, ignore_errors=True)
        return count

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".ready-{uuid.uuid4().hex}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as error:
            raise StorageError(f"{self.root} is not writable: {error}") from error

    @staticmethod
    def _partial_path(target: Path) -> Path:
        return target.with_name(f"{target.name}.{uuid.uuid4().hex}{_PART_SUFFIX}")


class _LocalUpload:
    def __init__(self, storage: LocalStorage, key: str) -> None:
        self._target = storage.path_for(key)
        self._partial = storage._partial_path(self._target)
        self._file = None

    async def _open(self) -> None:
        def open_partial():
            self._target.parent.mkdir(parents=True, exist_ok=True)
            return self._partial.open("wb")

        self._file = await anyio.to_thread.run_sync(open_partial)

    async def write(self, chunk: bytes) -> None:
        try:
            await anyio.to_thread.run_sync(self._file.write, chunk)
        except OSError as error:
            raise StorageError(
                f"writing {self._target.name} failed: {error}"
            ) from error

    async def commit(self) -> None:
        def close_and_rename() -> None:
            self._file.close()
            os.replace(self._partial, self._target)

        try:
            await anyio.to_thread.run_sync(close_and_rename)
        except OSError as error:
            raise StorageError(
                f"writing {self._target.name} failed: {error}"
            ) from error

    async def abort(self) -> None:
        def close_and_remove() -> None:
            if self._file is not None:
                self._file.close()
            self._partial.unlink(missing_ok=True)
            # The job's directory was made for this upload; drop it if it is empty.
            with contextlib.suppress(OSError):
                self._target.parent.rmdir()

        await anyio.to_thread.run_sync(close_and_remove)


class AsyncLocalStorage:
    """LocalStorage for the event loop: each file operation runs in a worker thread."""

    def __init__(self, root: Path) -> None:
        self.sync = LocalStorage(root)

    async def open_upload(self, key: str) -> _LocalUpload:
        upload = _LocalUpload(self.sync, key)
        try:
            await upload._open()
        except OSError as error:
            raise StorageError(f"creating {key} failed: {error}") from error
        return upload

    async def get_bytes(self, key: str) -> bytes:
        return await anyio.to_thread.run_sync(self.sync.get_bytes, key)

    async def iter_bytes(self, key: str) -> AsyncIterator[bytes]:
        path = self.sync.path_for(key)
        try:
            file = await anyio.to_thread.run_sync(path.open, "rb")
        except FileNotFoundError as error:
            raise ObjectNotFound(key) from error
        try:
            while chunk := await anyio.to_thread.run_sync(
                file.read, STREAM_CHUNK_BYTES
            ):
                yield chunk
        finally:
            file.close()

    async def delete_prefix(self, prefix: str) -> int:
        return await anyio.to_thread.run_sync(self.sync.delete_prefix, prefix)

    async def stat(self, key: str) -> ObjectStat:
        return await anyio.to_thread.run_sync(self._stat, key)

    def _stat(self, key: str) -> ObjectStat:
        try:
            info = self.sync.path_for(key).stat()
        except FileNotFoundError as error:
            raise ObjectNotFound(key) from error
        return ObjectStat(size=info.st_size, etag=f"{info.st_mtime_ns}-{info.st_size}")

    async def copy(self, source: str, destination: str, if_etag: str) -> None:
        def copy_file() -> None:
            if self._stat(source).etag != if_etag:
                raise ObjectChanged(source)
            target = self.sync.path_for(destination)
            partial = self.sync._partial_path(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.sync.path_for(source), partial)
            os.replace(partial, target)

        await anyio.to_thread.run_sync(copy_file)

    async def read_head(self, key: str, length: int) -> bytes:
        def read() -> bytes:
            try:
                with self.sync.path_for(key).open("rb") as file:
                    return file.read(length)
            except FileNotFoundError as error:
                raise ObjectNotFound(key) from error

        return await anyio.to_thread.run_sync(read)

    def presign_put(self, key: str, expires_s: int) -> PresignedUpload:
        raise PresignNotSupported("the local backend serves no upload URLs")

    async def check(self) -> None:
        await anyio.to_thread.run_sync(self.sync.check)
