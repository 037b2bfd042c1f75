"""Worker heartbeats: which workers are alive, and which languages they can read.

RQ's own registry keeps a worker for up to worker_ttl + 60 s (480 s by default) after
its last heartbeat, and an idle RQ worker writes one only every worker_ttl - 15 s. So
each pindai worker's monitor thread also writes its own heartbeat, every pass, to a
sorted set scored by time, and a worker counts as live while its heartbeat is recent.
"""

import time

from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from core.ocr_options import OSD_LANGUAGE, split_languages
from core.settings import Settings

HEARTBEATS_KEY = "pindai:workers:heartbeats"
# Hash of worker name to the Tesseract languages installed on its host, `+`-joined.
LANGUAGES_KEY = "pindai:workers:languages"
# Three missed monitor passes (every 10 s) mark a worker as gone.
LIVE_WITHIN_SECONDS = 30


def record_heartbeat(
    redis: Redis, worker_name: str, languages: list[str] | None = None
) -> None:
    """Mark `worker_name` alive now, with its languages when given.

    Heartbeats of workers gone for ten times LIVE_WITHIN_SECONDS are dropped, with
    their languages.
    """
    now = time.time()
    expired = redis.zrangebyscore(
        HEARTBEATS_KEY, "-inf", now - 10 * LIVE_WITHIN_SECONDS
    )
    with redis.pipeline(transaction=False) as pipeline:
        pipeline.zadd(HEARTBEATS_KEY, {worker_name: now})
        if languages is not None:
            pipeline.hset(LANGUAGES_KEY, worker_name, "+".join(languages))
        if expired:
            pipeline.zrem(HEARTBEATS_KEY, *expired)
            pipeline.hdel(LANGUAGES_KEY, *expired)
        pipeline.execute()


def remove_heartbeat(redis: Redis, worker_name: str) -> None:
    """Forget a worker that stops cleanly, so it is not counted until it times out."""
    with redis.pipeline(transaction=False) as pipeline:
        pipeline.zrem(HEARTBEATS_KEY, worker_name)
        pipeline.hdel(LANGUAGES_KEY, worker_name)
        pipeline.execute()


async def count_live_workers(redis: AsyncRedis) -> int:
    return await redis.zcount(HEARTBEATS_KEY, time.time() - LIVE_WITHIN_SECONDS, "+inf")


async def live_languages(redis: AsyncRedis) -> set[str]:
    """Return the union of the languages that live workers published."""
    live = await redis.zrangebyscore(
        HEARTBEATS_KEY, time.time() - LIVE_WITHIN_SECONDS, "+inf"
    )
    if not live:
        return set()
    published = await redis.hmget(LANGUAGES_KEY, live)
    return {
        name
        for value in published
        if value is not None
        for name in value.decode().split("+")
        if name
    }


async def available_languages(redis: AsyncRedis, settings: Settings) -> set[str]:
    """Return the OCR languages a job may ask for: those of live workers.

    Until a worker has published its languages, the ones of OCR_LANG are assumed,
    so that jobs are accepted while no worker runs. `osd` detects orientation and
    script only, so it is never an OCR language.
    """
    languages = await live_languages(redis) or set(split_languages(settings.OCR_LANG))
    return languages - {OSD_LANGUAGE}
