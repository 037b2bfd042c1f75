"""Recovery of stages of dead workers, document deadlines and leases, on real Redis."""

import time
from pathlib import Path

import pytest
from redis import Redis

from core.jobs import JobRecord, JobStatus, PageOutcome, page_text_object_key
from core.jobstore import JobStore
from core.queueing import PAGE_FUNCTION, PAGE_QUEUE, Stage, enqueue_stages
from core.settings import Settings
from storage import create_storage
from tests.conftest import make_settings
from worker.leases import LEASES_KEY, claim_expired_leases, hold_lease
from worker.recovery import enforce_deadlines, recover_stage

JOB_ID = "a1" * 16


@pytest.fixture
def settings(redis_url: str, tmp_path: Path) -> Settings:
    return make_settings(redis_url, tmp_path / "storage", MAX_ATTEMPTS=2)


@pytest.fixture
def redis(redis_url: str) -> Redis:
    return Redis.from_url(redis_url)


def start_job(
    redis: Redis, settings: Settings, page_count: int, **deadline
) -> JobStore:
    store = JobStore(redis, settings)
    record = JobRecord(
        job_id=JOB_ID,
        status=JobStatus.QUEUED,
        file_type="pdf",
        filename="doc.pdf",
        sha256="0" * 64,
        size_bytes=1,
        request_id="r",
        created_at="2026-01-01T00:00:00.000Z",
    )
    with redis.pipeline() as pipeline:
        store.create(record, pipeline)
        pipeline.execute()
    store.mark_started(JOB_ID)
    store.set_page_count(JOB_ID, page_count, **deadline)
    return store


def page_stage(page: int, attempt: int = 1) -> Stage:
    return Stage(
        function=PAGE_FUNCTION,
        job_id=JOB_ID,
        object_key=f"jobs/{JOB_ID}/source",
        options={"page": page, "dpi": 300},
        request_id="r",
        timeout_seconds=100,
        queue=PAGE_QUEUE,
        attempt=attempt,
    )


def queued(redis: Redis) -> list[str]:
    return [item.decode() for item in redis.lrange(f"rq:queue:{PAGE_QUEUE}", 0, -1)]


def test_lost_page_enqueued_again(redis: Redis, settings: Settings) -> None:
    start_job(redis, settings, page_count=2)
    enqueue_stages(redis, settings, [page_stage(1), page_stage(2)])

    recover_stage(redis, settings, f"{JOB_ID}-p00002")

    assert queued(redis)[0] == f"{JOB_ID}-p00002-a2"
    assert len(queued(redis)) == 3


def test_lost_page_fails_past_budget(redis: Redis, settings: Settings) -> None:
    store = start_job(redis, settings, page_count=2)
    enqueue_stages(redis, settings, [page_stage(2, attempt=2)])
    storage = create_storage(settings)
    storage.put_bytes(page_text_object_key(JOB_ID, 1), b"first page")
    store.record_page(JOB_ID, PageOutcome(page=1, duration_ms=5, extra={"chars": 10}))

    recover_stage(redis, settings, f"{JOB_ID}-p00002-a2")

    pages = store.get_pages(JOB_ID)
    assert pages[1].error_code == "worker_lost"
    record = store.get(JOB_ID)
    assert record.status == JobStatus.FINISHED
    assert record.partial is True
    assert storage.get_bytes(f"jobs/{JOB_ID}/text.txt") == b"first page"


def test_recorded_page_not_recovered(redis: Redis, settings: Settings) -> None:
    store = start_job(redis, settings, page_count=2)
    enqueue_stages(redis, settings, [page_stage(1)])
    store.record_page(JOB_ID, PageOutcome(page=1, duration_ms=5))
    before = queued(redis)

    recover_stage(redis, settings, f"{JOB_ID}-p00001")

    assert queued(redis) == before


def test_ended_job_not_recovered(redis: Redis, settings: Settings) -> None:
    store = start_job(redis, settings, page_count=2)
    enqueue_stages(redis, settings, [page_stage(1)])
    store.cancel(JOB_ID)
    before = queued(redis)

    recover_stage(redis, settings, f"{JOB_ID}-p00001")

    assert queued(redis) == before


def test_deadline_fails_pending_pages(redis: Redis, settings: Settings) -> None:
    store = start_job(redis, settings, page_count=3, deadline_seconds=-1)
    storage = create_storage(settings)
    storage.put_bytes(page_text_object_key(JOB_ID, 2), b"second page")
    store.record_page(JOB_ID, PageOutcome(page=2, duration_ms=5, extra={"chars": 11}))

    enforce_deadlines(redis, settings)

    pages = store.get_pages(JOB_ID)
    assert [page.error_code for page in pages] == [
        "deadline_exceeded",
        None,
        "deadline_exceeded",
    ]
    record = store.get(JOB_ID)
    assert record.status == JobStatus.FINISHED
    assert record.partial is True
    assert store.overdue_jobs() == []


def test_deadline_in_future_waits(redis: Redis, settings: Settings) -> None:
    store = start_job(redis, settings, page_count=3, deadline_seconds=600)

    enforce_deadlines(redis, settings)

    assert store.get_pages(JOB_ID) == []
    assert store.get(JOB_ID).status == JobStatus.STARTED


def test_lease_renewed_then_released(redis: Redis) -> None:
    with hold_lease(redis, "job-x", lease_seconds=6):
        first = redis.zscore(LEASES_KEY, "job-x")
        time.sleep(2.2)
        assert redis.zscore(LEASES_KEY, "job-x") > first

    assert redis.zscore(LEASES_KEY, "job-x") is None


def test_expired_lease_claimed_once(redis: Redis) -> None:
    redis.zadd(LEASES_KEY, {"dead-1": time.time() - 1, "alive-1": time.time() + 60})

    assert claim_expired_leases(redis) == ["dead-1"]
    assert claim_expired_leases(redis) == []
    assert redis.zscore(LEASES_KEY, "alive-1") is not None
