"""Streaming reception of a multipart upload straight into object storage.

The body is parsed as it arrives (python-multipart's push parser), so the file is
never held whole in memory or spooled to disk. The file type is decided from the first
bytes, the size limit is enforced on the bytes actually received, and the SHA-256 is
computed on the way through. Any failure aborts the storage upload, so a rejected
request leaves no object behind.
"""

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from loguru import logger
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from core.errors import (
    EmptyFile,
    FileTooLarge,
    InvalidRequest,
    UnsupportedMediaType,
    UploadTimeout,
)
from core.filetypes import SNIFF_BYTES, FileType, sniff_file_type
from core.ids import sanitize_filename
from storage import AsyncObjectStorage, StorageError, Upload

FILE_FIELD = "file"
# Maximum size of a text field (an option) of the form.
MAX_TEXT_FIELD_BYTES = 4096
# Room for the boundaries and part headers around the file in a multipart body; a
# Content-Length above MAX_UPLOAD_BYTES plus this is rejected before reading.
MULTIPART_OVERHEAD_BYTES = 16 * 1024
_MAX_PART_HEADER_BYTES = 8 * 1024


@dataclass(frozen=True)
class ReceivedFile:
    file_type: FileType
    filename: str | None
    size_bytes: int
    sha256: str
    # The form's text fields, by name: the job's options, not yet validated.
    fields: dict[str, str]


def multipart_boundary(content_type: str | None) -> bytes:
    """Return the boundary of a multipart/form-data Content-Type header."""
    media_type, parameters = parse_options_header(content_type or "")
    if media_type != b"multipart/form-data":
        raise UnsupportedMediaType(
            "The request body must be multipart/form-data with the file in a "
            f"'{FILE_FIELD}' field."
        )
    boundary = parameters.get(b"boundary")
    if not boundary:
        raise InvalidRequest("The multipart Content-Type header has no boundary.")
    return boundary


def check_declared_length(content_length: str | None, max_bytes: int) -> None:
    """Reject a body whose declared length cannot fit a file within the limit."""
    if content_length is None:
        return
    try:
        declared = int(content_length)
    except ValueError as error:
        raise InvalidRequest("The Content-Length header is not a number.") from error
    if declared > max_bytes + MULTIPART_OVERHEAD_BYTES:
        raise FileTooLarge(_too_large_message(max_bytes))


def _too_large_message(max_bytes: int) -> str:
    return f"The file is larger than the limit of {max_bytes} bytes."


@dataclass
class _Part:
    headers: dict[str, bytes] = field(default_factory=dict)
    header_field: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)
    header_bytes: int = 0


