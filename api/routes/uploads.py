"""Direct uploads: a presigned URL into the bucket, then a job from the stored object.

A client holding a large file PUTs it straight to the bucket, so the bytes never pass
through the API. The upload id is also the future job's id. Once checked, the object
is copied inside the bucket to the job's source key, which no presigned URL names.
"""

import json
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse
from loguru import logger
from pydantic import BaseModel, ConfigDict, Field

from api.auth import Caller, CallerDep
from api.errors import error_responses
from api.idempotency import (
    IdempotencyKeyHeader,
    read_idempotency_key,
    released_on_error,
)
from api.options import JobOptions, check_options
from api.routes.ocr import ServicesDep
from api.schemas import SubmitResponse
from api.services import Services
from api.submission import accept_job, new_job_record, replay_if_seen
from core.errors import (
    EmptyFile,
    ErrorCode,
    FileTooLarge,
    NotSupported,
    PindaiError,
    UnsupportedMediaType,
    UploadNotFound,
)
from core.filetypes import SNIFF_BYTES, sniff_file_type
from core.ids import is_job_id, new_job_id, sanitize_filename
from core.jobs import (
    format_timestamp,
    source_object_key,
    upload_key,
    upload_object_key,
    upload_object_prefix,
    utc_now,
)
from storage import ObjectChanged, ObjectNotFound, PresignNotSupported, StorageError

uploads_router = APIRouter(prefix="/api/v1/ocr/uploads", tags=["uploads"])
jobs_router = APIRouter(prefix="/api/v1/ocr/jobs", tags=["jobs"])


class UploadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filename: str | None = Field(
        default=None, max_length=1024, description="Kept as metadata only."
    )
    size_bytes: int | None = Field(
        default=None, ge=1, description="If given, checked against the limit now."
    )


class UploadTicket(BaseModel):
    upload_id: str
    url: str
    method: str
    headers: dict[str, str]
    expires_at: str


class JobFromUpload(JobOptions):
    upload_id: str = Field(min_length=1, max_length=64)


@uploads_router.post(
    "",
    status_code=201,
    response_model=UploadTicket,
    responses=error_responses(
        ErrorCode.NOT_SUPPORTED,
        ErrorCode.FILE_TOO_LARGE,
        ErrorCode.INVALID_REQUEST,
        ErrorCode.QUEUE_UNAVAILABLE,
    ),
)
async def create_upload(
    services: ServicesDep,
    caller: CallerDep,
    details: Annotated[UploadRequest | None, Body()] = None,
) -> JSONResponse:
    """Hand out a short-lived URL to PUT one document straight into the bucket."""
    settings = services.settings
    details = details or UploadRequest()
    if (
        details.size_bytes is not None
        and details.size_bytes > settings.MAX_UPLOAD_BYTES
    ):
        raise FileTooLarge(
            f"The file is larger than the limit of {settings.MAX_UPLOAD_BYTES} bytes."
        )
    upload_id = new_job_id()
    try:
        ticket = services.storage.presign_put(
            upload_object_key(upload_id), settings.UPLOAD_URL_TTL_SECONDS
        )
    except PresignNotSupported as error:
        raise NotSupported(
            "Direct uploads need object storage: set STORAGE_BACKEND=s3 (and "
            "S3_PUBLIC_ENDPOINT_URL if clients reach the bucket at another address), "
            "or use POST /api/v1/ocr/submit."
        ) from error

    expires_at = utc_now() + timedelta(seconds=settings.UPLOAD_URL_TTL_SECONDS)
    metadata = {"filename": sanitize_filename(details.filename), "owner": caller.name}
    # The id stays usable a little longer than the URL, so that an upload that
    # started just before the URL expired can still become a job.
    await services.async_redis.set(
        upload_key(upload_id),
        json.dumps(metadata),
        ex=2 * settings.UPLOAD_URL_TTL_SECONDS,
    )
    logger.info("upload url issued", upload_id=upload_id)
    body = UploadTicket(
        upload_id=upload_id,
        url=ticket.url,
        method=ticket.method,
        headers=ticket.headers,
        expires_at=format_timestamp(expires_at),
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=201)


