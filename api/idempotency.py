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
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Header
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

# Deletes the claim only while it still names the job that failed to be created.
_RELEASE_SCRIPT = """
local value = redis.call('GET', KEYS[1])
if value and cjson.decode(value)['job_id'] == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def read_idempotency_key(value: str | None) -> str | None:
    """Return the header's key, or None when absent; raise InvalidRequest if bad."""
    if value is None:
        return None
    if not _VALID_KEY.match(value):
        raise InvalidRequest(
            f"Invalid request: header.{IDEMPOTENCY_HEADER}: use 1 to 255 printable "
            "ASCII characters without spaces, such as a UUID."
        )
    return value


def _claim_key(owner: str, key: str) -> str:
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"pindai:idempotency:{owner}:{digest}"


async def claim_or_replay(
    redis: AsyncRedis,
    *,
    owner: str,
    key: str,
    content: str | None,
    options: str,
    job_id: str,
    ttl_seconds: int,
) -> str | None:
    """Claim `key` for `job_id`, or return the job id of an earlier identical request.

    Two requests are the same when their options match and so does either their
    content identity (a SHA-256, or a stored object's ETag and size) or their job
    id. The job id matters for POST /jobs: once the first attempt has used up the
    upload, a retry with the same upload id can only be matched by it.

    Returns None when this request made the claim and must create `job_id`. Raises
    IdempotencyConflict when the key was used for a different request.
    """
    claim = {"job_id": job_id, "content": content, "options": options}
    claim_key = _claim_key(owner, key)
    while not await redis.set(claim_key, json.dumps(claim), nx=True, ex=ttl_seconds):
        existing = await redis.get(claim_key)
        if existing is None:
            # Released between the two commands: try to claim again.
            continue
        earlier = json.loads(existing)
        same_content = content is not None and earlier["content"] == content
        same_job = earlier["job_id"] == job_id
        if earlier["options"] != options or not (same_content or same_job):
            raise IdempotencyConflict()
        return earlier["job_id"]
    return None


@asynccontextmanager
async def released_on_error(
    redis: AsyncRedis, *, owner: str, key: str | None, job_id: str
) -> AsyncIterator[None]:
    """Free the claim on `key` if the block raises, so that a retry creates the job.

    Without this, the client's retry would be answered with a job that was never
    created.
    """
    try:
        yield
    except BaseException:
        if key is not None:
            await redis.eval(_RELEASE_SCRIPT, 1, _claim_key(owner, key), job_id)
        raise
