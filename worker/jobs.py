"""The functions RQ runs: probe a PDF, OCR a document, record RQ-level failures.

Each function receives only the job id, the object key and the options. Everything a
client reads afterwards goes to the job record in Redis (status, page outcomes) and to
object storage (page text).
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from loguru import logger
from redis import Redis
from rq import get_current_job
from rq.exceptions import AbandonedJobError
from rq.job import Job
from rq.timeouts import JobTimeoutException

from core.errors import (
    ErrorCode,
    OcrTimeout,
    PdfCorrupt,
    PindaiError,
    StorageUnavailable,
    TooManyPages,
    UnsupportedMediaType,
    error_for_code,
)
from core.filetypes import FileType, sniff_file_type
from core.jobs import JobStatus, PageOutcome, page_text_object_key
from core.jobstore import JobStore
from core.queueing import (
    OCR_FUNCTION,
    create_queue,
    enqueue_stage,
    ocr_timeout_seconds,
)
from core.settings import Settings, get_settings
from storage import ObjectStorage, StorageError, create_storage
from worker.images import prepare_image
from worker.process import ToolTimeout
from worker.rasterize import PdfInfo, fit_dpi, read_pdf_info, render_page
from worker.tesseract import recognize_text
from worker.workdir import job_directory

T = TypeVar("T")


@dataclass
class StageContext:
    job_id: str
    object_key: str
    options: dict[str, Any]
    rq_job: Job
    settings: Settings
    store: JobStore
    storage: ObjectStorage

    @property
    def memory_limit_bytes(self) -> int:
        return self.settings.TOOL_MEMORY_LIMIT_MB * 1024 * 1024


def probe_document(job_id: str, object_key: str, options: dict[str, Any]) -> dict:
    """Check a PDF's page count and encryption, then enqueue its OCR stage."""
    return _run_stage(job_id, object_key, options, _probe)


def ocr_document(job_id: str, object_key: str, options: dict[str, Any]) -> dict:
    """OCR every page of an image or PDF and store each page's text."""
    return _run_stage(job_id, object_key, options, _ocr)


def record_rq_failure(
    job: Job, connection: Redis, exc_type: type, exc_value: BaseException, tb: Any
) -> None:
    """Mark the pindai job failed when RQ fails one of its stages.

    The job functions record their own errors first. This callback covers the cases
    they cannot see: RQ's own time limit, and jobs that a dead worker abandoned.
    """
    job_id = job.args[0]
    if exc_type is not None and issubclass(exc_type, AbandonedJobError):
        code, message = ErrorCode.WORKER_LOST, "The worker running this job stopped."
    elif exc_type is not None and issubclass(exc_type, JobTimeoutException):
        code, message = ErrorCode.OCR_TIMEOUT, "The job ran past its time limit."
    else:
        code, message = ErrorCode.INTERNAL_ERROR, "The job failed unexpectedly."
    store = JobStore(connection, get_settings().RESULT_TTL_SECONDS)
    if store.fail(job_id, code, message):
        logger.warning(
            "job failed in RQ",
            job_id=job_id,
            rq_job_id=job.id,
            error_code=code,
            exception=exc_type.__name__ if exc_type else None,
        )


def _run_stage(
    job_id: str,
    object_key: str,
    options: dict[str, Any],
    body: Callable[[StageContext], T],
) -> T:
    rq_job = get_current_job()
    if rq_job is None:
        raise RuntimeError("pindai job functions run only inside an RQ worker")
    settings = get_settings()
    context = StageContext(
        job_id=job_id,
        object_key=object_key,
        options=options,
        rq_job=rq_job,
        settings=settings,
        store=JobStore(rq_job.connection, settings.RESULT_TTL_SECONDS),
        storage=create_storage(settings),
    )
    request_id = rq_job.meta.get("request_id", "")
    with logger.contextualize(
        job_id=job_id, request_id=request_id, rq_job_id=rq_job.id
    ):
        try:
            return body(context)
        except PindaiError as error:
            _fail(context, error)
            raise
        except StorageError as error:
            logger.warning("storage failed", error=str(error))
            _fail(context, StorageUnavailable())
            raise StorageUnavailable() from error
        except JobTimeoutException:
            _fail(context, OcrTimeout("The job ran past its time limit."))
            raise
        except Exception:
            logger.exception("job crashed")
            _fail(context, PindaiError("The job failed unexpectedly."))
            raise


def _fail(context: StageContext, error: PindaiError) -> None:
    if context.store.fail(context.job_id, error.code, error.message):
        logger.warning("job failed", error_code=error.code, error_message=error.message)


def _start(context: StageContext) -> bool:
    """Move the job to `started` if needed; return False when it must not run."""
    record = context.store.get(context.job_id)
    if record is None:
        logger.warning("job record missing or expired; skipping")
        return False
    if record.status == JobStatus.QUEUED:
        context.store.mark_started(context.job_id)
        logger.info(
            "job started", file_type=record.file_type, size_bytes=record.size_bytes
        )
        return True
    if record.status == JobStatus.STARTED:
        return True
    logger.info("job already ended; skipping", status=record.status)
    return False


def _download(context: StageContext, workdir: Path) -> tuple[Path, FileType]:
    source = workdir / "source"
    context.storage.download(context.object_key, source)
    with source.open("rb") as file:
        file_type = sniff_file_type(file.read(16))
    if file_type is None:
        raise UnsupportedMediaType()
    return source, file_type


