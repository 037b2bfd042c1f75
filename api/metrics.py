"""Prometheus metrics: HTTP metrics of this process plus the shared ones from Redis.

HTTP request metrics are kept in this process, because each API replica runs one
Uvicorn process and is scraped on its own. Job, page, upload and webhook metrics come
from the Redis hash that every API and worker process adds to (see core.metrics), so
whichever replica is scraped reports the same totals. Queue depths and live workers
are read at scrape time.
"""

import math
from collections import defaultdict
from collections.abc import Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from redis.asyncio import Redis as AsyncRedis

from api.workload import read_workload
from core.metrics import COUNTERS, HISTOGRAMS, METRICS_KEY, parse_field
from core.metrics import Histogram as SharedHistogram

# Requests that matched no route share one label value, so that scanners probing
# random paths cannot create a time series per path.
UNMATCHED_ROUTE = "unmatched"

# The `_created` series of every counter and histogram only double the output.
disable_created_metrics()
PROCESS_REGISTRY = CollectorRegistry()
ProcessCollector(registry=PROCESS_REGISTRY)
HTTP_REQUESTS = Counter(
    "pindai_http_requests",
    "HTTP requests served by this API process, by route template and status.",
    ("method", "route", "status"),
    registry=PROCESS_REGISTRY,
)
HTTP_REQUEST_SECONDS = Histogram(
    "pindai_http_request_duration_seconds",
    "Time from request start to the end of the response, by route template.",
    ("method", "route"),
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=PROCESS_REGISTRY,
)


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_REQUEST_SECONDS.labels(method, route).observe(seconds)


class SharedMetrics(Collector):
    """Metric families built from one read of the shared Redis hash and workload."""

    def __init__(
        self, samples: dict[str, float], workers: int, queues: dict[str, int]
    ) -> None:
        self.samples = samples
        self.workers = workers
        self.queues = queues

    def collect(self) -> Iterator[Metric]:
        by_sample: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
        for field, value in self.samples.items():
            sample, labels = parse_field(field)
            by_sample[sample].append((labels, value))

        for counter in COUNTERS:
            family = CounterMetricFamily(
                counter.name, counter.documentation, labels=counter.labels
            )
            for labels, value in by_sample.get(counter.name, []):
                family.add_metric([labels.get(n, "") for n in counter.labels], value)
            yield family

        for histogram in HISTOGRAMS:
            yield _histogram_family(histogram, by_sample)

        workers = GaugeMetricFamily(
            "pindai_workers", "Workers whose heartbeat is at most 30 s old."
        )
        workers.add_metric([], self.workers)
        yield workers
        depth = GaugeMetricFamily(
            "pindai_queue_depth", "Stages waiting in each queue.", labels=("queue",)
        )
        for name, length in self.queues.items():
            depth.add_metric([name], length)
        yield depth


def _histogram_family(
    histogram: SharedHistogram,
    by_sample: dict[str, list[tuple[dict[str, str], float]]],
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(
        histogram.name, histogram.documentation, labels=histogram.labels
    )
    counts: dict[tuple[str, ...], dict[float, float]] = defaultdict(dict)
    for labels, value in by_sample.get(f"{histogram.name}_bucket", []):
        key = tuple(labels.get(n, "") for n in histogram.labels)
        counts[key][float(labels["le"])] = value
    sums = {
        tuple(labels.get(n, "") for n in histogram.labels): value
        for labels, value in by_sample.get(f"{histogram.name}_sum", [])
    }
    for key, per_bound in counts.items():
        cumulative = 0.0
        buckets = []
        for bound in (*histogram.buckets, math.inf):
            cumulative += per_bound.get(float(bound), 0)
            buckets.append(("+Inf" if math.isinf(bound) else str(bound), cumulative))
        family.add_metric(list(key), buckets, sum_value=sums.get(key, 0.0))
    return family


async def render_metrics(redis: AsyncRedis) -> bytes:
    """Return every metric in the Prometheus text format."""
    raw = await redis.hgetall(METRICS_KEY)
    samples = {field.decode(): float(value) for field, value in raw.items()}
    workers, queues = await read_workload(redis)
    shared = CollectorRegistry()
    shared.register(SharedMetrics(samples, workers, queues))
    return generate_latest(PROCESS_REGISTRY) + generate_latest(shared)
