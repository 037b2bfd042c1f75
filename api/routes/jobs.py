"""Routes over a caller's jobs: list them, cancel or delete one."""

import math
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse
from loguru import logger

from api.auth import CallerDep
from api.errors import error_responses
from api.results import build_result
from api.routes.ocr import JobIdPath, ServicesDep, load_record
from api.schemas import (
    Deliveries,
    DeliveryAttempt,
    JobList,
    JobResult,
    JobSummary,
)
from api.submission import result_url
from core.errors import ErrorCode, InvalidRequest
from core.jobs import TERMINAL_STATUSES, JobStatus, job_object_prefix
from core.webhooks import deliveries_key

router = APIRouter(prefix="/api/v1/ocr/jobs", tags=["jobs"])


@router.delete(
    "/{job_id}",
    response_model=JobResult,
    responses={
        204: {"description": "The finished or failed job and its data were deleted."},
        **error_responses(
            ErrorCode.JOB_NOT_FOUND,
            ErrorCode.STORAGE_UNAVAILABLE,
            ErrorCode.QUEUE_UNAVAILABLE,
        ),
    },
)
async def delete_job(
    job_id: JobIdPath, services: ServicesDep, caller: CallerDep
) -> Response:
    """Cancel a running job (200, now failed with `cancelled`), or delete an ended one.

    Either way the job's stored objects are removed. A cancelled job stays readable
    until deleted or expired; a deleted one is gone (404).
    """
    record = await load_record(services, job_id, caller)
    running = record.status not in TERMINAL_STATUSES
    if running:
        await anyio.to_thread.run_sync(services.store.cancel, job_id)
    else:
        await anyio.to_thread.run_sync(services.store.delete, job_id)
    deleted = await services.storage.delete_prefix(job_object_prefix(job_id))

    logger.info(
        "job deleted" if not running else "job cancelled",
        job_id=job_id,
        objects_deleted=deleted,
    )
    if not running:
        return Response(status_code=204)
    record = await load_record(services, job_id, caller)
    outcomes = await services.reader.get_pages(job_id)
    result = await build_result(record, outcomes, services.storage)
    return JSONResponse(result.model_dump(mode="json"))


@router.get(
    "",
    response_model=JobList,
    responses=error_responses(ErrorCode.INVALID_REQUEST, ErrorCode.QUEUE_UNAVAILABLE),
)
async def list_jobs(
    services: ServicesDep,
    caller: CallerDep,
    status: Annotated[
        JobStatus | None, Query(description="Only jobs with this status.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Jobs per page.")] = 20,
    cursor: Annotated[
        str | None,
        Query(max_length=40, description="`next_cursor` of the previous page."),
    ] = None,
) -> JobList:
    """List the caller's jobs, newest first, for as long as their results are kept."""
    before = _parse_cursor(cursor)
    records, last = await services.reader.list_jobs(
        caller.name, limit=limit, before=before, status=status
    )
    return JobList(
        jobs=[JobSummary.from_record(r, result_url(r.job_id)) for r in records],
        next_cursor=None if last is None else repr(last),
    )


def _parse_cursor(cursor: str | None) -> float | None:
    if cursor is None:
        return None
    try:
        value = float(cursor)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise InvalidRequest(
            "Invalid request: query.cursor: use a next_cursor value from this route."
        )
    return value


@router.get(
    "/{job_id}/deliveries",
    response_model=Deliveries,
    responses=error_responses(ErrorCode.JOB_NOT_FOUND, ErrorCode.QUEUE_UNAVAILABLE),
)
async def list_deliveries(
    job_id: JobIdPath, services: ServicesDep, caller: CallerDep
) -> Deliveries:
    """List the webhook delivery attempts of a job, oldest first."""
    record = await load_record(services, job_id, caller)
    raw = await services.async_redis.lrange(deliveries_key(job_id), 0, -1)
    attempts = [DeliveryAttempt.model_validate_json(item) for item in raw]
    return Deliveries(
        job_id=job_id,
        callback_url=record.callback_url,
        state=_delivery_state(record.callback_url, attempts),
        attempts=attempts,
    )


def _delivery_state(callback_url: str | None, attempts: list[DeliveryAttempt]) -> str:
    if callback_url is None:
        return "none"
    if not attempts:
        return "pending"
    last = attempts[-1]
    if last.outcome == "failed" and last.next_attempt_at is not None:
        return "retrying"
    return last.outcome
