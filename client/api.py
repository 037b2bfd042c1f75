"""A synchronous HTTP client of the pindai API.

Every non-2xx response from the API becomes an ApiError carrying the stable error
`code` of the API's error body. Responses 429 and 503 are retried a few times after
their Retry-After delay, since the API sends both for conditions that pass.

The API key goes only to the API. Presigned upload URLs are sent with their own
headers through a separate connection pool, and no error message contains them.
"""

import email.utils
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, BinaryIO

import httpx

OCR_PREFIX = "/api/v1/ocr"
READINESS_PATH = "/api/v1/health/ready"
NOT_SUPPORTED = "not_supported"
TERMINAL_STATUSES = frozenset({"finished", "failed"})

RETRY_STATUSES = frozenset({429, 503})
MAX_ATTEMPTS = 4
DEFAULT_RETRY_AFTER_SECONDS = 2.0
# A Retry-After longer than this is cut short, so a misconfigured server cannot
# stall the client for hours.
MAX_RETRY_AFTER_SECONDS = 60.0
CHUNK_BYTES = 64 * 1024

ProgressCallback = Callable[[int], None]
RetryCallback = Callable[[int, float], None]


class ClientError(Exception):
    """Base of the errors this client raises. Their messages are safe to show."""


class ApiError(ClientError):
    """The API returned an error status, usually with its JSON error body."""

    def __init__(
        self,
        status: int,
        code: str | None,
        message: str,
        request_id: str | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        super().__init__(f"{code or f'HTTP {status}'}: {message}")


class ServerUnreachable(ClientError):
    """No response arrived: the connection failed or timed out."""


class StorageUploadFailed(ClientError):
    """Object storage rejected the PUT to a presigned URL."""

    def __init__(self, status: int, code: str | None) -> None:
        self.status = status
        self.code = code
        detail = f" ({code})" if code else ""
        super().__init__(
            f"Object storage rejected the direct upload with HTTP {status}{detail}."
        )


class UploadRoute(StrEnum):
    """The route a file's bytes took to the server."""

    PRESIGNED = "presigned"
    MULTIPART = "multipart"


@dataclass(frozen=True)
class UploadTicket:
    """A direct upload slot: PUT the file to `url` with exactly `headers`."""

    upload_id: str
    url: str = field(repr=False)
    method: str
    headers: dict[str, str] = field(repr=False)
    expires_at: str


@dataclass(frozen=True)
class Submission:
    """A job the API accepted, and the route its file took."""

    job_id: str
    status: str
    route: UploadRoute


@dataclass(frozen=True)
class JobResult:
    """The parts of a result body that a client acts on, plus the whole body."""

    job_id: str
    status: str
    page_count: int | None
    pages_done: int
    partial: bool
    error_code: str | None
    error_message: str | None
    failed_pages: tuple[int, ...]
    body: dict[str, Any] = field(repr=False)

    @property
    def ended(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> "JobResult":
        error = body.get("error") or {}
        pages = body.get("pages") or []
        return cls(
            job_id=body["job_id"],
            status=body["status"],
            page_count=body.get("page_count"),
            pages_done=body.get("pages_done", 0),
            partial=bool(body.get("partial")),
            error_code=error.get("code"),
            error_message=error.get("message"),
            failed_pages=tuple(
                page["page"] for page in pages if page.get("state") == "failed"
            ),
            body=body,
        )


class ProgressReader:
    """A binary file that reports how many bytes have been read from it.

    httpx reads a multipart file field in chunks and rewinds it before sending, so
    the position reported is the count of bytes handed to the connection.
    """

    def __init__(self, file: BinaryIO, on_progress: ProgressCallback) -> None:
        self._file = file
        self._on_progress = on_progress

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(size)
        self._on_progress(self._file.tell())
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        position = self._file.seek(offset, whence)
        self._on_progress(position)
        return position

    def tell(self) -> int:
        return self._file.tell()

    def fileno(self) -> int:
        """Expose the descriptor, so httpx sizes the body and sends Content-Length."""
        return self._file.fileno()


class PindaiClient:
    """A client of the pindai API, with separate connection pools for object storage."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        on_retry: RetryCallback | None = None,
    ) -> None:
        headers = {"User-Agent": "pindai-cli"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._on_retry = on_retry
        self._api = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout_s
        )
        self._storage = httpx.Client(timeout=timeout_s)
        # None until the server has been asked whether it issues presigned URLs.
        self._presigned_offered: bool | None = None

    def __enter__(self) -> "PindaiClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._api.close()
        self._storage.close()

    # Submitting

    def upload_document(
        self,
        path: Path,
        *,
        on_progress: ProgressCallback,
        idempotency_key: str | None = None,
    ) -> Submission:
        """Upload a file and create its job, by presigned URL when the server offers it.

        A server on local storage rejects presigned uploads with `not_supported`.
        The file then goes through the API as multipart, and later calls skip the
        presigned attempt. With `idempotency_key`, running the same upload again
        returns the first job on either route.
        """
        size_bytes = path.stat().st_size
        ticket = None
        if self._presigned_offered is not False:
            try:
                ticket = self.create_upload(path.name, size_bytes)
                self._presigned_offered = True
            except ApiError as error:
                if error.code != NOT_SUPPORTED:
                    raise
                self._presigned_offered = False

        with path.open("rb") as file:
            if ticket is None:
                body = self.submit_file(
                    file,
                    path.name,
                    on_progress=on_progress,
                    idempotency_key=idempotency_key,
                )
                route = UploadRoute.MULTIPART
            else:
                self.put_upload(ticket, file, size_bytes, on_progress=on_progress)
                body = self.create_job(
                    ticket.upload_id, idempotency_key=idempotency_key
                )
                route = UploadRoute.PRESIGNED
        return Submission(job_id=body["job_id"], status=body["status"], route=route)

    def create_upload(self, filename: str, size_bytes: int) -> UploadTicket:
        """Request a presigned upload URL; raise ApiError `not_supported` if none."""
        details: dict[str, Any] = {"filename": filename}
        # The API requires a positive size. An empty file is uploaded anyway, so that
        # the API rejects it with `empty_file`.
        if size_bytes > 0:
            details["size_bytes"] = size_bytes
        body = self._call_api("POST", f"{OCR_PREFIX}/uploads", json=details)
        return UploadTicket(
            upload_id=body["upload_id"],
            url=body["url"],
            method=body["method"],
            headers=dict(body["headers"]),
            expires_at=body["expires_at"],
        )

    def put_upload(
        self,
        ticket: UploadTicket,
        file: BinaryIO,
        size_bytes: int,
        *,
        on_progress: ProgressCallback,
    ) -> None:
        """Stream `file` to the ticket's URL with the ticket's headers."""
        # S3 rejects a chunked PUT without a length, so the length is always declared.
        headers = {**ticket.headers, "Content-Length": str(size_bytes)}

        def build() -> httpx.Request:
            file.seek(0)
            on_progress(0)
            return self._storage.build_request(
                ticket.method,
                ticket.url,
                content=_read_chunks(file, on_progress),
                headers=headers,
            )

        response = self._send(self._storage, build, target="object storage")
        if response.is_success:
            return
        # S3 error bodies are XML with the reason in <Code>.
        match = re.search(r"<Code>([^<]{1,100})</Code>", response.text)
        code = match.group(1) if match else None
        raise StorageUploadFailed(response.status_code, code)

    def create_job(
        self, upload_id: str, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Turn a finished direct upload into a job and return the 202 body."""
        return self._call_api(
            "POST",
            f"{OCR_PREFIX}/jobs",
            json={"upload_id": upload_id},
            headers=_idempotency_headers(idempotency_key),
        )

    def submit_file(
        self,
        file: BinaryIO,
        filename: str,
        *,
        on_progress: ProgressCallback,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Stream `file` as multipart/form-data and return the 202 body."""
        reader = ProgressReader(file, on_progress)
        return self._call_api(
            "POST",
            f"{OCR_PREFIX}/submit",
            files={"file": (filename, reader, "application/octet-stream")},
            headers=_idempotency_headers(idempotency_key),
        )

    # Reading

    def read_result(self, job_id: str, *, wait_s: float = 0) -> JobResult:
        """Read a job's result, waiting up to `wait_s` on the server for its end."""
        body = self._call_api(
            "GET",
            f"{OCR_PREFIX}/result/{job_id}",
            params={"wait": f"{wait_s:g}"} if wait_s > 0 else None,
            timeout=self.timeout_s + wait_s,
        )
        return JobResult.from_body(body)

    def download_text(self, job_id: str, sink: BinaryIO) -> int:
        """Stream a job's text/plain text into `sink` and return the bytes written."""

        def build() -> httpx.Request:
            return self._api.build_request("GET", f"{OCR_PREFIX}/result/{job_id}/text")

        response = self._send(self._api, build, target="the pindai API", stream=True)
        written = 0
        try:
            if not response.is_success:
                response.read()
                raise _api_error(response)
            for chunk in response.iter_bytes():
                sink.write(chunk)
                written += len(chunk)
        except httpx.TransportError as error:
            raise ServerUnreachable(
                f"The connection to the pindai API at {self.base_url} failed while "
                f"reading the text of job {job_id}: {_describe(error)}"
            ) from error
        finally:
            response.close()
        return written

    def read_readiness(self) -> dict[str, Any]:
        """Return the readiness body, or raise ApiError when the API is not ready.

        A 503 is not retried, because a probe reports the state it finds.
        """
        return self._call_api("GET", READINESS_PATH, retry=False)

    # Transport

    def _call_api(
        self, method: str, path: str, *, retry: bool = True, **options: Any
    ) -> dict[str, Any]:
        def build() -> httpx.Request:
            return self._api.build_request(method, path, **options)

        response = self._send(self._api, build, target="the pindai API", retry=retry)
        if not response.is_success:
            raise _api_error(response)
        return response.json()

    def _send(
        self,
        http: httpx.Client,
        build: Callable[[], httpx.Request],
        *,
        target: str,
        retry: bool = True,
        stream: bool = False,
    ) -> httpx.Response:
        """Send the request that `build` makes, again after Retry-After on 429/503."""
        attempts_left = MAX_ATTEMPTS if retry else 1
        while True:
            attempts_left -= 1
            try:
                response = http.send(build(), stream=stream)
            except httpx.TransportError as error:
                where = f" at {self.base_url}" if http is self._api else ""
                raise ServerUnreachable(
                    f"Cannot reach {target}{where}: {_describe(error)}"
                ) from error
            if response.status_code not in RETRY_STATUSES or attempts_left == 0:
                return response
            delay_s = retry_after_seconds(response)
            response.close()
            if self._on_retry is not None:
                self._on_retry(response.status_code, delay_s)
            time.sleep(delay_s)


def retry_after_seconds(response: httpx.Response) -> float:
    """Return the Retry-After delay in seconds, given as seconds or an HTTP date."""
    value = response.headers.get("retry-after")
    if value is None:
        return DEFAULT_RETRY_AFTER_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return DEFAULT_RETRY_AFTER_SECONDS
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def _api_error(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = body.get("error") if isinstance(body, dict) else None
    if isinstance(detail, dict) and detail.get("code"):
        return ApiError(
            response.status_code,
            str(detail["code"]),
            str(detail.get("message", "")),
            detail.get("request_id"),
        )
    return ApiError(
        response.status_code,
        None,
        f"The server returned HTTP {response.status_code} without a pindai error "
        "body; check that the URL points to the pindai API.",
    )


def _read_chunks(file: BinaryIO, on_progress: ProgressCallback) -> Iterator[bytes]:
    while chunk := file.read(CHUNK_BYTES):
        yield chunk
        on_progress(file.tell())


def _idempotency_headers(key: str | None) -> dict[str, str] | None:
    return {"Idempotency-Key": key} if key else None


def _describe(error: httpx.TransportError) -> str:
    # httpx timeouts often have an empty message.
    return str(error) or type(error).__name__
