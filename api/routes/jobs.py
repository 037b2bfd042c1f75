"""Routes that act on a job: cancel and delete."""

import anyio.to_thread
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from loguru import logger

from api.auth import CallerDep
from api.errors import error_responses
from api.results import build_result
from api.routes.ocr import JobIdPath, ServicesDep, load_record
from api.schemas import JobResult
from core.errors import ErrorCode
from core.jobs import TERMINAL_STATUSES, job_object_prefix

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
