"""Creating a job once its document is in storage, shared by both upload paths."""

import anyio.to_thread
from fastapi.responses import JSONResponse
from loguru import logger
from redis.exceptions import RedisError

from api.schemas import SubmitResponse
from api.services import Services
from core.errors import QueueUnavailable
from core.filetypes import FileType
from core.jobs import (
    JobRecord,
    JobStatus,
    format_timestamp,
    job_object_prefix,
    source_object_key,
    utc_now,
)
from core.queueing import (
    IMAGE_FUNCTION,
    PROBE_FUNCTION,
    Stage,
    enqueue_stages,
    page_timeout_seconds,
    probe_timeout_seconds,
)
from storage import StorageError


def result_url(job_id: str) -> str:
    return f"/api/v1/ocr/result/{job_id}"


async def accept_job(
    services: Services,
    *,
    job_id: str,
    file_type: FileType,
    filename: str | None,
    sha256: str,
    size_bytes: int,
    request_id: str,
    owner: str,
) -> JSONResponse:
    """Create the job for a stored source document and return the 202 response."""
    record = JobRecord(
        job_id=job_id,
        status=JobStatus.QUEUED,
        file_type=file_type,
        filename=filename,
        sha256=sha256,
        size_bytes=size_bytes,
        request_id=request_id,
        created_at=format_timestamp(utc_now()),
        owner=owner,
    )
    await create_job(services, record, source_object_key(job_id))
    body = SubmitResponse(
        job_id=job_id, status=JobStatus.QUEUED, result_url=result_url(job_id)
    )
    return JSONResponse(
        body.model_dump(mode="json"),
        status_code=202,
        headers={"Location": body.result_url},
    )


async def create_job(services: Services, record: JobRecord, object_key: str) -> None:
    """Store the job record and enqueue its first stage, or delete the object.

    Raises QueueUnavailable when Redis fails; the stored object is then deleted, so a
    refused job leaves nothing behind.
    """
    try:
        await anyio.to_thread.run_sync(
            _create_and_enqueue, services, record, object_key
        )
    except RedisError as error:
        logger.warning("enqueue failed", job_id=record.job_id, error=str(error))
        await delete_objects_quietly(services, record.job_id)
        raise QueueUnavailable() from error
    logger.info(
        "job submitted",
        job_id=record.job_id,
        file_type=record.file_type,
        size_bytes=record.size_bytes,
    )


def _create_and_enqueue(services: Services, record: JobRecord, object_key: str) -> None:
    """Store the job record and its first RQ job in one Redis transaction."""
    settings = services.settings
    if record.file_type == FileType.PDF:
        function, timeout = PROBE_FUNCTION, probe_timeout_seconds(settings)
    else:
        function, timeout = IMAGE_FUNCTION, page_timeout_seconds(settings)
    stage = Stage(
        function=function,
        job_id=record.job_id,
        object_key=object_key,
        options={},
        request_id=record.request_id,
        timeout_seconds=timeout,
    )
    with services.redis.pipeline() as pipeline:
        # RQ switches a caller's pipeline to MULTI itself, which fails once commands
        # are buffered, so open the transaction before the first command.
        pipeline.multi()
        services.store.create(record, pipeline)
        enqueue_stages(services.redis, settings, [stage], pipeline=pipeline)
        pipeline.execute()


async def delete_objects_quietly(services: Services, job_id: str) -> None:
    try:
        await services.storage.delete_prefix(job_object_prefix(job_id))
    except StorageError as error:
        logger.warning(
            "deleting objects of a rejected job failed", job_id=job_id, error=str(error)
        )