def _read_pdf(context: StageContext, pdf: Path) -> PdfInfo:
    settings = context.settings
    info = read_pdf_info(
        pdf,
        timeout_s=settings.RASTER_TIMEOUT_SECONDS,
        memory_limit_bytes=context.memory_limit_bytes,
        max_pages=settings.MAX_PAGES,
    )
    if info.page_count == 0:
        raise PdfCorrupt("The PDF has no pages.")
    if info.page_count > settings.MAX_PAGES:
        raise TooManyPages(
            f"The PDF has {info.page_count} pages; the limit is "
            f"{settings.MAX_PAGES}. Split it and submit the parts."
        )
    return info


def _probe(context: StageContext) -> dict:
    if not _start(context):
        return {"skipped": True}
    with job_directory() as workdir:
        source, file_type = _download(context, workdir)
        page_count = (
            _read_pdf(context, source).page_count if file_type == FileType.PDF else 1
        )
    context.store.set_page_count(context.job_id, page_count)
    queue = create_queue(context.rq_job.connection, context.settings)
    enqueue_stage(
        queue,
        context.settings,
        function=OCR_FUNCTION,
        job_id=context.job_id,
        object_key=context.object_key,
        options=context.options,
        request_id=context.rq_job.meta.get("request_id", ""),
        timeout_seconds=ocr_timeout_seconds(context.settings, page_count),
        at_front=True,
    )
    logger.info("document probed", file_type=file_type, page_count=page_count)
    return {"page_count": page_count}


def _ocr(context: StageContext) -> dict:
    if not _start(context):
        return {"skipped": True}
    started = time.monotonic()
    with job_directory() as workdir:
        source, file_type = _download(context, workdir)
        if file_type == FileType.PDF:
            outcomes = _ocr_pdf(context, source, workdir)
        else:
            outcomes = _ocr_image(context, source, workdir)

    failures = [outcome for outcome in outcomes if not outcome.ok]
    summary = {
        "file_type": str(file_type),
        "page_count": len(outcomes),
        "pages_ok": len(outcomes) - len(failures),
        "pages_failed": len(failures),
        "duration_ms": int((time.monotonic() - started) * 1000),
    }
    if len(failures) == len(outcomes):
        error = error_for_code(failures[0].error_code, failures[0].error_message)
        _fail(context, error)
        logger.warning("job ended with no readable page", **summary)
        raise error
    context.store.finish(context.job_id, partial=bool(failures))
    logger.info("job finished", **summary)
    return summary


def _ocr_image(context: StageContext, source: Path, workdir: Path) -> list[PageOutcome]:
    context.store.set_page_count(context.job_id, 1)
    started = time.monotonic()
    prepared = prepare_image(
        source, workdir, max_pixels=context.settings.MAX_IMAGE_PIXELS
    )
    outcome = _recognize_page(context, 1, prepared.path, prepared.dpi, started)
    return [outcome]


def _ocr_pdf(context: StageContext, pdf: Path, workdir: Path) -> list[PageOutcome]:
    settings = context.settings
    info = _read_pdf(context, pdf)
    context.store.set_page_count(context.job_id, info.page_count)
    outcomes = []
    for page in range(1, info.page_count + 1):
        started = time.monotonic()
        try:
            dpi = fit_dpi(
                info.page_sizes.get(page), settings.OCR_DPI, settings.MAX_IMAGE_PIXELS
            )
            image = render_page(
                pdf,
                page,
                workdir,
                dpi=dpi,
                timeout_s=settings.RASTER_TIMEOUT_SECONDS,
                memory_limit_bytes=context.memory_limit_bytes,
            )
        except (PindaiError, ToolTimeout) as error:
            outcomes.append(_page_failed(context, page, _as_page_error(error), started))
            continue
        try:
            outcomes.append(_recognize_page(context, page, image, dpi, started))
        finally:
            image.unlink(missing_ok=True)
    return outcomes


def _recognize_page(
    context: StageContext, page: int, image: Path, dpi: int | None, started: float
) -> PageOutcome:
    settings = context.settings
    try:
        text = recognize_text(
            image,
            lang=settings.OCR_LANG,
            dpi=dpi,
            timeout_s=settings.PAGE_TIMEOUT_SECONDS,
            memory_limit_bytes=context.memory_limit_bytes,
        )
    except PindaiError as error:
        return _page_failed(context, page, error, started)
    context.storage.put_bytes(
        page_text_object_key(context.job_id, page), text.encode("utf-8")
    )
    outcome = PageOutcome(
        page=page,
        duration_ms=_elapsed_ms(started),
        extra={"dpi": dpi, "chars": len(text)},
    )
    context.store.record_page(context.job_id, outcome)
    logger.info(
        "page done", page=page, duration_ms=outcome.duration_ms, chars=len(text)
    )
    return outcome


def _page_failed(
    context: StageContext, page: int, error: PindaiError, started: float
) -> PageOutcome:
    outcome = PageOutcome(
        page=page,
        duration_ms=_elapsed_ms(started),
        error_code=error.code,
        error_message=error.message,
    )
    context.store.record_page(context.job_id, outcome)
    logger.warning(
        "page failed",
        page=page,
        duration_ms=outcome.duration_ms,
        error_code=error.code,
        error_message=error.message,
    )
    return outcome


def _as_page_error(error: Exception) -> PindaiError:
    if isinstance(error, ToolTimeout):
        return OcrTimeout(f"Rendering the page took longer than {error.timeout_s:g} s.")
    assert isinstance(error, PindaiError)
    return error


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
