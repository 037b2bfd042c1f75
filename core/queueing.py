"""Enqueueing of OCR work on RQ: job functions, time limits and TTLs.

The API and the workers both enqueue through this module, so the two stages of a
document share one definition of their time limits.

A PDF goes through two RQ jobs. `probe_document` reads the page count and encryption
with a short time limit; it then enqueues `ocr_document` with a time limit computed
from that page count. An image skips the probe, since it is always one page.
"""

from rq import Queue
from rq.callbacks import Callback
from rq.serializers import JSONSerializer

from core.settings import Settings

QUEUE_NAME = "default"

PROBE_FUNCTION = "worker.jobs.probe_document"
OCR_FUNCTION = "worker.jobs.ocr_document"
FAILURE_CALLBACK = "worker.jobs.record_rq_failure"

# Time for work outside the per-page limits: download, page-count probe, writes of
# page text, status updates. RQ's own time limit must never be what stops a job.
JOB_OVERHEAD_SECONDS = 60


def create_queue(connection, settings: Settings) -> Queue:
    """Return the work queue, with JSON job payloads that any client can read."""
    return Queue(QUEUE_NAME, connection=connection, serializer=JSONSerializer)


def probe_timeout_seconds(settings: Settings) -> int:
    return int(settings.RASTER_TIMEOUT_SECONDS + JOB_OVERHEAD_SECONDS)


def ocr_timeout_seconds(settings: Settings, page_count: int) -> int:
    """Return the RQ time limit for `page_count` pages, each using its full limits."""
    per_page = settings.RASTER_TIMEOUT_SECONDS + settings.PAGE_TIMEOUT_SECONDS
    return int(page_count * per_page + JOB_OVERHEAD_SECONDS)


def enqueue_stage(
    queue: Queue,
    settings: Settings,
    *,
    function: str,
    job_id: str,
    object_key: str,
    options: dict,
    request_id: str,
    timeout_seconds: int,
    at_front: bool = False,
    pipeline=None,
) -> None:
    """Enqueue one stage of job `job_id`; the RQ job id is `<job_id>-<stage>`."""
    stage = function.rsplit(".", 1)[-1].split("_", 1)[0]
    queue.enqueue_call(
        function,
        args=(job_id, object_key, options),
        job_id=f"{job_id}-{stage}",
        timeout=timeout_seconds,
        result_ttl=settings.RESULT_TTL_SECONDS,
        failure_ttl=settings.RESULT_TTL_SECONDS,
        ttl=settings.RESULT_TTL_SECONDS,
        meta={"request_id": request_id},
        on_failure=Callback(FAILURE_CALLBACK),
        at_front=at_front,
        pipeline=pipeline,
    )
