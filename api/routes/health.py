"""Liveness and readiness probes."""

import asyncio

from fastapi import APIRouter
from loguru import logger
from redis.exceptions import RedisError

from api.errors import error_responses
from api.routes.ocr import ServicesDep
from api.schemas import HealthStatus, Readiness
from api.workload import read_workload
from core.errors import ErrorCode, QueueUnavailable, StorageUnavailable
from storage import StorageError

router = APIRouter(prefix="/api/v1/health", tags=["health"])

# A readiness probe must respond well within a platform's probe timeout.
CHECK_TIMEOUT_SECONDS = 2.0


@router.get("", response_model=HealthStatus)
async def read_liveness() -> HealthStatus:
    """Report that the process serves requests; calls no dependency."""
    return HealthStatus(status="ok")


@router.get(
    "/ready",
    response_model=Readiness,
    responses=error_responses(
        ErrorCode.QUEUE_UNAVAILABLE, ErrorCode.STORAGE_UNAVAILABLE
    ),
)
async def read_readiness(services: ServicesDep) -> Readiness:
    """Check that Redis and storage respond; a 503 names the one that does not."""
    try:
        await asyncio.wait_for(services.async_redis.ping(), CHECK_TIMEOUT_SECONDS)
    except (TimeoutError, RedisError) as error:
        raise QueueUnavailable(
            f"Redis is not ready: {type(error).__name__}."
        ) from error
    try:
        await asyncio.wait_for(services.storage.check(), CHECK_TIMEOUT_SECONDS)
    except (TimeoutError, StorageError) as error:
        # The detail (paths, bucket names, credentials errors) goes to the log only.
        logger.warning("storage not ready", error=str(error) or "timed out")
        raise StorageUnavailable("Object storage is not ready.") from error
    # Reported, not required: the API accepts jobs while no worker runs.
    try:
        workers, queues = await read_workload(services.async_redis)
    except RedisError as error:
        raise QueueUnavailable(
            f"Redis is not ready: {type(error).__name__}."
        ) from error
    return Readiness(status="ok", workers=workers, queues=queues)
