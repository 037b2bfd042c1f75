"""The functions RQ runs: probe a PDF, OCR one page of it, OCR an image.

Each function receives only the job id, the object key and the options. Everything a
client reads afterwards goes to the job record in Redis (status, page outcomes) and to
object storage (page text, the assembled text).
"""

import errno
import functools
import hashlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from loguru import logger
from redis import Redis
from redis.exceptions import RedisError
from rq import get_current_job
from rq.exceptions import AbandonedJobError
from rq.job import Job
from rq.timeouts import JobTimeoutException

from core.errors import (
    DeadlineExceeded,
    InternalError,
    OcrTimeout,
    PagesOutOfRange,
    PdfCorrupt,
    PindaiError,
    StorageUnavailable,
    TooManyPages,
    UnsupportedMediaType,
)
from core.filetypes import PAGED_TYPES, FileType, sniff_file_type
from core.jobs import JobStatus, PageOutcome, parse_timestamp, utc_now
from core.jobstore import JobStore
from core.ocr_options import format_page_ranges, parse_page_ranges
from core.queueing import (
    PAGE_FUNCTION,
    PAGE_QUEUE,
    Stage,
    document_deadline_seconds,
    enqueue_stages,
    page_timeout_seconds,
)
from core.settings import Settings, get_settings
from storage import ObjectStorage, StorageError, create_storage
from worker.document import DocumentWriter, error_of
from worker.images import count_frames, prepare_image
from worker.leases import hold_lease
from worker.pages import PageRequest, PageResult, read_image, read_pdf_page
from worker.rasterize import PdfInfo, choose_dpi, read_image_resolutions, read_pdf_info
from worker.recovery import recover_stage
from worker.retry import retry_transient
from worker.source_cache import cached_source, drop_cached_source
from worker.tesseract import installed_languages
from worker.workdir import job_directory

T = TypeVar("T")

DISK_FULL_MESSAGE = "The worker ran out of temporary disk space; submit the file again."


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
    def writer(self) -> DocumentWriter:
        return DocumentWriter(self.job_id, self.store, self.storage)

    @property
    def page(self) -> int | None:
        return self.options.get("page")

    @functools.cached_property
    def selection(self) -> list[int] | None:
        """The page numbers of the `pages` option, or None to read every page."""
        value = self.options.get("pages")
        if value is None:
            return None
        return parse_page_ranges(value, self.settings.MAX_PAGES)


def probe_document(job_id: str, object_key: str, options: dict[str, Any]) -> dict:
    """Check a PDF's page count, encryption and resolutions; enqueue one item a page."""
    return _run_stage(job_id, object_key, options, _probe)


def ocr_page(job_id: str, object_key: str, options: dict[str, Any]) -> dict:
    """Render and OCR page `options["page"]` of a PDF and record its outcome."""
    return _run_stage(job_id, object_key, options, _ocr_page)


def ocr_image(job_id: str, object_key: str, options: dict[str, Any]) -> dict:
    """OCR a single image: the short path, with no probe and no fan-out."""
    return _run_stage(job_id, object_key, options, _ocr_image)


def record_rq_failure(
    job: Job, connection: Redis, exc_type: type, exc_value: BaseException, tb: Any
) -> None:
    """Record the failure of a stage that RQ, not pindai, ended.

    The stages record their own errors before raising, so this matters for RQ's own
    time limit, and for stages that RQ finds abandoned by a dead worker: those run
    again, or fail with `worker_lost` past MAX_ATTEMPTS.
    """
    if exc_type is not None and issubclass(exc_type, AbandonedJobError):
        # Usually the lease monitor has already run the stage again; this covers a
        # worker killed before it took the stage's lease.
        logger.warning("RQ found an abandoned stage; recovering it", rq_job_id=job.id)
        recover_stage(connection, get_settings(), job.id)
        return
    if exc_type is not None and issubclass(exc_type, JobTimeoutException):
        error: PindaiError = OcrTimeout("The work ran past its time limit.")
    else:
        error = InternalError("The job failed unexpectedly.")
    job_id, object_key, options = job.args
    settings = get_settings()
    context = StageContext(
        job_id=job_id,
        object_key=object_key,
        options=dict(options),
        rq_job=job,
        settings=settings,
        store=JobStore(connection, settings),
        storage=create_storage(settings),
    )
    request_id = job.meta.get("request_id", "")
    with logger.contextualize(job_id=job_id, request_id=request_id, rq_job_id=job.id):
        _record_error(context, error)


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
        store=JobStore(rq_job.connection, settings),
        storage=create_storage(settings),
    )
    request_id = rq_job.meta.get("request_id", "")
    log_context = {"job_id": job_id, "request_id": request_id, "rq_job_id": rq_job.id}
    if context.page is not None:
        log_context["page"] = context.page
    with (
        logger.contextualize(**log_context),
        hold_lease(rq_job.connection, rq_job.id, settings.LEASE_SECONDS),
    ):
        try:
            return body(context)
        except PindaiError as error:
            if not error.recorded:
                _record_error(context, error)
            raise
        except (StorageError, RedisError) as error:
            logger.warning("storage or Redis failed after retries", error=str(error))
            _record_error(context, StorageUnavailable())
            raise StorageUnavailable() from error
        except JobTimeoutException:
            _record_error(context, OcrTimeout("The work ran past its time limit."))
            raise
        except OSError as error:
            if error.errno != errno.ENOSPC:
                logger.exception("stage crashed")
                _record_error(context, InternalError("The job failed unexpectedly."))
                raise
            logger.error("temporary directory full", tmpdir=tempfile.gettempdir())
            disk_full = InternalError(DISK_FULL_MESSAGE)
            _record_error(context, disk_full)
            raise disk_full from error
        except Exception:
            logger.exception("stage crashed")
            _record_error(context, InternalError("The job failed unexpectedly."))
            raise


