"""The RQ worker class that pindai runs (`rq worker --worker-class ...`)."""

from rq import Worker
from rq.job import Job

from core.errors import ErrorCode
from core.jobstore import JobStore
from core.settings import get_settings
from worker.workdir import remove_stale_directories


class OcrWorker(Worker):
    """An RQ worker that also fails the pindai job when its work horse dies.

    RQ moves the job of a killed work horse to its failed registry without running
    the job's failure callback, so the job record would otherwise stay `started`.
    """

    def bootstrap(self, *args, **kwargs) -> None:
        remove_stale_directories()
        super().bootstrap(*args, **kwargs)

    def handle_work_horse_killed(self, job: Job, retpid, ret_val, rusage) -> None:
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)
        store = JobStore(self.connection, get_settings().RESULT_TTL_SECONDS)
        failed = store.fail(
            job.args[0],
            ErrorCode.WORKER_LOST,
            "The worker process running this job died; submit the file again.",
        )
        if failed:
            self.log.warning(
                "Worker %s: job %s failed with worker_lost (exit status %s)",
                self.name,
                job.id,
                ret_val,
            )
