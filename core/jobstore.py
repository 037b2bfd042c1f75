"""Job records in Redis: blocking access for workers, async reads for the API."""

import time
from dataclasses import dataclass
from datetime import timedelta

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.client import Pipeline

from core.errors import ErrorCode
from core.jobs import (
    DEADLINES_KEY,
    JobRecord,
    JobStatus,
    PageOutcome,
    active_jobs_key,
    events_channel,
    format_timestamp,
    job_key,
    owner_jobs_key,
    pages_key,
    parse_timestamp,
    utc_now,
)
from core.metrics import (
    JOBS_FAILED,
    JOBS_FINISHED,
    PAGE_OCR_SECONDS,
    PAGES,
    RASTERIZE_SECONDS,
    api_key_label,
    recording,
)
from core.settings import Settings
from core.usage import count_usage
from core.webhooks import WEBHOOKS_DUE_KEY, deliveries_key, dispatch_due

# Sets fields on a job hash only while its status is one of ARGV[1] (comma separated),
# so that a late worker can never move a finished or failed job back to `started`.
# ARGV[2] is a TTL in seconds applied to both of the job's hashes (0 keeps the TTLs).
# When ARGV[3] is not empty and the job has a callback_url, its webhook becomes due at
# time ARGV[3] in the same step, so no job can end without its webhook scheduled.
_TRANSITION_SCRIPT = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 0 end
for allowed in string.gmatch(ARGV[1], '[^,]+') do
  if allowed == status then
    redis.call('HSET', KEYS[1], unpack(ARGV, 5))
    local ttl = tonumber(ARGV[2])
    if ttl > 0 then
      redis.call('EXPIRE', KEYS[1], ttl)
      redis.call('EXPIRE', KEYS[2], ttl)
    end
    if ARGV[3] ~= '' and redis.call('HEXISTS', KEYS[1], 'callback_url') == 1 then
      redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
    end
    return 1
  end
end
return 0
"""

# Records one page outcome and counts it in `pages_done`. HSETNX makes it idempotent:
# a page recorded twice (a retried page, a deadline racing a late worker) counts once.
# Nothing is written unless the job is `started`: a page finishing after its job was
# cancelled, deleted or expired changes nothing and creates no key without a TTL.
# Returns {recorded, pages_done, page_count, owner}.
_RECORD_PAGE_SCRIPT = """
if redis.call('HGET', KEYS[1], 'status') ~= 'started' then return {-1, 0, 0, ''} end
local added = redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3]))
local done
if added == 1 then
  done = redis.call('HINCRBY', KEYS[1], 'pages_done', 1)
else
  done = tonumber(redis.call('HGET', KEYS[1], 'pages_done') or '0')
end
local count = tonumber(redis.call('HGET', KEYS[1], 'page_count') or '0')
return {added, done, count, redis.call('HGET', KEYS[1], 'owner') or ''}
"""


# Deletes the idempotency claim named in the job's `idempotency_claim` field, if the
# claim still names this job (ARGV[1]).
_RELEASE_CLAIM_SCRIPT = """
local claim = redis.call('HGET', KEYS[1], 'idempotency_claim')
if not claim then return 0 end
local value = redis.call('GET', claim)
if value and cjson.decode(value)['job_id'] == ARGV[1] then
  return redis.call('DEL', claim)
