"""Routes that accept documents and return their OCR results."""

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from loguru import logger

from api.auth import Caller, CallerDep
from api.errors import RETRY_AFTER_SECONDS, error_responses
from api.idempotency import IdempotencyKeyHeader, read_idempotency_key
from api.options import OPTION_FIELDS, JobOptions, check_options, options_from_form
from api.results import build_result, page_result, read_page_texts
from api.schemas import JobResult, PageResult, SubmitResponse
from api.services import Services, get_services
from api.submission import (
    accept_job,
    delete_objects_quietly,
    new_job_record,
    replay_if_seen,
)
from api.upload import (
    FILE_FIELD,
    UploadLimits,
    check_declared_length,
    receive_upload,
)
from core.errors import (
    ErrorCode,
    JobNotFound,
    OutputNotFound,
    PageNotFound,
    StorageUnavailable,
)
from core.filetypes import PAGED_TYPES
from core.ids import is_job_id, new_job_id
from core.jobs import (
    TERMINAL_STATUSES,
    JobRecord,
    JobStatus,
    events_channel,
    output_object_key,
    source_object_key,
    text_object_key,
)
from core.ocr_options import OUTPUT_MEDIA_TYPES, Output
from storage import ObjectNotFound, StorageError

router = APIRouter(prefix="/api/v1/ocr", tags=["ocr"])
ServicesDep = Annotated[Services, Depends(get_services)]
JobIdPath = Annotated[str, Path(description="The id returned by submit.")]

MAX_WAIT_SECONDS = 30
_OUTPUT_EXTENSIONS = {"words": "json", "hocr": "hocr", "pdf": "pdf"}

_MULTIPART_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": [FILE_FIELD],
                "properties": {
                    FILE_FIELD: {
                        "type": "string",
                        "format": "binary",
                        "description": "A PNG, JPEG, TIFF, WebP or PDF file; the "
                        "type is read from its first bytes.",
                    },
                    **JobOptions.model_json_schema()["properties"],
                },
                "additionalProperties": False,
            }
        }
    },
}