def _record_error(context: StageContext, error: PindaiError) -> None:
    """Fail the page a page stage was working on, or the job of any other stage."""
    if context.page is not None:
        context.writer.fail_page(context.page, error)
        return
    if context.store.fail(context.job_id, error.code, error.message):
        logger.warning("job failed", error_code=error.code, error_message=error.message)
    drop_cached_source(context.job_id)


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


def _record_checksum(context: StageContext, path: Path) -> None:
    """Fill in the SHA-256 of a direct upload, which the API never read."""
    record = context.store.get(context.job_id)
    if record is None or record.sha256:
        return
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1024 * 1024):
            digest.update(chunk)
    context.store.set_checksum(context.job_id, digest.hexdigest())


def _sniff(path: Path) -> FileType:
    with path.open("rb") as file:
        file_type = sniff_file_type(file.read(16))
    if file_type is None:
        raise UnsupportedMediaType()
    return file_type


def _source(context: StageContext) -> Path:
    return retry_transient(
        lambda: cached_source(context.storage, context.object_key, context.job_id),
        operation="download source",
    )


def _selected_pages(context: StageContext, page_count: int) -> list[int]:
    """Return the pages to read: the `pages` option within the document, or all.

    Raises PagesOutOfRange when the option names a page past the end, and
    TooManyPages when the document has more than MAX_PAGES pages and no selection.
    """
    settings = context.settings
    if context.selection is None:
        if page_count > settings.MAX_PAGES:
            raise TooManyPages(
                f"The document has {page_count} pages; the limit is "
                f"{settings.MAX_PAGES}. Split it, or select pages with `pages`."
            )
        return list(range(1, page_count + 1))
    beyond = [page for page in context.selection if page > page_count]
    if beyond:
        raise PagesOutOfRange(
            f"The document has {page_count} pages; `pages` selects page {beyond[0]}."
        )
    return context.selection


def _read_pdf(context: StageContext, pdf: Path) -> PdfInfo:
    settings = context.settings
    last_page = context.selection[-1] if context.selection else settings.MAX_PAGES
    info = read_pdf_info(
        pdf,
        timeout_s=settings.RASTER_TIMEOUT_SECONDS,
        memory_limit_bytes=settings.TOOL_MEMORY_LIMIT_MB * 1024 * 1024,
        max_pages=last_page,
    )
    if info.page_count == 0:
        raise PdfCorrupt("The PDF has no pages.")
    return info


def _probe(context: StageContext) -> dict:
    if not _start(context):
        return {"skipped": True}
    source = _source(context)
    _record_checksum(context, source)
    file_type = _sniff(source)
    if file_type == FileType.PDF:
        page_count, page_options = _probe_pdf(context, source)
    elif file_type == FileType.TIFF:
        page_count = count_frames(source, max_pixels=context.settings.MAX_IMAGE_PIXELS)
        page_options = {}
    else:
        raise UnsupportedMediaType("The document is not a PDF or TIFF.")
    pages = _selected_pages(context, page_count)
    _fan_out(context, pages, page_options)
    logger.info(
        "document probed",
        file_type=file_type,
        page_count=page_count,
        pages_selected=len(pages),
    )
    return {"page_count": page_count, "pages": len(pages)}