end
return 0
"""


@dataclass(frozen=True)
class PageRecorded:
    """The effect of recording one page outcome."""

    recorded: bool
    pages_done: int
    page_count: int

    @property
    def completes_job(self) -> bool:
        """True for exactly one recording per job: the one that made the count whole."""
        return (
            self.recorded and self.page_count > 0 and self.pages_done == self.page_count
        )


class JobStore:
    """Blocking job-record access, for the workers and the API's enqueue step."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.ttl_seconds = settings.RESULT_TTL_SECONDS
        self._transition = redis.register_script(_TRANSITION_SCRIPT)
        self._record_page = redis.register_script(_RECORD_PAGE_SCRIPT)
        self._release_claim = redis.register_script(_RELEASE_CLAIM_SCRIPT)

    def create(self, record: JobRecord, pipeline: Pipeline) -> None:
        """Queue the commands that store a new record on `pipeline`."""
        key = job_key(record.job_id)
        pipeline.hset(key, mapping=record.to_redis())
        pipeline.expire(key, self.ttl_seconds)
        if record.owner:
            now = utc_now().timestamp()
            active = active_jobs_key(record.owner)
            pipeline.zadd(active, {record.job_id: now})
            pipeline.expire(active, self.ttl_seconds)
            listed = owner_jobs_key(record.owner)
            pipeline.zadd(listed, {record.job_id: now})
            # A job expires at most a TTL after it ends; ids twice that old are gone.
            pipeline.zremrangebyscore(listed, "-inf", now - 2 * self.ttl_seconds)
            pipeline.expire(listed, 2 * self.ttl_seconds)

    def get(self, job_id: str) -> JobRecord | None:
        return JobRecord.from_redis(job_id, self.redis.hgetall(job_key(job_id)))

    def get_pages(self, job_id: str) -> list[PageOutcome]:
        return _parse_pages(self.redis.hgetall(pages_key(job_id)))

    def has_page(self, job_id: str, page: int) -> bool:
        return bool(self.redis.hexists(pages_key(job_id), str(page)))

    def mark_started(self, job_id: str) -> bool:
        """Move a queued job to `started`; return False when it was not queued."""
        return self._set_if(
            job_id,
            (JobStatus.QUEUED,),
            {"status": JobStatus.STARTED, "started_at": format_timestamp(utc_now())},
        )

    def set_page_count(
        self,
        job_id: str,
        page_count: int,
        deadline_seconds: float | None = None,
        page_numbers: str | None = None,
    ) -> None:
        """Store the page count and, for multi-page work, the document's deadline.

        `page_numbers` is the range text of the pages read when the client selected
        some; without it the job reads pages 1 to `page_count`.
        """
        fields: dict[str, object] = {"page_count": page_count}
        if page_numbers is not None:
            fields["page_numbers"] = page_numbers
        if deadline_seconds is not None:
            deadline = utc_now() + timedelta(seconds=deadline_seconds)
            fields["deadline_at"] = format_timestamp(deadline)
            self.redis.zadd(DEADLINES_KEY, {job_id: deadline.timestamp()})
        self._set_if(job_id, (JobStatus.STARTED,), fields)

    def set_checksum(self, job_id: str, sha256: str) -> None:
        """Store the SHA-256 of a direct upload, known once a worker has read it."""
        self._set_if(job_id, (JobStatus.STARTED,), {"sha256": sha256})

    def record_page(self, job_id: str, outcome: PageOutcome) -> PageRecorded:
        """Store a page outcome and count it in `pages_done`, atomically and once."""
        keys = [job_key(job_id), pages_key(job_id)]
        arguments = [str(outcome.page), outcome.to_json(), str(self.ttl_seconds)]
        added, done, count, owner = self._record_page(keys=keys, args=arguments)
        if added == 1:
            self._count_page(
                owner.decode() if isinstance(owner, bytes) else owner, outcome
            )
        return PageRecorded(recorded=added == 1, pages_done=done, page_count=count)

    def _count_page(self, owner: str, outcome: PageOutcome) -> None:
        with recording(self.redis) as pipeline:
            result = "done" if outcome.ok else "failed"
            PAGES.increment(pipeline, api_key=api_key_label(owner), outcome=result)
            count_usage(pipeline, owner, pages=1, pages_failed=0 if outcome.ok else 1)
            if "ocr_ms" in outcome.extra:
                PAGE_OCR_SECONDS.observe(pipeline, outcome.extra["ocr_ms"] / 1000)
            if "render_ms" in outcome.extra:
                RASTERIZE_SECONDS.observe(pipeline, outcome.extra["render_ms"] / 1000)

    def finish(self, job_id: str, *, partial: bool) -> bool:
        """Mark a started job finished; return False when it had already ended."""
        return self._end(job_id, {"status": JobStatus.FINISHED, "partial": partial})

    def fail(self, job_id: str, code: str, message: str) -> bool:
        """Mark a queued or started job failed; return False if it had already ended."""
        return self._end(
            job_id,
            {"status": JobStatus.FAILED, "error_code": code, "error_message": message},
        )

    def cancel(self, job_id: str) -> bool:
        """Fail a queued or started job with `cancelled`; False if it had ended."""
        return self.fail(job_id, ErrorCode.CANCELLED, "The job was cancelled.")

    def delete(self, job_id: str) -> None:
        """Remove the job's records, so that every later read finds no job.

        The idempotency key that created the job is freed too, so that a request
        sent again with it creates a new job instead of naming the deleted one.
        """
        self._release_claim(keys=[job_key(job_id)], args=[job_id])
        with self.redis.pipeline() as pipeline:
            pipeline.delete(job_key(job_id), pages_key(job_id), deliveries_key(job_id))
            pipeline.zrem(DEADLINES_KEY, job_id)
            pipeline.zrem(WEBHOOKS_DUE_KEY, job_id)
            pipeline.execute()

    def overdue_jobs(self, limit: int = 100) -> list[str]:
        """Return ids of running documents whose deadline has passed."""
        now = utc_now().timestamp()
        raw = self.redis.zrangebyscore(DEADLINES_KEY, "-inf", now, start=0, num=limit)
        return [item.decode() for item in raw]

    def _end(self, job_id: str, fields: dict[str, object]) -> bool:
        record = self.get(job_id)
        if record is None:
            return False
        now = utc_now()
        fields = dict(fields, finished_at=format_timestamp(now))
        if record.started_at is not None:
            started = parse_timestamp(record.started_at)
            fields["duration_ms"] = int((now - started).total_seconds() * 1000)
        allowed = (JobStatus.QUEUED, JobStatus.STARTED)
        if fields["status"] == JobStatus.FINISHED:
            allowed = (JobStatus.STARTED,)
        ended = self._set_if(
            job_id, allowed, fields, ttl_seconds=self.ttl_seconds, webhook_due=True
        )
        if ended:
            self.redis.zrem(DEADLINES_KEY, job_id)
            if record.owner:
                self.redis.zrem(active_jobs_key(record.owner), job_id)
            self.redis.publish(events_channel(job_id), str(fields["status"]))
            with recording(self.redis) as pipeline:
                if fields["status"] == JobStatus.FINISHED:
                    JOBS_FINISHED.increment(
                        pipeline, partial=str(fields["partial"]).lower()
                    )
                else:
                    JOBS_FAILED.increment(pipeline, code=str(fields["error_code"]))
            if record.callback_url:
                dispatch_due(self.redis, self.settings)
        return ended

    def _set_if(
        self,
        job_id: str,
        allowed: tuple[JobStatus, ...],
        fields: dict[str, object],
        ttl_seconds: int = 0,
        webhook_due: bool = False,
    ) -> bool:
        due_at = repr(time.time()) if webhook_due else ""
        arguments = [",".join(allowed), str(ttl_seconds), due_at, job_id]
        for name, value in fields.items():
            if isinstance(value, bool):
                value = "1" if value else "0"
            arguments.extend((name, str(value)))
        keys = [job_key(job_id), pages_key(job_id), WEBHOOKS_DUE_KEY]
        return bool(self._transition(keys=keys, args=arguments))