@router.post(
    "/submit",
    status_code=202,
    response_model=SubmitResponse,
    openapi_extra={"requestBody": _MULTIPART_BODY},
    responses=error_responses(
        ErrorCode.EMPTY_FILE,
        ErrorCode.FILE_TOO_LARGE,
        ErrorCode.UNSUPPORTED_MEDIA_TYPE,
        ErrorCode.INVALID_REQUEST,
        ErrorCode.UPLOAD_TIMEOUT,
        ErrorCode.CALLBACK_URL_REFUSED,
        ErrorCode.IDEMPOTENCY_CONFLICT,
        ErrorCode.STORAGE_UNAVAILABLE,
        ErrorCode.QUEUE_UNAVAILABLE,
    ),
)
async def submit_document(
    request: Request,
    services: ServicesDep,
    caller: CallerDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """Upload a document and enqueue its OCR; poll `result_url` for the outcome.

    Text fields next to `file` set the job's options. With an `Idempotency-Key`
    header, a retry of the same request returns the first request's job.
    """
    settings = services.settings
    idempotency_key = read_idempotency_key(request)
    await services.limits.check_active_jobs(caller)
    check_declared_length(
        request.headers.get("content-length"), settings.MAX_UPLOAD_BYTES
    )

    async def check_fields(fields: dict[str, str]) -> None:
        await check_options(options_from_form(fields), settings, services.async_redis)

    job_id = new_job_id()
    object_key = source_object_key(job_id)
    try:
        limits = UploadLimits(
            max_bytes=settings.MAX_UPLOAD_BYTES,
            total_s=settings.UPLOAD_TIMEOUT_SECONDS,
            idle_s=settings.UPLOAD_IDLE_SECONDS,
        )
        received = await receive_upload(
            request,
            services.storage,
            object_key,
            limits,
            text_fields=OPTION_FIELDS,
            check_fields=check_fields,
        )
    except StorageError as error:
        logger.warning("upload to storage failed", job_id=job_id, error=str(error))
        raise StorageUnavailable() from error
    options = options_from_form(received.fields)

    try:
        replay = await replay_if_seen(
            services,
            request,
            owner=caller.name,
            idempotency_key=idempotency_key,
            content=received.sha256,
            options=options,
            job_id=job_id,
        )
    except BaseException:
        await delete_objects_quietly(services, job_id)
        raise
    if replay is not None:
        await delete_objects_quietly(services, job_id)
        return replay

    record = new_job_record(
        services,
        request,
        job_id=job_id,
        file_type=received.file_type,
        filename=received.filename,
        sha256=received.sha256,
        size_bytes=received.size_bytes,
        owner=caller.name,
        options=options,
    )
    return await accept_job(
        services, record, upload_path="multipart", idempotency_key=idempotency_key
    )


async def load_record(services: Services, job_id: str, caller: Caller) -> JobRecord:
    """Return the caller's job, or raise JobNotFound.

    Unknown, malformed and other callers' ids all get the same response, so that no
    caller learns whether someone else's job exists.
    """
    if not is_job_id(job_id):
        raise JobNotFound()
    record = await services.reader.get(job_id)
    if record is None:
        raise JobNotFound()
    if caller.authenticated and record.owner != caller.name:
        raise JobNotFound()
    return record


async def wait_for_end(services: Services, job_id: str, seconds: float) -> None:
    """Return when the job ends or `seconds` pass, whichever is first."""
    pubsub = services.async_redis.pubsub()
    try:
        await pubsub.subscribe(events_channel(job_id))
        # The job may have ended between the caller's read and the subscription.
        record = await services.reader.get(job_id)
        if record is None or record.status in TERMINAL_STATUSES:
            return
        deadline = asyncio.get_running_loop().time() + seconds
        while (remaining := deadline - asyncio.get_running_loop().time()) > 0:
            message = await pubsub.get_message(
                ignore_subscribe_messages=True, timeout=remaining
            )
            if message is not None:
                return
    finally:
        await pubsub.aclose()


@router.get(
    "/result/{job_id}",
    response_model=JobResult,
    responses=error_responses(
        ErrorCode.JOB_NOT_FOUND,
        ErrorCode.INVALID_REQUEST,
        ErrorCode.STORAGE_UNAVAILABLE,
        ErrorCode.QUEUE_UNAVAILABLE,
    ),
)
async def read_result(
    job_id: JobIdPath,
    services: ServicesDep,
    caller: CallerDep,
    wait: Annotated[
        float,
        Query(
            ge=0,
            le=MAX_WAIT_SECONDS,
            description="Seconds to wait for the job to end before responding.",
        ),
    ] = 0,
) -> JSONResponse:
    """Return a job's status, every page's state, and its text once finished."""
    record = await load_record(services, job_id, caller)
    if wait > 0 and record.status not in TERMINAL_STATUSES:
        await wait_for_end(services, job_id, wait)
        record = await load_record(services, job_id, caller)
    outcomes = await services.reader.get_pages(job_id)

    result = await build_result(record, outcomes, services.storage)
    headers = {}
    if record.status not in TERMINAL_STATUSES:
        retry_after = 1 if record.status == JobStatus.STARTED else RETRY_AFTER_SECONDS
        headers["Retry-After"] = str(retry_after)
    return JSONResponse(result.model_dump(mode="json"), headers=headers)


@router.get(
    "/result/{job_id}/pages/{page}",
    response_model=PageResult,
    responses=error_responses(
        ErrorCode.JOB_NOT_FOUND,
        ErrorCode.PAGE_NOT_FOUND,
        ErrorCode.STORAGE_UNAVAILABLE,
        ErrorCode.QUEUE_UNAVAILABLE,
    ),
)
async def read_page(
    job_id: JobIdPath,
    page: Annotated[int, Path(ge=1)],
    services: ServicesDep,
    caller: CallerDep,
) -> PageResult:
    """Return one page: its state, text, error and processing time."""
    record = await load_record(services, job_id, caller)
    if record.page_count is None:
        pages = [1] if record.file_type not in PAGED_TYPES else []
    else:
        pages = record.pages_to_read()
    if page not in pages:
        described = record.page_numbers or f"{record.page_count or 'unknown'} page(s)"
        raise PageNotFound(f"The job reads {described}; it has no page {page}.")
    outcome = await services.reader.get_page(job_id, page)
    text = None
    # A failed job's texts are not served: a cancelled job's are deleted.
    if outcome is not None and outcome.ok and record.status != JobStatus.FAILED:
        text = (await read_page_texts(services.storage, job_id, [page]))[page]
    return page_result(page, outcome, text)


@router.get(
    "/result/{job_id}/text",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/plain": {}}, "description": "The document's text."},
        **error_responses(ErrorCode.JOB_NOT_FOUND, ErrorCode.STORAGE_UNAVAILABLE),
    },
)
async def read_text(
    job_id: JobIdPath, services: ServicesDep, caller: CallerDep
) -> StreamingResponse:
    """Stream the whole text as text/plain: pages joined by a blank line.

    While the job runs, this is the text of the pages done so far, in page order. A
    failed job has no text to serve, so the body is empty.
    """
    record = await load_record(services, job_id, caller)
    if record.status == JobStatus.FINISHED:
        chunks = _stream_object(services, text_object_key(job_id))
    elif record.status == JobStatus.FAILED:
        chunks = _stream_pages(services, job_id, [])
    else:
        outcomes = await services.reader.get_pages(job_id)
        done = [outcome.page for outcome in outcomes if outcome.ok]
        chunks = _stream_pages(services, job_id, done)
    first = await anext(chunks, b"")
    return StreamingResponse(
        _prepend(first, chunks),
        media_type="text/plain; charset=utf-8",
        headers={"X-Job-Status": record.status},
    )


