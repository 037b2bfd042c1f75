"""Enqueueing of OCR work on RQ: queues, job functions, time limits and TTLs.

Two queues carry the work. `default` contains whole-document steps: the probe of a PDF
and the OCR of a single image. `pages` contains one item per PDF page. Workers listen
to `default` first, so a small job submitted behind a long document starts as soon as
any worker finishes its current page, instead of after the whole document.

A PDF is probed first (`probe_document`): page count, encryption and each page's
resolution are read with short time limits, then one `ocr_page` item per page is
enqueued. An image skips the probe and the fan-out: it is one page, and
`ocr_image` reads it directly.
"""

from dataclasses import dataclass
from typing import Any

from redis import Redis
from rq import Queue
from rq.callbacks import Callback
from rq.job import Job
from rq.serializers import JSONSerializer

from core.settings import Settings

DOCUMENT_QUEUE = "default"
WEBHOOK_QUEUE = "webhooks"
PAGE_QUEUE = "pages"
# In the order workers take them.
QUEUES = (DOCUMENT_QUEUE, WEBHOOK_QUEUE, PAGE_QUEUE)

PROBE_FUNCTION = "worker.jobs.probe_document"
IMAGE_FUNCTION = "worker.jobs.ocr_image"
PAGE_FUNCTION = "worker.jobs.ocr_page"
FAILURE_CALLBACK = "worker.jobs.record_rq_failure"
WEBHOOK_FUNCTION = "worker.webhooks.deliver_webhook"
# The functions whose RQ jobs are stages of an OCR job (see Stage).
STAGE_FUNCTIONS = frozenset({PROBE_FUNCTION, IMAGE_FUNCTION, PAGE_FUNCTION})

# Time for work outside the per-page limits: download, writes of page text, status
# updates. RQ's own time limit must never be what stops a job.
JOB_OVERHEAD_SECONDS = 60


@dataclass(frozen=True)
class Stage:
    """One RQ job of a pindai job, as enqueued."""

    function: str
    job_id: str
    object_key: str
    options: dict[str, Any]
    request_id: str
    timeout_seconds: int
    queue: str = DOCUMENT_QUEUE
    attempt: int = 1

    @property
    def rq_job_id(self) -> str:
        name = {
            PROBE_FUNCTION: "probe",
            IMAGE_FUNCTION: "image",
            PAGE_FUNCTION: f"p{self.options.get('page', 0):05d}",
        }[self.function]
        suffix = f"-a{self.attempt}" if self.attempt > 1 else ""
        return f"{self.job_id}-{name}{suffix}"


def queue_key(name: str) -> str:
    """Return the Redis list that RQ keeps queue `name` in."""
    return f"{Queue.redis_queue_namespace_prefix}{name}"


def create_queue(connection: Redis, name: str = DOCUMENT_QUEUE) -> Queue:
    """Return a work queue, with JSON job payloads that any client can read."""
    return Queue(name, connection=connection, serializer=JSONSerializer)


def probe_timeout_seconds(settings: Settings) -> int:
    return int(2 * settings.RASTER_TIMEOUT_SECONDS + JOB_OVERHEAD_SECONDS)


def page_work_seconds(settings: Settings) -> float:
    """Time one page may take within pindai's own limits.

    Rendering (or reading the text layer) may use RASTER_TIMEOUT_SECONDS. OCR, and
    for a turned page orientation detection and a second OCR, may each use
    PAGE_TIMEOUT_SECONDS.
    """
    return settings.RASTER_TIMEOUT_SECONDS + 3 * settings.PAGE_TIMEOUT_SECONDS


def page_timeout_seconds(settings: Settings) -> int:
    """RQ time limit of one page: every step may use its full limit."""
    return int(page_work_seconds(settings) + JOB_OVERHEAD_SECONDS)


def document_deadline_seconds(settings: Settings, page_count: int) -> float:
    """Seconds from a document's start until pages still pending fail.

    Every page may use its full rendering and OCR limits one after another, as if a
    single worker did them all, so the deadline only cuts work that is truly stuck.
    """
    return JOB_OVERHEAD_SECONDS + page_count * page_work_seconds(settings)


def enqueue_stages(
    connection: Redis,
    settings: Settings,
    stages: list[Stage],
    *,
    at_front: bool = False,
    pipeline=None,
) -> None:
    """Enqueue `stages`, all in one Redis round trip when several share a queue."""
    by_queue: dict[str, list[Stage]] = {}
    for stage in stages:
        by_queue.setdefault(stage.queue, []).append(stage)
    for name, queued in by_queue.items():
        queue = create_queue(connection, name)
        data = [
            Queue.prepare_data(
                stage.function,
                args=(stage.job_id, stage.object_key, stage.options),
                job_id=stage.rq_job_id,
                timeout=stage.timeout_seconds,
                result_ttl=settings.RESULT_TTL_SECONDS,
                failure_ttl=settings.RESULT_TTL_SECONDS,
                ttl=settings.RESULT_TTL_SECONDS,
                meta={"request_id": stage.request_id, "attempt": stage.attempt},
                on_failure=Callback(FAILURE_CALLBACK),
                at_front=at_front,
            )
            for stage in queued
        ]
        queue.enqueue_many(data, pipeline=pipeline)


def stage_of(rq_job: Job) -> Stage:
    """Rebuild the Stage an RQ job was enqueued from, to enqueue it again."""
    job_id, object_key, options = rq_job.args
    return Stage(
        function=rq_job.func_name,
        job_id=job_id,
        object_key=object_key,
        options=dict(options),
        request_id=rq_job.meta.get("request_id", ""),
        timeout_seconds=int(rq_job.timeout or JOB_OVERHEAD_SECONDS),
        queue=rq_job.origin,
        attempt=int(rq_job.meta.get("attempt", 1)),
    )