@jobs_router.post(
    "",
    status_code=202,
    response_model=SubmitResponse,
    responses=error_responses(
        ErrorCode.UPLOAD_NOT_FOUND,
        ErrorCode.FILE_TOO_LARGE,
        ErrorCode.EMPTY_FILE,
        ErrorCode.UNSUPPORTED_MEDIA_TYPE,
        ErrorCode.INVALID_REQUEST,
        ErrorCode.CALLBACK_URL_REFUSED,
        ErrorCode.IDEMPOTENCY_CONFLICT,
        ErrorCode.STORAGE_UNAVAILABLE,
        ErrorCode.QUEUE_UNAVAILABLE,
    ),
)
async def create_job_from_upload(
    body: JobFromUpload,
    request: Request,
    services: ServicesDep,
    caller: CallerDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """Turn a finished direct upload into a job; the response is as for submit.

    The other body fields set the job's options. With an `Idempotency-Key` header,
    a retry of the same request returns the first request's job, even though the
    upload id was used up by the first request.
    """
    upload_id = body.upload_id
    if not is_job_id(upload_id):
        raise UploadNotFound()
    idempotency_key = read_idempotency_key(request)
    options = JobOptions.model_validate(body.model_dump(exclude={"upload_id"}))
    content = None
    if idempotency_key is not None:
        content = await _uploaded_content(services, upload_id)
    replay = await replay_if_seen(
        services,
        request,
        owner=caller.name,
        idempotency_key=idempotency_key,
        content=content,
        options=options,
        job_id=upload_id,
    )
    if replay is not None:
        return replay
    async with released_on_error(
        services.async_redis,
        owner=caller.name,
        key=idempotency_key,
        job_id=upload_id,
    ):
        return await _create_job_from_upload(
            services, request, caller, upload_id, options, idempotency_key
        )


async def _uploaded_content(services: Services, upload_id: str) -> str | None:
    """Return the identity of an upload's object (ETag and size), None if absent.

    A presigned PUT stores a single-part object, whose ETag is the MD5 of its bytes,
    so the same file uploaded again under a new upload id has the same identity.
    """
    try:
        stored = await services.storage.stat(upload_object_key(upload_id))
    except ObjectNotFound:
        return None
    return f"{stored.etag}:{stored.size}"


async def _create_job_from_upload(
    services: Services,
    request: Request,
    caller: Caller,
    upload_id: str,
    options: JobOptions,
    idempotency_key: str | None,
) -> JSONResponse:
    settings = services.settings
    raw = await services.async_redis.get(upload_key(upload_id))
    if raw is None:
        raise UploadNotFound()
    metadata = json.loads(raw)
    if caller.authenticated and metadata.get("owner") != caller.name:
        raise UploadNotFound()
    await services.limits.check_active_jobs(caller)
    await check_options(options, settings, services.async_redis)

    object_key = upload_object_key(upload_id)
    try:
        checked = await services.storage.stat(object_key)
        size = checked.size
        # A ranged GET of an empty object fails (416), and there is nothing to read.
        head = (
            await services.storage.read_head(object_key, SNIFF_BYTES) if size else b""
        )
    except ObjectNotFound as error:
        raise UploadNotFound(
            "Nothing was uploaded for this id yet; PUT the file to its URL first."
        ) from error

    file_type = sniff_file_type(head)
    problem = None
    if size == 0:
        problem = EmptyFile()
    elif size > settings.MAX_UPLOAD_BYTES:
        problem = FileTooLarge(
            f"The file is larger than the limit of {settings.MAX_UPLOAD_BYTES} bytes."
        )
    elif file_type is None:
        problem = UnsupportedMediaType(
            "The file is not a PNG, JPEG, TIFF, WebP or PDF (judged by its first "
            "bytes)."
        )
    # Consume the id before anything else, so two concurrent calls make one job.
    consumed = await services.async_redis.delete(upload_key(upload_id))
    if not consumed:
        raise UploadNotFound()
    if problem is None:
        problem = await _take_checked_object(services, upload_id, checked.etag)
    await _delete_upload_quietly(services, upload_id)
    if problem is not None:
        raise problem

    # The API never reads a direct upload whole, so the worker that downloads it
    # computes its SHA-256.
    record = new_job_record(
        services,
        request,
        job_id=upload_id,
        file_type=file_type,
        filename=metadata.get("filename"),
        sha256="",
        size_bytes=size,
        owner=caller.name,
        options=options,
    )
    return await accept_job(
        services, record, upload_path="direct", idempotency_key=idempotency_key
    )


async def _take_checked_object(
    services: Services, upload_id: str, etag: str
) -> PindaiError | None:
    """Copy the checked upload to the job's source key, which no client can write.

    The presigned URL stays valid until it expires, so the client could replace the
    uploaded object after it was checked. The copy is made only if the object is
    still the one checked (same ETag), and the worker reads only the copy.
    """
    try:
        await services.storage.copy(
            upload_object_key(upload_id), source_object_key(upload_id), if_etag=etag
        )
    except ObjectChanged:
        return UploadNotFound(
            "The upload was replaced while it was checked; request a new upload URL."
        )
    return None


async def _delete_upload_quietly(services: Services, upload_id: str) -> None:
    try:
        await services.storage.delete_prefix(upload_object_prefix(upload_id))
    except StorageError as error:
        logger.warning(
            "deleting a direct upload failed", upload_id=upload_id, error=str(error)
        )