async def _stream_object(services: Services, key: str) -> AsyncIterator[bytes]:
    try:
        async for chunk in services.storage.iter_bytes(key):
            yield chunk
    except ObjectNotFound as error:
        raise JobNotFound() from error
    except StorageError as error:
        raise StorageUnavailable() from error


async def _stream_pages(
    services: Services, job_id: str, pages: list[int]
) -> AsyncIterator[bytes]:
    for index, page in enumerate(pages):
        text = (await read_page_texts(services.storage, job_id, [page]))[page]
        yield (("\n\n" if index else "") + text).encode("utf-8")


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    # The first chunk is read before the response starts, so that a missing object
    # still becomes a proper error response rather than a cut-off 200.
    if first:
        yield first
    async for chunk in rest:
        yield chunk


@router.get(
    "/result/{job_id}/{output}",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {
                OUTPUT_MEDIA_TYPES[Output.WORDS]: {},
                OUTPUT_MEDIA_TYPES[Output.HOCR]: {},
                OUTPUT_MEDIA_TYPES[Output.PDF]: {},
            },
            "description": "The output, as asked for at submit.",
        },
        **error_responses(
            ErrorCode.JOB_NOT_FOUND,
            ErrorCode.OUTPUT_NOT_FOUND,
            ErrorCode.INVALID_REQUEST,
            ErrorCode.STORAGE_UNAVAILABLE,
        ),
    },
)
async def read_output(
    job_id: JobIdPath,
    output: Annotated[
        Literal["words", "hocr", "pdf"],
        Path(description="words (JSON), hocr (HTML) or pdf (searchable PDF)."),
    ],
    services: ServicesDep,
    caller: CallerDep,
) -> StreamingResponse:
    """Stream one output of a finished job: word boxes, hOCR or a searchable PDF."""
    record = await load_record(services, job_id, caller)
    if output not in record.options.get("outputs", []):
        raise OutputNotFound(
            f"The job was not asked for `{output}`; add it to `outputs` at submit."
        )
    if record.status != JobStatus.FINISHED:
        raise OutputNotFound(
            f"The job is {record.status}; outputs exist once it has finished."
        )
    chunks = _stream_object(services, output_object_key(job_id, output))
    first = await anext(chunks, b"")
    filename = f"{job_id}.{_OUTPUT_EXTENSIONS[output]}"
    return StreamingResponse(
        _prepend(first, chunks),
        media_type=OUTPUT_MEDIA_TYPES[Output(output)],
        headers={"Content-Disposition": f'inline; filename="{filename}"'},
    )
