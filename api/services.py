"""The clients a running API holds, created in the app's lifespan."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import Request
from loguru import logger
from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from api.keys import parse_api_keys
from api.limits import Limits
from core.jobstore import AsyncJobReader, JobStore
from core.settings import Settings
from storage import AsyncObjectStorage, StorageError, open_async_storage
from storage.s3 import job_lifecycle_rules


@dataclass
class Services:
    settings: Settings
    # Blocking client for RQ, whose enqueue has no async form; used only from threads.
    redis: Redis
    async_redis: AsyncRedis
    storage: AsyncObjectStorage
    store: JobStore
    reader: AsyncJobReader
    # API key names and SHA-256 digests; empty when the API runs open.
    api_keys: dict[str, bytes]
    limits: Limits


@asynccontextmanager
async def open_services(settings: Settings) -> AsyncIterator[Services]:
    timeout = settings.REDIS_TIMEOUT_SECONDS
    options = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    redis = Redis.from_url(settings.REDIS_URL, **options)
    async_redis = AsyncRedis.from_url(settings.REDIS_URL, **options)
    try:
        async with open_async_storage(settings) as storage:
            yield Services(
                settings=settings,
                redis=redis,
                async_redis=async_redis,
                storage=storage,
                store=JobStore(redis, settings),
                reader=AsyncJobReader(async_redis),
                api_keys=parse_api_keys(settings.API_KEYS),
                limits=Limits(settings, async_redis),
            )
    finally:
        await async_redis.aclose()
        redis.close()


def get_services(request: Request) -> Services:
    return request.app.state.services


async def prepare_storage(services: Services) -> None:
    """Check the bucket at start-up and merge pindai's lifecycle rule into it.

    Failures are logged, not raised: the API starts anyway and its readiness probe
    keeps reporting the storage problem until it is fixed.
    """
    settings = services.settings
    try:
        await services.storage.check()
    except StorageError as error:
        logger.error("object storage is not usable", error=str(error))
        return
    if settings.STORAGE_BACKEND != "s3" or not settings.S3_MANAGE_LIFECYCLE:
        return
    try:
        await services.storage.merge_lifecycle_rules(
            job_lifecycle_rules(settings.RESULT_TTL_SECONDS)
        )
    except StorageError as error:
        logger.warning(
            "could not set the bucket's lifecycle rule; set S3_MANAGE_LIFECYCLE=false "
            "and expire jobs/ objects with a rule of your own",
            error=str(error),
        )
