"""Webhook scheduling, payloads, signatures and delivery records.

When a job with a callback_url ends, the same Redis script that ends it adds the job
to WEBHOOKS_DUE_KEY, a sorted set scored by when the next attempt is due. Whichever
process ended the job dispatches it at once. Every worker's monitor pass also
dispatches due entries, which covers retries and a process that died between ending
the job and dispatching. Dispatching claims an entry by moving its score past the
delivery's time limit, so a claim lost with its worker is taken again later. Delivery
is therefore at least once: receivers deduplicate by job id.

The body is signed with HMAC-SHA256 over `<timestamp>.<body>` using WEBHOOK_SECRET
and sent as `Pindai-Signature: t=<timestamp>,v1=<hex digest>`.
"""

import hashlib
import hmac
import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.job import JobStatus as RqJobStatus
from rq.serializers import JSONSerializer

from core.jobs import JobRecord, JobStatus, PageOutcome
from core.queueing import WEBHOOK_FUNCTION, WEBHOOK_QUEUE, create_queue
from core.settings import Settings

WEBHOOKS_DUE_KEY = "pindai:webhooks:due"
SIGNATURE_HEADER = "Pindai-Signature"
EVENT_HEADER = "Pindai-Event"
DELIVERY_HEADER = "Pindai-Delivery"
EVENT = "job.ended"
# A claimed entry is taken again this long after its delivery's time limit.
CLAIM_MARGIN_SECONDS = 60
MAX_RETRY_DELAY_SECONDS = 6 * 3600

# Moves due entries (score <= ARGV[1]) to score ARGV[2] and returns their ids.
_CLAIM_SCRIPT = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], ARGV[2], member)
end
return due
"""


def deliveries_key(job_id: str) -> str:
    return f"pindai:job:{job_id}:deliveries"


def retry_delay_seconds(settings: Settings, attempt: int) -> float:
    """Seconds between attempt `attempt` (1-based) and the next: x4 each time.

    Capped at MAX_RETRY_DELAY_SECONDS, so that late retries still come before the
    job's record expires.
    """
    delay = settings.WEBHOOK_RETRY_SECONDS * 4 ** min(attempt - 1, 20)
    return min(delay, MAX_RETRY_DELAY_SECONDS)


def delivery_time_limit(settings: Settings) -> int:
    return int(settings.WEBHOOK_TIMEOUT_SECONDS + CLAIM_MARGIN_SECONDS)


def dispatch_due(redis: Redis, settings: Settings, limit: int = 50) -> list[str]:
    """Claim due deliveries and enqueue one RQ job each; return their job ids."""
    now = time.time()
    claim_until = now + delivery_time_limit(settings) + CLAIM_MARGIN_SECONDS
    claimed = redis.eval(_CLAIM_SCRIPT, 1, WEBHOOKS_DUE_KEY, now, claim_until, limit)
    job_ids = [member.decode() for member in claimed]
    queue = create_queue(redis, WEBHOOK_QUEUE)
    for job_id in job_ids:
        if _delivery_pending(redis, job_id):
            # Still waiting in the queue or running: the claim was renewed above,
            # and enqueueing it again would deliver twice.
            continue
        queue.enqueue(
            WEBHOOK_FUNCTION,
            args=(job_id,),
            job_id=delivery_rq_job_id(job_id),
            job_timeout=delivery_time_limit(settings),
            result_ttl=600,
            failure_ttl=settings.RESULT_TTL_SECONDS,
        )
    return job_ids


def _delivery_pending(redis: Redis, job_id: str) -> bool:
    try:
        rq_job = Job.fetch(
            delivery_rq_job_id(job_id), connection=redis, serializer=JSONSerializer
        )
    except NoSuchJobError:
        return False
    return rq_job.get_status() in (RqJobStatus.QUEUED, RqJobStatus.STARTED)


def delivery_rq_job_id(job_id: str) -> str:
    return f"{job_id}-webhook"


def schedule_retry(redis: Redis, job_id: str, at: float) -> None:
    # XX: a delivery that was removed (the job was deleted) is not brought back.
    redis.zadd(WEBHOOKS_DUE_KEY, {job_id: at}, xx=True)


def finish_delivery(redis: Redis, job_id: str) -> None:
    redis.zrem(WEBHOOKS_DUE_KEY, job_id)


def build_payload(
    record: JobRecord, outcomes: list[PageOutcome], result_url: str
) -> dict[str, Any]:
    """Return the JSON body sent for a job that ended."""
    failed = sum(1 for outcome in outcomes if not outcome.ok)
    error = None
    if record.status == JobStatus.FAILED:
        error = {"code": record.error_code, "message": record.error_message}
    return {
        "event": EVENT,
        "job_id": record.job_id,
        "status": record.status,
        "error": error,
        "partial": record.partial,
        "pages": {
            "count": record.page_count,
            "done": record.pages_done - failed,
            "failed": failed,
        },
        "result_url": result_url,
        "tag": record.tag,
        "created_at": record.created_at,
        "finished_at": record.finished_at,
    }


def encode_body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """Return the Pindai-Signature header value for `body` sent at `timestamp`."""
    signed = str(timestamp).encode() + b"." + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_signature(
    secret: str, header: str, body: bytes, *, tolerance_s: int = 300
) -> bool:
    """Check a Pindai-Signature header the way a receiver should.

    The timestamp must be within `tolerance_s` of now, which stops a captured
    delivery from being replayed later, and the digest is compared in constant time.
    """
    fields = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))


@dataclass
class DeliveryAttempt:
    """One POST to a callback URL, as GET .../deliveries lists it."""

    attempt: int
    attempted_at: str
    # delivered (2xx), failed (will be retried unless it was the last attempt), or
    # rejected (the URL now resolves to a forbidden address; never retried).
    outcome: str
    status_code: int | None
    error: str | None
    duration_ms: int
    next_attempt_at: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


def record_attempt(
    redis: Redis, job_id: str, attempt: DeliveryAttempt, ttl_seconds: int
) -> None:
    key = deliveries_key(job_id)
    with redis.pipeline(transaction=False) as pipeline:
        pipeline.rpush(key, attempt.to_json())
        pipeline.expire(key, ttl_seconds)
        pipeline.execute()
