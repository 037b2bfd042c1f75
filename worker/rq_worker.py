"""The RQ worker class that pindai runs (`rq worker --worker-class ...`)."""

import threading

from loguru import logger
from redis import ConnectionPool, Redis
from redis.exceptions import RedisError
from rq import Queue, Worker
from rq.job import Job

from core.heartbeats import record_heartbeat, remove_heartbeat
from core.settings import get_settings
from worker.leases import release_lease, take_lease
from worker.recovery import recover_stage, run_monitor_pass
from worker.tesseract import installed_languages
from worker.workdir import remove_stale_directories

# How often each worker looks for expired leases and overdue documents.
MONITOR_INTERVAL_SECONDS = 10
# Deleting local objects of expired jobs lists the storage directory: every 10 min.
STORAGE_SWEEP_EVERY_PASSES = 60


class OcrWorker(Worker):
    """An RQ worker that also recovers work lost with dead processes.

    A monitor thread in each worker writes the worker's heartbeat, reclaims the
    stages of workers that died without a trace (SIGKILL, a lost container), and
    fails pages past their document's deadline. When this worker's own work horse
    dies, the stage is recovered at once instead of waiting for its lease to expire.
    """

    def bootstrap(self, *args, **kwargs) -> None:
        remove_stale_directories()
        super().bootstrap(*args, **kwargs)
        self._languages = installed_languages()
        logger.info("tesseract languages", languages="+".join(self._languages))
        record_heartbeat(self.connection, self.name, self._languages)
        self._monitor_stop = threading.Event()
        monitor = threading.Thread(
            target=self._monitor, name="pindai-monitor", daemon=True
        )
        monitor.start()

    def _monitor(self) -> None:
        settings = get_settings()
        # A separate connection pool: a work horse forked while this thread holds a
        # lock of the worker's pool would find that lock held forever.
        pool = self.connection.connection_pool
        connection = Redis(
            connection_pool=ConnectionPool(
                connection_class=pool.connection_class, **pool.connection_kwargs
            )
        )
        passes = 0
        while not self._monitor_stop.wait(MONITOR_INTERVAL_SECONDS):
            passes += 1
            try:
                record_heartbeat(connection, self.name, self._languages)
                run_monitor_pass(
                    connection,
                    settings,
                    sweep_storage=passes % STORAGE_SWEEP_EVERY_PASSES == 1,
                )
            except RedisError as error:
                logger.warning("monitor pass failed", error=str(error))
            except Exception:
                logger.exception("monitor pass crashed")

    def request_stop(self, signum, frame) -> None:
        """Stop taking work; hand back the running stage if it outlasts the handoff.

        RQ's warm shutdown waits for the current job. A platform stopping a container
        sends SIGKILL some seconds after SIGTERM, which would lose that page until
        its lease expires. So after SHUTDOWN_HANDOFF_SECONDS the stage is enqueued
        again for another worker and the work horse is killed. Page outcomes are
        recorded once, so a page done twice changes nothing.
        """
        handoff = get_settings().SHUTDOWN_HANDOFF_SECONDS
        job = self.get_current_job()
        if job is not None and self.horse_pid:
            timer = threading.Timer(handoff, self._hand_back, args=(job.id,))
            timer.daemon = True
            timer.start()
        super().request_stop(signum, frame)

    def _hand_back(self, rq_job_id: str) -> None:
        if not self.horse_pid or not release_lease(self.connection, rq_job_id):
            return
        logger.warning(
            "shutting down; handing the running stage back", rq_job_id=rq_job_id
        )
        recover_stage(self.connection, get_settings(), rq_job_id)
        self.kill_horse()

    def execute_job(self, job: Job, queue: Queue) -> None:
        """Lease the job before forking its work horse, then run it as RQ does.

        The horse renews the lease while it works. Taking it here, as the job
        leaves the queue, means a worker killed while the horse is still starting
        loses the job only until the lease expires (LEASE_SECONDS), not until RQ
        notices the abandoned job (about 90 s).
        """
        take_lease(self.connection, job.id, get_settings().LEASE_SECONDS)
        super().execute_job(job, queue)

    def handle_work_horse_killed(self, job: Job, retpid, ret_val, rusage) -> None:
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)
        release_lease(self.connection, job.id)
        # Recovered even without a lease: the horse may have died before taking it.
        logger.warning(
            "work horse died; recovering its stage",
            rq_job_id=job.id,
            exit_status=ret_val,
        )
        recover_stage(self.connection, get_settings(), job.id)

    def teardown(self) -> None:
        stop = getattr(self, "_monitor_stop", None)
        if stop is not None:
            stop.set()
        try:
            remove_heartbeat(self.connection, self.name)
        except RedisError as error:
            logger.warning("removing the worker heartbeat failed", error=str(error))
        super().teardown()
