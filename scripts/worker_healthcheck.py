"""Exit 0 if this container's RQ worker is registered in Redis, otherwise 1.

The HEALTHCHECK of Dockerfile.worker runs it. The worker counts as healthy when Redis
at REDIS_URL responds and lists a worker whose hostname is this host's name and whose
last heartbeat is at most --max-heartbeat-age seconds old. Each container has a
hostname of its own, so in a container only the local worker matches.
"""

import argparse
import os
import socket
import sys
from datetime import UTC, datetime

from redis import Redis
from redis.exceptions import RedisError
from rq import Worker
from rq.defaults import DEFAULT_WORKER_TTL

# The same default as the Procfile's `worker` command.
DEFAULT_REDIS_URL = "redis://localhost:6379/0"
REDIS_TIMEOUT_SECONDS = 3.0

# An idle RQ worker blocks on the queue for worker_ttl - 15 s and writes a heartbeat
# after each wait, and RQ deletes a worker's key worker_ttl + 60 s after its last
# heartbeat. The Procfile keeps RQ's default worker_ttl (420 s in rq 3.0), so a
# healthy idle worker's heartbeat can be up to 405 s old.
DEFAULT_MAX_HEARTBEAT_AGE_SECONDS = DEFAULT_WORKER_TTL + 60


def read_heartbeat_age(redis_url: str, hostname: str) -> float | None:
    """Read the registered RQ workers from Redis and return the newest heartbeat age.

    Only workers on `hostname` count. The age is in seconds, and None means that no
    registered worker has that hostname. Raises RedisError or OSError when the Redis
    request fails.
    """
    with Redis.from_url(
        redis_url,
        socket_timeout=REDIS_TIMEOUT_SECONDS,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
    ) as connection:
        workers = Worker.all(connection=connection)
    now = datetime.now(UTC)
    ages = [
        (now - worker.last_heartbeat).total_seconds()
        for worker in workers
        if worker.hostname == hostname and worker.last_heartbeat is not None
    ]
    return min(ages, default=None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--max-heartbeat-age",
        type=float,
        default=DEFAULT_MAX_HEARTBEAT_AGE_SECONDS,
        help="maximum age in seconds of the worker's last heartbeat "
        "(default: %(default)s, for RQ's default worker TTL)",
    )
    arguments = parser.parse_args()

    redis_url = os.environ.get("REDIS_URL", DEFAULT_REDIS_URL)
    hostname = socket.gethostname()
    try:
        age = read_heartbeat_age(redis_url, hostname)
    except (RedisError, OSError) as error:
        print(f"unhealthy: Redis request failed: {error}")
        return 1
    if age is None:
        print(f"unhealthy: no RQ worker with hostname {hostname} is registered")
        return 1
    if age > arguments.max_heartbeat_age:
        print(
            f"unhealthy: the last heartbeat of the worker on {hostname} is "
            f"{age:.0f} s old (maximum {arguments.max_heartbeat_age:g} s)"
        )
        return 1
    print(f"healthy: worker on {hostname}, last heartbeat {age:.0f} s ago")
    return 0


if __name__ == "__main__":
    sys.exit(main())
