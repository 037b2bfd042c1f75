"""Recovery of stages whose worker died, and enforcement of document deadlines.

Both run in every worker's monitor thread (see worker.rq_worker), so they keep
running as long as any worker is alive, even when no new worker starts.
"""

import shutil
import time
from dataclasses import replace
from pathlib import Path

from loguru import logger
from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.timeouts import TimerDeathPenalty

from core.errors import DeadlineExceeded, WorkerLost
from core.jobs import (
    DEADLINES_KEY,
    TERMINAL_STATUSES,
    JobStatus,
    job_key,
    upload_key,
)
from core.jobstore import JobStore
from core.queueing import (
    QUEUES,
    STAGE_FUNCTIONS,
    WEBHOOK_FUNCTION,
    enqueue_stages,
    stage_of,
)
from core.settings import Settings
from core.webhooks import dispatch_due
from storage import create_storage
from worker.document import DocumentWriter
from worker.leases import claim_expired_leases
from worker.source_cache import sweep_cache
from worker.webhooks import record_lost_delivery

# Cached sources unused for this long are removed even if their job still runs.
CACHE_IDLE_SECONDS = 3600
# Local job directories without a job record are deleted once this old.
ORPHAN_GRACE_SECONDS = 3600


def recover_stage(connection: Redis, settings: Settings, rq_job_id: str) -> None:
    """Run a dead worker's stage again, or fail it once it used all its attempts."""
    try:
        rq_job = Job.fetch(rq_job_id, connection=connection, serializer=JSONSerializer)
    except NoSuchJobError:
        logger.warning(
            "lost stage has no RQ job; nothing to recover", rq_job_id=rq_job_id
        )
        return
    if rq_job.func_name == WEBHOOK_FUNCTION:
        record_lost_delivery(connection, settings, rq_job.args[0])
        return
    if rq_job.func_name not in STAGE_FUNCTIONS:
        logger.warning("lost RQ job is not a pindai stage", rq_job_id=rq_job_id)
        return
    stage = stage_of(rq_job)
    store = JobStore(connection, settings)
    record = store.get(stage.job_id)
    if record is None or record.status in TERMINAL_STATUSES:
        return
    page = stage.options.get("page")
    if page is not None and store.has_page(stage.job_id, page):
        return

    with logger.contextualize(
        job_id=stage.job_id, request_id=record.request_id, rq_job_id=rq_job_id
    ):
        if stage.attempt < settings.MAX_ATTEMPTS:
            retry = replace(stage, attempt=stage.attempt + 1)
            # Both the lease monitor and RQ's abandoned-job clean-up may report the
            # same lost stage; the first enqueues the retry, the others see it.
            if Job.exists(retry.rq_job_id, connection=connection):
                return
            enqueue_stages(connection, settings, [retry], at_front=True)
            logger.warning(
                "stage of a lost worker enqueued again",
                page=page,
                attempt=retry.attempt,
                retry_rq_job_id=retry.rq_job_id,
            )
            return
        error = WorkerLost(
            f"The worker died {stage.attempt} times while running this "
            f"{'page' if page is not None else 'job'}."
        )
        logger.warning("stage lost too often", page=page, attempts=stage.attempt)
        if page is None:
            store.fail(stage.job_id, error.code, error.message)
            return
        writer = DocumentWriter(stage.job_id, store, create_storage(settings))
        writer.fail_page(page, error)


def enforce_deadlines(connection: Redis, settings: Settings) -> None:
    """Fail the pending pages of documents whose deadline has passed."""
    store = JobStore(connection, settings)
    for job_id in store.overdue_jobs():
        record = store.get(job_id)
        if record is None or record.status != JobStatus.STARTED:
            connection.zrem(DEADLINES_KEY, job_id)
            continue
        done = {outcome.page for outcome in store.get_pages(job_id)}
        writer = DocumentWriter(job_id, store, create_storage(settings))
        error = DeadlineExceeded()
        with logger.contextualize(job_id=job_id, request_id=record.request_id):
            logger.warning("document deadline passed", deadline_at=record.deadline_at)
            for page in record.pages_to_read():
                if page not in done:
                    writer.fail_page(page, error)


def sweep_orphaned_objects(connection: Redis, settings: Settings) -> int:
    """Delete local-storage job directories whose job record is gone (expired).

    S3 buckets get a lifecycle rule instead (see storage.s3.job_lifecycle_rules). A
    directory younger than ORPHAN_GRACE_SECONDS is kept: its upload or its job record
    may still be on the way.
    """
    if settings.STORAGE_BACKEND != "local":
        return 0
    root = Path(settings.STORAGE_DIR) / "jobs"
    if not root.is_dir():
        return 0
    now = time.time()
    removed = 0
    for directory in root.iterdir():
        try:
            young = now - directory.stat().st_mtime < ORPHAN_GRACE_SECONDS
        except OSError:
            continue
        if young or connection.exists(
            job_key(directory.name), upload_key(directory.name)
        ):
            continue
        shutil.rmtree(directory, ignore_errors=True)
        removed += 1
    if removed:
        logger.info("deleted objects of expired jobs", count=removed)
    return removed


def clean_started_registries(connection: Redis) -> None:
    """Let RQ fail the started jobs whose worker stopped sending heartbeats.

    A worker killed between taking a stage off the queue and taking its lease leaves
    no lease to expire. RQ finds such a job once its execution heartbeat lapses (its
    job monitoring interval plus 60 s) and calls the failure callback, which
    recovers the stage. RQ itself runs this clean-up only every ten minutes.
    """
    for name in QUEUES:
        # This runs in a thread, where RQ's default signal-based time limit on the
        # failure callback cannot be set; a timer-based one can.
        StartedJobRegistry(
            name,
            connection=connection,
            serializer=JSONSerializer,
            death_penalty_class=TimerDeathPenalty,
        ).cleanup()


def run_monitor_pass(
    connection: Redis, settings: Settings, *, sweep_storage: bool = False
) -> None:
    """Run one monitor round: lost stages, overdue documents, due webhooks, caches.

    With `sweep_storage`, also delete local objects of expired jobs, which lists the
    whole storage directory and so runs only every few minutes.
    """
    for rq_job_id in claim_expired_leases(connection):
        recover_stage(connection, settings, rq_job_id)
    clean_started_registries(connection)
    enforce_deadlines(connection, settings)
    dispatch_due(connection, settings)
    store = JobStore(connection, settings)

    def is_running(job_id: str) -> bool:
        record = store.get(job_id)
        return record is not None and record.status not in TERMINAL_STATUSES

    sweep_cache(is_running, CACHE_IDLE_SECONDS)
    if sweep_storage:
        sweep_orphaned_objects(connection, settings)
