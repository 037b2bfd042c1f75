"""Routes that accept documents and return their OCR results."""

import asyncio
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from loguru import logger
from redis.exceptions import RedisError

from api.errors import RETRY_AFTER_SECONDS, error_responses
from api.schemas import JobError, JobResult, PageResult, SubmitResponse
from api.services import Services, get_services
from api.upload import FILE_FIELD, check_declared_length, receive_upload
from core.errors import (
    ErrorCode,
    JobNotFound,
    QueueUnavailable,
    StorageUnavailable,
)
from core.filetypes import FileType
from core.ids import is_job_id, new_job_id
from core.jobs import (
    JobRecord,
    JobStatus,
    format_timestamp,
    job_object_prefix,
    page_text_object_key,
    source_object_key,
    utc_now,
)
from core.queueing import (
    OCR_FUNCTION,
    PROBE_FUNCTION,
    enqueue_stage,
    ocr_timeout_seconds,
    probe_timeout_seconds,
)
from storage import ObjectNotFound, StorageError

router = APIRouter(prefix="/api/v1/ocr", tags=["ocr"])
ServicesDep = Annotated[Services, Depends(get_services)]

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
                        "description": "A PNG, JPEG or PDF file; the type is read "
                        "from its first bytes.",
                    }
                },
                "additionalProperties": False,
            }
        }
    },
}


def result_url(job_id: str) -> str:
    return f"{router.prefix}/result/{job_id}"


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
        ErrorCode.STORAGE_UNAVAILABLE,
        ErrorCode.QUEUE_UNAVAILABLE,
    ),
)
async def submit_document(request: Request, services: ServicesDep) -> JSONResponse:
    """Upload a document and enqueue its OCR; poll `result_url` for the outcome."""
    settings = services.settings
    check_declared_length(
        request.headers.get("content-length"), settings.MAX_UPLOAD_BYTES
    )

    job_id = new_job_id()
    object_key = source_object_key(job_id)
    try:
        received = await receive_upload(
            request, services.storage, object_key, settings.MAX_UPLOAD_BYTES
        )
    except StorageError as error:
        logger.warning("upload to storage failed", job_id=job_id, error=str(error))
        raise StorageUnavailable() from error

    record = JobRecord(
        job_id=job_id,
        status=JobStatus.QUEUED,
        file_type=received.file_type,
        filename=received.filename,
        sha256=received.sha256,
        size_bytes=received.size_bytes,
        request_id=request.state.request_id,
        created_at=format_timestamp(utc_now()),
    )
    try:
        await anyio.to_thread.run_sync(
            _create_and_enqueue, services, record, object_key
        )
    except RedisError as error:
        logger.warning("enqueue failed", job_id=job_id, error=str(error))
        await _delete_objects_quietly(services, job_id)
        raise QueueUnavailable() from error

    logger.info(
        "job submitted",
        job_id=job_id,
        file_type=received.file_type,
        size_bytes=received.size_bytes,
    )
    body = SubmitResponse(
        job_id=job_id, status=JobStatus.QUEUED, result_url=result_url(job_id)
    )
    return JSONResponse(
        body.model_dump(mode="json"),
        status_code=202,
        headers={"Location": body.result_url},
    )


def _create_and_enqueue(services: Services, record: JobRecord, object_key: str) -> None:
    """Store the job record and its first RQ job in one Redis transaction."""
    settings = services.settings
    if record.file_type == FileType.PDF:
        function, timeout = PROBE_FUNCTION, probe_timeout_seconds(settings)
    else:
        function, timeout = OCR_FUNCTION, ocr_timeout_seconds(settings, page_count=1)
    with services.redis.pipeline() as pipeline:
        # RQ switches a caller's pipeline to MULTI itself, which fails once commands
        # are buffered, so open the transaction before the first command.
        pipeline.multi()
        services.store.create(record, pipeline)
        enqueue_stage(
            services.queue,
            settings,
            function=function,
            job_id=record.job_id,
            object_key=object_key,
            options={},
            request_id=record.request_id,
            timeout_seconds=timeout,
            pipeline=pipeline,
        )
        pipeline.execute()


async def _delete_objects_quietly(services: Services, job_id: str) -> None:
    try:
        await services.storage.delete_prefix(job_object_prefix(job_id))
    except StorageError as error:
        logger.warning(
            "deleting objects of a failed submit failed",
            job_id=job_id,
            error=str(error),
        )


@router.get(
    "/result/{job_id}",
    response_model=JobResult,
    responses=error_responses(
        ErrorCode.JOB_NOT_FOUND,
        ErrorCode.STORAGE_UNAVAILABLE,
        ErrorCode.QUEUE_UNAVAILABLE,
    ),
)
async def read_result(job_id: str, services: ServicesDep) -> JSONResponse:
    """Return a job's status; once finished, its text and per-page results."""
    if not is_job_id(job_id):
        raise JobNotFound()
    try:
        record = await services.reader.get(job_id)
        pages = await services.reader.get_pages(job_id) if record else []
    except RedisError as error:
        raise QueueUnavailable() from error
    if record is None:
        raise JobNotFound()

    result = JobResult.from_record(record)
    headers = {}
    if record.status == JobStatus.FINISHED:
        result.pages = await _read_pages(services, job_id, pages)
        result.text = "\n\n".join(page.text for page in result.pages if page.text)
    elif record.status == JobStatus.FAILED:
        result.error = JobError(
            code=record.error_code or ErrorCode.INTERNAL_ERROR,
            message=record.error_message or "",
        )
    else:
        headers["Retry-After"] = str(
            1 if record.status == JobStatus.STARTED else RETRY_AFTER_SECONDS
        )
    return JSONResponse(result.model_dump(mode="json"), headers=headers)


async def _read_pages(services: Services, job_id: str, outcomes) -> list[PageResult]:
    async def read_text(page: int) -> str:
        data = await services.storage.get_bytes(page_text_object_key(job_id, page))
        return data.decode("utf-8")

    try:
        texts = await asyncio.gather(
            *(
                read_text(outcome.page) if outcome.ok else _none()
                for outcome in outcomes
            )
        )
    except ObjectNotFound as error:
        # Text objects outlived by their job record: treat the job as expired.
        raise JobNotFound() from error
    except StorageError as error:
        raise StorageUnavailable() from error

    results = []
    for outcome, text in zip(outcomes, texts, strict=True):
        error = None
        if not outcome.ok:
            error = JobError(
                code=outcome.error_code, message=outcome.error_message or ""
            )
        results.append(PageResult(page=outcome.page, text=text, error=error))
    return results


async def _none() -> None:
    return None
