"""The clients a running API holds, created in the app's lifespan."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import Request
from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from core.jobstore import AsyncJobReader, JobStore
from core.settings import Settings
from storage import AsyncObjectStorage, open_async_storage


@dataclass
class Services:
    settings: Settings
    # Blocking client for RQ, whose enqueue has no async form; used only from threads.
    redis: Redis
    async_redis: AsyncRedis
    storage: AsyncObjectStorage
    store: JobStore
    reader: AsyncJobReader


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
                store=JobStore(redis, settings.RESULT_TTL_SECONDS),
                reader=AsyncJobReader(async_redis),
            )
    finally:
        await async_redis.aclose()
        redis.close()


def get_services(request: Request) -> Services:
    return request.app.state.services
