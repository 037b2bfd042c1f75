"""Worker heartbeats: which workers are alive, as the API reports in readiness.

RQ's own registry keeps a worker for up to worker_ttl + 60 s (480 s by default) after
its last heartbeat, and an idle RQ worker writes one only every worker_ttl - 15 s. So
each pindai worker's monitor thread also writes its own heartbeat, every pass, to a
sorted set scored by time, and a worker counts as live while its heartbeat is recent.
"""

import time

from redis import Redis
from redis.asyncio import Redis as AsyncRedis

HEARTBEATS_KEY = "pindai:workers:heartbeats"
# Three missed monitor passes (every 10 s) mark a worker as gone.
LIVE_WITHIN_SECONDS = 30


def record_heartbeat(redis: Redis, worker_name: str) -> None:
    """Mark `worker_name` alive now and drop heartbeats of long-gone workers."""
    now = time.time()
    with redis.pipeline(transaction=False) as pipeline:
        pipeline.zadd(HEARTBEATS_KEY, {worker_name: now})
        pipeline.zremrangebyscore(
            HEARTBEATS_KEY, "-inf", now - 10 * LIVE_WITHIN_SECONDS
        )
        pipeline.execute()


def remove_heartbeat(redis: Redis, worker_name: str) -> None:
    """Forget a worker that stops cleanly, so it is not counted until it times out."""
    redis.zrem(HEARTBEATS_KEY, worker_name)


async def count_live_workers(redis: AsyncRedis) -> int:
    return await redis.zcount(HEARTBEATS_KEY, time.time() - LIVE_WITHIN_SECONDS, "+inf")
