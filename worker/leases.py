"""Leases on running stages, so that work of a dead worker is found and run again.

A stage (an RQ job) holds a lease while it runs: an entry in one sorted set scored
by its expiry time, renewed by a heartbeat thread. A worker killed with SIGKILL stops
renewing, and any other worker's monitor claims the expired lease within
LEASE_SECONDS plus one monitor period. RQ's own clean-up of abandoned jobs runs only
every ten minutes, which is why pindai keeps its own.
"""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from loguru import logger
from redis import Redis
from redis.exceptions import RedisError

LEASES_KEY = "pindai:leases"


def take_lease(connection: Redis, rq_job_id: str, lease_seconds: int) -> None:
    """Start or renew the lease on `rq_job_id` for `lease_seconds`."""
    connection.zadd(LEASES_KEY, {rq_job_id: time.time() + lease_seconds})


@contextmanager
def hold_lease(connection: Redis, rq_job_id: str, lease_seconds: int) -> Iterator[None]:
    """Hold a lease on `rq_job_id` for the duration of the block."""
    take_lease(connection, rq_job_id, lease_seconds)
    stop = threading.Event()
    heartbeat = threading.Thread(
        target=_renew,
        args=(connection, rq_job_id, lease_seconds, stop),
        name=f"lease-{rq_job_id}",
        daemon=True,
    )
    heartbeat.start()
    try:
        yield
    finally:
        stop.set()
        heartbeat.join(timeout=5)
        release_lease(connection, rq_job_id)


def release_lease(connection: Redis, rq_job_id: str) -> bool:
    """Drop a lease; return True when this call removed it."""
    return bool(connection.zrem(LEASES_KEY, rq_job_id))


def claim_expired_leases(connection: Redis, limit: int = 100) -> list[str]:
    """Remove and return expired leases; each is returned to exactly one caller."""
    expired = connection.zrangebyscore(LEASES_KEY, "-inf", time.time(), 0, limit)
    return [item.decode() for item in expired if connection.zrem(LEASES_KEY, item)]


def _renew(
    connection: Redis, rq_job_id: str, lease_seconds: int, stop: threading.Event
) -> None:
    while not stop.wait(lease_seconds / 3):
        try:
            # XX: never re-create a lease that a monitor has already claimed.
            connection.zadd(
                LEASES_KEY, {rq_job_id: time.time() + lease_seconds}, xx=True
            )
        except RedisError as error:
            logger.warning(
                "lease renewal failed", rq_job_id=rq_job_id, error=str(error)
            )
