"""Queue depths and live workers, as readiness and the metrics report them."""

from redis.asyncio import Redis as AsyncRedis

from core.heartbeats import count_live_workers
from core.queueing import QUEUES, queue_key


async def read_workload(redis: AsyncRedis) -> tuple[int, dict[str, int]]:
    """Return the number of live workers and the length of each work queue."""
    workers = await count_live_workers(redis)
    queues = {}
    for name in QUEUES:
        queues[name] = await redis.llen(queue_key(name))
    return workers, queues