class _UploadReceiver:
    """Consumes parser events and feeds the file part into a storage upload."""

    def __init__(
        self,
        storage: AsyncObjectStorage,
        key: str,
        max_bytes: int,
        text_fields: frozenset[str],
    ) -> None:
        self.storage = storage
        self.key = key
        self.max_bytes = max_bytes
        self.text_fields = text_fields
        self.fields: dict[str, str] = {}
        self.text_name: str | None = None
        self.text_value = bytearray()
        self.events: list[tuple[str, bytes]] = []
        self.part = _Part()
        self.in_file = False
        self.seen_file = False
        self.ended = False
        self.head = bytearray()
        self.file_type: FileType | None = None
        self.filename: str | None = None
        self.size = 0
        self.digest = hashlib.sha256()
        self.upload: Upload | None = None

    def callbacks(self) -> dict:
        def event(name: str):
            def record(data: bytes = b"", start: int = 0, end: int = 0) -> None:
                self.events.append((name, bytes(data[start:end])))

            return record

        names = (
            "part_begin",
            "header_field",
            "header_value",
            "header_end",
            "headers_finished",
            "part_data",
            "part_end",
            "end",
        )
        return {f"on_{name}": event(name) for name in names}

    async def process_events(self) -> None:
        events, self.events = self.events, []
        for name, data in events:
            await self._handle(name, data)

    async def _handle(self, name: str, data: bytes) -> None:
        part = self.part
        if name == "part_begin":
            self.part = _Part()
        elif name in ("header_field", "header_value"):
            part.header_bytes += len(data)
            if part.header_bytes > _MAX_PART_HEADER_BYTES:
                raise InvalidRequest("A multipart part has oversized headers.")
            target = part.header_field if name == "header_field" else part.header_value
            target.extend(data)
        elif name == "header_end":
            part.headers[part.header_field.decode("latin-1").lower()] = bytes(
                part.header_value
            )
            part.header_field.clear()
            part.header_value.clear()
        elif name == "headers_finished":
            self._start_part()
        elif name == "part_data" and self.in_file:
            await self._receive_file_bytes(data)
        elif name == "part_data" and self.text_name is not None:
            self._receive_text(data)
        elif name == "part_end" and self.in_file:
            await self._end_file()
        elif name == "part_end" and self.text_name is not None:
            self._end_text()
        elif name == "end":
            self.ended = True

    def _start_part(self) -> None:
        disposition = self.part.headers.get("content-disposition", b"")
        _, parameters = parse_options_header(disposition)
        field_name = parameters.get(b"name", b"").decode("utf-8", errors="replace")
        if field_name in self.text_fields:
            if field_name in self.fields:
                raise InvalidRequest(
                    f"The form has more than one '{field_name}' field."
                )
            self.text_name = field_name
            return
        if field_name != FILE_FIELD:
            accepted = ", ".join(sorted({FILE_FIELD, *self.text_fields}))
            raise InvalidRequest(
                f"Unknown form field '{field_name[:64]}'; the fields are {accepted}."
            )
        if self.seen_file:
            raise InvalidRequest(f"The form has more than one '{FILE_FIELD}' field.")
        self.seen_file = True
        self.in_file = True
        raw_name = parameters.get(b"filename")
        if raw_name is not None:
            self.filename = sanitize_filename(
                raw_name.decode("utf-8", errors="replace")
            )

    def _receive_text(self, data: bytes) -> None:
        self.text_value.extend(data)
        if len(self.text_value) > MAX_TEXT_FIELD_BYTES:
            raise InvalidRequest(
                f"The form field '{self.text_name}' is longer than "
                f"{MAX_TEXT_FIELD_BYTES} bytes."
            )

    def _end_text(self) -> None:
        try:
            value = self.text_value.decode("utf-8")
        except UnicodeDecodeError as error:
            raise InvalidRequest(
                f"The form field '{self.text_name}' is not UTF-8 text."
            ) from error
        self.fields[self.text_name] = value
        self.text_name = None
        self.text_value.clear()

    async def _receive_file_bytes(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.max_bytes:
            raise FileTooLarge(_too_large_message(self.max_bytes))
        self.digest.update(data)
        if self.upload is None:
            self.head.extend(data)
            if len(self.head) < SNIFF_BYTES:
                return
            await self._open_upload()
            data, self.head = bytes(self.head), bytearray()
        await self.upload.write(data)

    async def _open_upload(self) -> None:
        self.file_type = sniff_file_type(bytes(self.head))
        if self.file_type is None:
            raise UnsupportedMediaType(
                "The file is not a PNG, JPEG, TIFF, WebP or PDF (judged by its first "
                "bytes, not its name or Content-Type)."
            )
        self.upload = await self.storage.open_upload(self.key)

    async def _end_file(self) -> None:
        self.in_file = False
        if self.size == 0:
            raise EmptyFile()
        if self.upload is None:
            await self._open_upload()
            await self.upload.write(bytes(self.head))
            self.head.clear()


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int
    # The whole body must arrive within total_s, with no pause longer than idle_s.
    total_s: float
    idle_s: float


async def body_chunks(request: Request, limits: UploadLimits) -> AsyncIterator[bytes]:
    """Yield the body's chunks, raising UploadTimeout on a stall or a slow body."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limits.total_s
    stream = request.stream()
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise UploadTimeout(
                f"The upload took longer than {limits.total_s:g} seconds."
            )
        try:
            async with asyncio.timeout(min(limits.idle_s, remaining)):
                chunk = await anext(stream)
        except StopAsyncIteration:
            return
        except TimeoutError as error:
            raise UploadTimeout(
                f"The upload stalled or took longer than {limits.total_s:g} seconds."
            ) from error
        yield chunk


async def receive_upload(
    request: Request,
    storage: AsyncObjectStorage,
    key: str,
    limits: UploadLimits,
    *,
    text_fields: frozenset[str] = frozenset(),
    check_fields: Callable[[dict[str, str]], Awaitable[None]] | None = None,
) -> ReceivedFile:
    """Stream the request's file field into `key` and return what was received.

    Text fields named in `text_fields` may come before or after the file. The
    `check_fields` coroutine sees them once the body has ended and before the object
    is committed, so a rejected option leaves nothing stored either.

    Raises FileTooLarge, UnsupportedMediaType, EmptyFile, InvalidRequest or
    UploadTimeout, or what `check_fields` raises; in every such case nothing is left
    in storage.
    """
    max_bytes = limits.max_bytes
    boundary = multipart_boundary(request.headers.get("content-type"))
    receiver = _UploadReceiver(storage, key, max_bytes, text_fields)
    try:
        parser = MultipartParser(boundary, receiver.callbacks())
    except FormParserError as error:
        raise InvalidRequest(f"The multipart boundary is invalid: {error}") from error
    committed = False
    try:
        async for chunk in body_chunks(request, limits):
            parser.write(chunk)
            await receiver.process_events()
            if receiver.ended:
                break
        parser.finalize()
        await receiver.process_events()
        if not receiver.seen_file:
            raise InvalidRequest(f"The form has no '{FILE_FIELD}' field.")
        if not receiver.ended or receiver.in_file or receiver.text_name:
            raise InvalidRequest(
                "The multipart body ended before its closing boundary."
            )
        if check_fields is not None:
            await check_fields(receiver.fields)
        await receiver.upload.commit()
        committed = True
    except FormParserError as error:
        raise InvalidRequest("The multipart body is malformed.") from error
    except ClientDisconnect as error:
        raise InvalidRequest("The client disconnected during the upload.") from error
    finally:
        if not committed and receiver.upload is not None:
            await _abort(receiver.upload, key)

    return ReceivedFile(
        file_type=receiver.file_type,
        filename=receiver.filename,
        size_bytes=receiver.size,
        sha256=receiver.digest.hexdigest(),
        fields=receiver.fields,
    )


async def _abort(upload: Upload, key: str) -> None:
    # A failed abort must not hide the error that caused it; the object was never
    # committed, and S3 removes incomplete multipart uploads by lifecycle rule.
    try:
        await upload.abort()
    except StorageError as error:
        logger.warning("aborting a rejected upload failed", key=key, error=str(error))
