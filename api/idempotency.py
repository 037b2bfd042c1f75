"""Idempotency keys: a retried submit returns the job of the first attempt.

A client that times out waiting for a submit response cannot tell whether the job was
created. Sent again with the same `Idempotency-Key`, the request returns the job the
first one created instead of starting a second one. A key belongs to one caller and is
kept for RESULT_TTL_SECONDS. Reusing it for another file or other options is a
conflict (409), because returning the first job would then be wrong.
"""

import hashlib
import json
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Header, Request
from redis.asyncio import Redis as AsyncRedis

from core.errors import IdempotencyConflict, InvalidRequest

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
_VALID_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias=IDEMPOTENCY_HEADER,
        description="A key unique to this request, such as a UUID; a retry with "
        "the same key returns the same job.",
    ),
]

# A job missing this long after its key was claimed is not being created any more.
CREATION_GRACE_SECONDS = 120

# Deletes the claim only while it still names the job that failed to be created.
_RELEASE_SCRIPT = """
local value = redis.call('GET', KEYS[1])
if value and cjson.decode(value)['job_id'] == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def read_idempotency_key(request: Request) -> str | None:
    """Return the request's key, or None when absent; raise InvalidRequest if bad."""
    values = request.headers.getlist(IDEMPOTENCY_HEADER)
    if not values:
        return None
    if len(values) > 1:
        raise InvalidRequest(
            f"Invalid request: header.{IDEMPOTENCY_HEADER}: send the header once."
        )
    value = values[0]
    if not _VALID_KEY.match(value):
        raise InvalidRequest(
            f"Invalid request: header.{IDEMPOTENCY_HEADER}: use 1 to 255 printable "
            "ASCII characters without spaces, such as a UUID."
        )
    return value


def claim_key(owner: str, key: str) -> str:
    """Return the Redis key of `owner`'s claim on idempotency key `key`."""
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"pindai:idempotency:{owner}:{digest}"


@dataclass(frozen=True)
class Claim:
    """An earlier request's hold on an idempotency key."""

    job_id: str
    # Unix time of the claim: a job still missing long after it was claimed was
    # deleted, expired or never created.
    claimed_at: float


async def claim_or_replay(
    redis: AsyncRedis,
    *,
    owner: str,
    key: str,
    content: str | None,
    options: str,
    job_id: str,
    ttl_seconds: int,
) -> Claim | None:
    """Claim `key` for `job_id`, or return the claim of an earlier identical request.

    Two requests are the same when their options match and so does either their
    content identity (a SHA-256, or a stored object's ETag and size) or their job
    id. The job id matters for POST /jobs: once the first attempt has used up the
    upload, a retry with the same upload id can only be matched by it.

    Returns None when this request made the claim and must create `job_id`. Raises
    IdempotencyConflict when the key was used for a different request.
    """
    claim = {
        "job_id": job_id,
        "content": content,
        "options": options,
        "claimed_at": time.time(),
    }
    redis_key = claim_key(owner, key)
    while not await redis.set(redis_key, json.dumps(claim), nx=True, ex=ttl_seconds):
        existing = await redis.get(redis_key)
        if existing is None:
            # Released between the two commands: try to claim again.
            continue
        earlier = json.loads(existing)
        same_content = content is not None and earlier["content"] == content
        same_job = earlier["job_id"] == job_id
        if earlier["options"] != options or not (same_content or same_job):
            raise IdempotencyConflict()
        return Claim(earlier["job_id"], earlier.get("claimed_at", 0.0))
    return None


async def release_claim(
    redis: AsyncRedis, *, owner: str, key: str, job_id: str
) -> None:
    """Free the claim on `key` if it still names `job_id`."""
    await redis.eval(_RELEASE_SCRIPT, 1, claim_key(owner, key), job_id)


@asynccontextmanager
async def released_on_error(
    redis: AsyncRedis, *, owner: str, key: str | None, job_id: str
) -> AsyncIterator[None]:
    """Free the claim on `key` if the block raises, so that a retry creates the job.

    Without this, the client's retry would receive a job that was never created.
    """
    try:
        yield
    except BaseException:
        if key is not None:
            await release_claim(redis, owner=owner, key=key, job_id=job_id)
        raise
