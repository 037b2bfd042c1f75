"""Per-caller daily usage: jobs submitted, pages read, bytes uploaded.

One Redis hash per caller and UTC day, kept USAGE_RETENTION_DAYS. The API counts jobs
and bytes when it accepts a job; the job store counts pages when it records them.
"""

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from redis.asyncio import Redis as AsyncRedis

from core.jobs import utc_now

USAGE_RETENTION_DAYS = 90
USAGE_FIELDS = ("jobs", "pages", "pages_failed", "bytes")


def usage_key(owner: str, day: date) -> str:
    return f"pindai:usage:{owner}:{day.isoformat()}"


def count_usage(target: Any, owner: str, **amounts: int) -> None:
    """Queue increments of today's usage of `owner` on `target`, a client or pipeline.

    `amounts` are named by USAGE_FIELDS; zero amounts are skipped.
    """
    if not owner:
        return
    key = usage_key(owner, utc_now().date())
    for name, amount in amounts.items():
        if name not in USAGE_FIELDS:
            raise ValueError(f"unknown usage field {name!r}")
        if amount:
            target.hincrby(key, name, amount)
    target.expire(key, USAGE_RETENTION_DAYS * 86_400)


@dataclass(frozen=True)
class DayUsage:
    day: date
    jobs: int
    pages: int
    pages_failed: int
    bytes: int


async def read_usage(redis: AsyncRedis, owner: str, days: int) -> list[DayUsage]:
    """Return the usage of the last `days` UTC days, newest first, zeros included."""
    today = utc_now().date()
    days_covered = [today - timedelta(days=offset) for offset in range(days)]
    async with redis.pipeline(transaction=False) as pipeline:
        for day in days_covered:
            pipeline.hgetall(usage_key(owner, day))
        replies = await pipeline.execute()
    usage = []
    for day, raw in zip(days_covered, replies, strict=True):
        values = {key.decode(): int(value) for key, value in raw.items()}
        usage.append(DayUsage(day=day, **{n: values.get(n, 0) for n in USAGE_FIELDS}))
    return usage
