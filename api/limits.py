"""Per-caller limits kept in Redis, so they hold across API replicas.

Requests per minute use the `limits` library's moving window on Redis. Jobs queued or
started at once are counted in a sorted set per caller that the job store keeps
(core.jobs.active_jobs_key). Either limit refuses the request with 429 and a
Retry-After; nothing is accepted and parked.
"""

import math
import time
from typing import Protocol

from limits import RateLimitItemPerMinute
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import Redis as AsyncRedis

from core.errors import RateLimited
from core.jobs import active_jobs_key
from core.settings import Settings

_KEY_PREFIX = "pindai:limits"


class NamedCaller(Protocol):
    name: str


class Limits:
    """Requests per minute (moving window, `limits` on Redis) and active jobs."""

    def __init__(self, settings: Settings, redis: AsyncRedis) -> None:
        self.settings = settings
        self.redis = redis
        storage = RedisStorage(
            "async+" + settings.REDIS_URL,
            implementation="redispy",
            key_prefix=_KEY_PREFIX,
            socket_timeout=settings.REDIS_TIMEOUT_SECONDS,
        )
        self.limiter = MovingWindowRateLimiter(storage)
        self.per_minute = RateLimitItemPerMinute(max(settings.RATE_LIMIT_PER_MINUTE, 1))

    async def count_request(self, caller: NamedCaller) -> None:
        if self.settings.RATE_LIMIT_PER_MINUTE == 0:
            return
        if await self.limiter.hit(self.per_minute, caller.name):
            return
        stats = await self.limiter.get_window_stats(self.per_minute, caller.name)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise RateLimited(
            f"More than {self.settings.RATE_LIMIT_PER_MINUTE} requests in a minute "
            f"for {caller.name}.",
            retry_after,
        )

    async def check_active_jobs(self, caller: NamedCaller) -> None:
        """Refuse a new job while the caller has MAX_ACTIVE_JOBS queued or started."""
        limit = self.settings.MAX_ACTIVE_JOBS
        if limit == 0:
            return
        key = active_jobs_key(caller.name)
        # Jobs whose records expired without ending (a lost Redis write) age out.
        stale_before = time.time() - self.settings.RESULT_TTL_SECONDS
        await self.redis.zremrangebyscore(key, "-inf", stale_before)
        active = await self.redis.zcard(key)
        if active >= limit:
            raise RateLimited(
                f"{caller.name} has {active} jobs queued or started; the limit is "
                f"{limit}. Wait for one to end.",
                5,
            )