def _probe_pdf(context: StageContext, source: Path) -> tuple[int, dict[int, dict]]:
    """Read the page count and, per page, the size and resolution to render at."""
    settings = context.settings
    info = _read_pdf(context, source)
    resolutions = read_image_resolutions(
        source,
        info.page_sizes,
        timeout_s=settings.RASTER_TIMEOUT_SECONDS,
        memory_limit_bytes=settings.TOOL_MEMORY_LIMIT_MB * 1024 * 1024,
    )
    page_options = {
        page: {
            "dpi": choose_dpi(resolutions.get(page), settings.OCR_DPI),
            "size": size,
        }
        for page, size in info.page_sizes.items()
    }
    return info.page_count, page_options


def _fan_out(
    context: StageContext, pages: list[int], page_options: dict[int, dict]
) -> None:
    """Store the page count and deadline, then enqueue one item per page."""
    settings = context.settings
    selected = context.selection is not None
    context.store.set_page_count(
        context.job_id,
        len(pages),
        deadline_seconds=document_deadline_seconds(settings, len(pages)),
        page_numbers=format_page_ranges(pages) if selected else None,
    )
    stages = [
        Stage(
            function=PAGE_FUNCTION,
            job_id=context.job_id,
            object_key=context.object_key,
            options=dict(
                context.options,
                page=page,
                render_dpi=page_options.get(page, {}).get("dpi", settings.OCR_DPI),
                size=page_options.get(page, {}).get("size"),
            ),
            request_id=context.rq_job.meta.get("request_id", ""),
            timeout_seconds=page_timeout_seconds(settings),
            queue=PAGE_QUEUE,
        )
        for page in pages
    ]
    enqueue_stages(context.rq_job.connection, settings, stages)


def _page_request(context: StageContext) -> PageRequest:
    return PageRequest.from_options(
        context.options, context.settings, installed_languages()
    )


def _ocr_page(context: StageContext) -> dict:
    page = context.page
    record = context.store.get(context.job_id)
    if record is None or record.status != JobStatus.STARTED:
        logger.info("job not running; page skipped")
        drop_cached_source(context.job_id)
        return {"skipped": True}
    if context.store.has_page(context.job_id, page):
        logger.info("page already recorded; skipped")
        return {"skipped": True}
    if record.deadline_at and utc_now() > parse_timestamp(record.deadline_at):
        raise DeadlineExceeded()

    source = _source(context)
    request = _page_request(context)
    settings = context.settings
    with job_directory() as workdir:
        if record.file_type == FileType.TIFF:
            result = _read_tiff_page(source, page, workdir, request, settings)
        else:
            size = context.options.get("size")
            result = read_pdf_page(
                source,
                page,
                workdir,
                request=request,
                settings=settings,
                dpi=int(context.options.get("render_dpi") or settings.OCR_DPI),
                size_points=tuple(size) if size else None,
            )
        context.writer.save_page(result)
    if not result.outcome.ok:
        raise error_of(result.outcome)
    return {"page": page, "chars": len(result.text or "")}


def _read_tiff_page(
    source: Path,
    page: int,
    workdir: Path,
    request: PageRequest,
    settings: Settings,
) -> PageResult:
    try:
        prepared = prepare_image(
            source,
            workdir,
            max_pixels=settings.MAX_IMAGE_PIXELS,
            frame=page - 1,
            dpi_override=request.dpi,
        )
    except PindaiError as error:
        return PageResult(
            PageOutcome(
                page=page,
                duration_ms=0,
                error_code=error.code,
                error_message=error.message,
            ),
            None,
        )
    return read_image(prepared, page, request=request, settings=settings)


def _ocr_image(context: StageContext) -> dict:
    if not _start(context):
        return {"skipped": True}
    selection = context.options.get("pages")
    if selection is not None and selection != "1":
        raise PagesOutOfRange(f"An image has one page; `pages` selects {selection}.")
    context.store.set_page_count(context.job_id, 1)
    request = _page_request(context)
    with job_directory() as workdir:
        source = workdir / "source"
        retry_transient(
            lambda: context.storage.download(context.object_key, source),
            operation="download source",
        )
        _record_checksum(context, source)
        if _sniff(source) in PAGED_TYPES:
            raise UnsupportedMediaType("The document is a PDF or TIFF, not an image.")
        prepared = prepare_image(
            source,
            workdir,
            max_pixels=context.settings.MAX_IMAGE_PIXELS,
            dpi_override=request.dpi,
        )
        result = read_image(prepared, 1, request=request, settings=context.settings)
        context.writer.save_page(result)
    if not result.outcome.ok:
        raise error_of(result.outcome)
    return {"page": 1, "chars": len(result.text or "")}
