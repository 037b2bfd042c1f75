"""Creating a job once its document is in storage, shared by both upload paths."""

import time

import anyio.to_thread
from fastapi import Request
from fastapi.responses import JSONResponse
from loguru import logger
from redis.exceptions import RedisError

from api.idempotency import (
    CREATION_GRACE_SECONDS,
    REPLAYED_HEADER,
    claim_key,
    claim_or_replay,
    release_claim,
    released_on_error,
)
from api.options import JobOptions
from api.schemas import SubmitResponse
from api.services import Services
from core.errors import QueueUnavailable
from core.filetypes import PAGED_TYPES, FileType
from core.jobs import (
    JobRecord,
    JobStatus,
    format_timestamp,
    job_object_prefix,
    result_path,
    source_object_key,
    utc_now,
)
from core.metrics import JOBS_SUBMITTED, UPLOAD_BYTES
from core.queueing import (
    IMAGE_FUNCTION,
    PROBE_FUNCTION,
    Stage,
    enqueue_stages,
    page_timeout_seconds,
    probe_timeout_seconds,
)
from core.usage import count_usage
from storage import StorageError


def result_url(job_id: str) -> str:
    return result_path(job_id)


def new_job_record(
    services: Services,
    request: Request,
    *,
    job_id: str,
    file_type: FileType,
    filename: str | None,
    sha256: str,
    size_bytes: int,
    owner: str,
    options: JobOptions,
) -> JobRecord:
    """Return the record of a job about to be created from a stored document."""
    request.state.job_id = job_id
    return JobRecord(
        job_id=job_id,
        status=JobStatus.QUEUED,
        file_type=file_type,
        filename=filename,
        sha256=sha256,
        size_bytes=size_bytes,
        request_id=request.state.request_id,
        created_at=format_timestamp(utc_now()),
        owner=owner,
        callback_url=options.callback_url,
        tag=options.tag,
        options=options.ocr_options(),
        base_url=services.settings.PUBLIC_BASE_URL or str(request.base_url),
    )


async def accept_job(
    services: Services,
    record: JobRecord,
    *,
    upload_path: str,
    idempotency_key: str | None = None,
) -> JSONResponse:
    """Create the job for a stored source document and return the 202 response.

    When creating it fails, the claim on `idempotency_key` is released.
    """
    if idempotency_key is not None:
        record.idempotency_claim = claim_key(record.owner, idempotency_key)
    async with released_on_error(
        services.async_redis,
        owner=record.owner,
        key=idempotency_key,
        job_id=record.job_id,
    ):
        await create_job(
            services, record, source_object_key(record.job_id), upload_path
        )
    return submit_response(record.job_id, JobStatus.QUEUED)


async def replay_if_seen(
    services: Services,
    request: Request,
    *,
    owner: str,
    idempotency_key: str | None,
    content: str | None,
    options: JobOptions,
    job_id: str,
) -> JSONResponse | None:
    """Return the response for the job of an earlier identical request, if any.

    Otherwise claim the key for `job_id` (when a key was sent) and return None. Raises
    IdempotencyConflict for a key used with a different request.
    """
    if idempotency_key is None:
        return None
    while True:
        earlier = await claim_or_replay(
            services.async_redis,
            owner=owner,
            key=idempotency_key,
            content=content,
            options=options.fingerprint(),
            job_id=job_id,
            ttl_seconds=services.settings.RESULT_TTL_SECONDS,
        )
        if earlier is None:
            return None
        record = await services.reader.get(earlier.job_id)
        if (
            record is not None
            or time.time() - earlier.claimed_at < CREATION_GRACE_SECONDS
        ):
            break
        # The earlier job was deleted or expired, or its creation failed without
        # freeing the key: this request creates the job instead.
        await release_claim(
            services.async_redis,
            owner=owner,
            key=idempotency_key,
            job_id=earlier.job_id,
        )
    # The first request may still be creating its job: report it queued.
    status = record.status if record is not None else JobStatus.QUEUED
    logger.info("idempotent request replayed", job_id=earlier.job_id)
    request.state.job_id = earlier.job_id
    response = submit_response(earlier.job_id, status)
    response.headers[REPLAYED_HEADER] = "true"
    return response


def submit_response(job_id: str, status: JobStatus) -> JSONResponse:
    body = SubmitResponse(job_id=job_id, status=status, result_url=result_url(job_id))
    return JSONResponse(
        body.model_dump(mode="json"),
        status_code=202,
        headers={"Location": body.result_url},
    )


async def create_job(
    services: Services, record: JobRecord, object_key: str, upload_path: str
) -> None:
    """Store the job record, enqueue its first stage and count it, or delete the object.

    `upload_path` (multipart or direct) labels the uploaded bytes in the metrics.

    Raises QueueUnavailable when Redis fails; the stored object is then deleted, so a
    refused job leaves nothing behind.
    """
    try:
        await anyio.to_thread.run_sync(
            _create_and_enqueue, services, record, object_key, upload_path
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


def _create_and_enqueue(
    services: Services, record: JobRecord, object_key: str, upload_path: str
) -> None:
    """Store the job record, its first RQ job and its counts in one transaction."""
    settings = services.settings
    if record.file_type in PAGED_TYPES:
        function, timeout = PROBE_FUNCTION, probe_timeout_seconds(settings)
    else:
        function, timeout = IMAGE_FUNCTION, page_timeout_seconds(settings)
    stage = Stage(
        function=function,
        job_id=record.job_id,
        object_key=object_key,
        options=dict(record.options),
        request_id=record.request_id,
        timeout_seconds=timeout,
    )
    with services.redis.pipeline() as pipeline:
        # RQ switches a caller's pipeline to MULTI itself, which fails once commands
        # are buffered, so open the transaction before the first command.
        pipeline.multi()
        services.store.create(record, pipeline)
        enqueue_stages(services.redis, settings, [stage], pipeline=pipeline)
        JOBS_SUBMITTED.increment(pipeline, file_type=str(record.file_type))
        UPLOAD_BYTES.increment(pipeline, record.size_bytes, path=upload_path)
        count_usage(pipeline, record.owner, jobs=1, bytes=record.size_bytes)
        pipeline.execute()


async def delete_objects_quietly(services: Services, job_id: str) -> None:
    try:
        await services.storage.delete_prefix(job_object_prefix(job_id))
    except StorageError as error:
        logger.warning(
            "deleting objects of a rejected job failed", job_id=job_id, error=str(error)
        )
