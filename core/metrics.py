"""Counters and histograms shared by every API and worker process, kept in Redis.

RQ runs each stage in a work horse that is forked for the stage and exits after it,
and workers run on several hosts. A per-process registry would lose the horses'
observations, and prometheus-client's multiprocess mode shares files on one host
only. So every process adds its observations to one Redis hash, and the API exports
that hash at /metrics together with gauges read at scrape time.

Each field of the hash is one sample: `<sample name>|<labels as sorted JSON>`. A
histogram stores one non-cumulative count per bucket; the exporter accumulates them.
The counts of a new job are written in the transaction that creates it. Later writes
(pages, job ends, webhooks) are best effort, so a Redis error while counting them is
logged and does not fail the work.
"""

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from loguru import logger
from redis import Redis
from redis.exceptions import RedisError

METRICS_KEY = "pindai:metrics"

# The `api_key` label of work done while the API runs without keys: caller addresses
# would make one time series per client.
ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Counter:
    """A monotonic count; exported with the `_total` suffix."""

    name: str
    documentation: str
    labels: tuple[str, ...] = ()

    def increment(self, target: Any, amount: float = 1, **labels: str) -> None:
        """Queue the increment on `target`, a Redis client or pipeline."""
        target.hincrbyfloat(METRICS_KEY, sample_field(self.name, labels), amount)


@dataclass(frozen=True)
class Histogram:
    """A distribution of observed values in seconds, with fixed bucket bounds."""

    name: str
    documentation: str
    buckets: tuple[float, ...]
    labels: tuple[str, ...] = ()

    def observe(self, target: Any, value: float, **labels: str) -> None:
        """Queue the observation on `target`, a Redis client or pipeline."""
        bound = next((b for b in self.buckets if value <= b), math.inf)
        bucket_labels = {**labels, "le": format_bound(bound)}
        target.hincrby(METRICS_KEY, sample_field(f"{self.name}_bucket", bucket_labels))
        target.hincrbyfloat(
            METRICS_KEY, sample_field(f"{self.name}_sum", labels), value
        )
        target.hincrby(METRICS_KEY, sample_field(f"{self.name}_count", labels))


DURATION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)

JOBS_SUBMITTED = Counter(
    "pindai_jobs_submitted", "Jobs accepted by the API.", ("file_type",)
)
JOBS_FINISHED = Counter(
    "pindai_jobs_finished",
    "Jobs that ended with text; partial is true when some pages failed.",
    ("partial",),
)
JOBS_FAILED = Counter(
    "pindai_jobs_failed", "Jobs that ended without text, by error code.", ("code",)
)
PAGES = Counter(
    "pindai_pages",
    "Page outcomes recorded, by API key name and outcome (done or failed).",
    ("api_key", "outcome"),
)
UPLOAD_BYTES = Counter(
    "pindai_upload_bytes",
    "Bytes of accepted documents, by upload path (multipart or direct).",
    ("path",),
)
WEBHOOK_DELIVERIES = Counter(
    "pindai_webhook_deliveries",
    "Webhook delivery attempts, by outcome (delivered, failed or rejected).",
    ("outcome",),
)
PAGE_OCR_SECONDS = Histogram(
    "pindai_page_ocr_seconds", "Tesseract time per page.", DURATION_BUCKETS
)
RASTERIZE_SECONDS = Histogram(
    "pindai_rasterize_seconds", "pdftoppm time per PDF page.", DURATION_BUCKETS
)

COUNTERS = (
    JOBS_SUBMITTED,
    JOBS_FINISHED,
    JOBS_FAILED,
    PAGES,
    UPLOAD_BYTES,
    WEBHOOK_DELIVERIES,
)
HISTOGRAMS = (PAGE_OCR_SECONDS, RASTERIZE_SECONDS)


def sample_field(sample: str, labels: dict[str, str]) -> str:
    return f"{sample}|{json.dumps(labels, sort_keys=True, separators=(',', ':'))}"


def parse_field(field: str) -> tuple[str, dict[str, str]]:
    sample, _, labels = field.partition("|")
    return sample, json.loads(labels) if labels else {}


def format_bound(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def api_key_label(owner: str) -> str:
    """Return the `api_key` label for a job owner: the key name, never an address."""
    return ANONYMOUS if not owner or owner.startswith("ip:") else owner


@contextmanager
def recording(redis: Redis) -> Iterator[Any]:
    """Yield a pipeline for metric writes and send them in one round trip.

    A Redis error while sending is logged and dropped, so counting does not fail the
    work being counted.
    """
    with redis.pipeline(transaction=False) as pipeline:
        yield pipeline
        try:
            pipeline.execute()
        except RedisError as error:
            logger.warning("recording metrics failed", error=str(error))