class AsyncJobReader:
    """Read-only job-record access for the API's event loop."""

    def __init__(self, redis: AsyncRedis) -> None:
        self.redis = redis

    async def get(self, job_id: str) -> JobRecord | None:
        return JobRecord.from_redis(job_id, await self.redis.hgetall(job_key(job_id)))

    async def get_pages(self, job_id: str) -> list[PageOutcome]:
        return _parse_pages(await self.redis.hgetall(pages_key(job_id)))

    async def get_page(self, job_id: str, page: int) -> PageOutcome | None:
        raw = await self.redis.hget(pages_key(job_id), str(page))
        return PageOutcome.from_json(raw) if raw is not None else None

    async def list_jobs(
        self,
        owner: str,
        *,
        limit: int,
        before: float | None = None,
        status: JobStatus | None = None,
        max_scanned: int = 1000,
    ) -> tuple[list[JobRecord], float | None]:
        """Return up to `limit` of the owner's jobs, newest first, and a cursor.

        `before` is the cursor of the previous page: a creation time, exclusive. At
        most `max_scanned` ids are read per call, so a filter that matches little
        returns a short page and a cursor rather than scanning every job. The cursor
        is None when nothing older remains.
        """
        key = owner_jobs_key(owner)
        upper = f"({before!r}" if before is not None else "+inf"
        found: list[JobRecord] = []
        scanned = 0
        cursor: float | None = None
        while len(found) < limit and scanned < max_scanned:
            batch = await self.redis.zrevrangebyscore(
                key,
                upper,
                "-inf",
                start=0,
                num=min(100, max_scanned - scanned),
                withscores=True,
            )
            if not batch:
                return found, None
            async with self.redis.pipeline(transaction=False) as pipeline:
                for member, _ in batch:
                    pipeline.hgetall(job_key(member.decode()))
                replies = await pipeline.execute()
            for (member, score), raw in zip(batch, replies, strict=True):
                scanned += 1
                cursor = score
                upper = f"({score!r}"
                record = JobRecord.from_redis(member.decode(), raw)
                if record is None:
                    # Deleted or expired: drop the id so later listings skip it.
                    await self.redis.zrem(key, member)
                    continue
                if status is None or record.status == status:
                    found.append(record)
                    if len(found) == limit:
                        break
        return found, cursor


def _parse_pages(raw: dict) -> list[PageOutcome]:
    outcomes = [PageOutcome.from_json(value) for value in raw.values()]
    return sorted(outcomes, key=lambda outcome: outcome.page)
