"""Recording page outcomes and closing a document once its last page is recorded."""

import json
from dataclasses import dataclass

from loguru import logger

from core.errors import PindaiError, error_for_code
from core.jobs import (
    JobStatus,
    PageOutcome,
    job_object_prefix,
    output_object_key,
    page_output_object_key,
    page_text_object_key,
    text_object_key,
)
from core.jobstore import JobStore
from core.ocr_options import Output
from core.settings import get_settings
from storage import ObjectStorage, StorageError
from worker.outputs import merge_hocr, unite_pdfs, words_document
from worker.pages import PageResult
from worker.retry import retry_transient
from worker.source_cache import drop_cached_source
from worker.workdir import job_directory


@dataclass
class DocumentWriter:
    """Writes one job's page outcomes and final text."""

    job_id: str
    store: JobStore
    storage: ObjectStorage

    def save_page_text(self, page: int, text: str) -> None:
        self._put(page_text_object_key(self.job_id, page), text.encode("utf-8"))

    def save_page(self, result: PageResult) -> None:
        """Store a read page's text and outputs, then record its outcome."""
        page = result.outcome.page
        if result.text is not None:
            self.save_page_text(page, result.text)
        if result.words is not None:
            data = json.dumps(result.words, ensure_ascii=False).encode("utf-8")
            self._put(page_output_object_key(self.job_id, page, Output.WORDS), data)
        if result.hocr is not None:
            data = result.hocr.encode("utf-8")
            self._put(page_output_object_key(self.job_id, page, Output.HOCR), data)
        if result.pdf is not None:
            key = page_output_object_key(self.job_id, page, Output.PDF)
            self._put(key, result.pdf.read_bytes())
        self.record(result.outcome)

    def _put(self, key: str, data: bytes) -> None:
        retry_transient(
            lambda: self.storage.put_bytes(key, data), operation="write page output"
        )

    def record(self, outcome: PageOutcome) -> None:
        """Record a page outcome; the recording that completes the job closes it."""
        recorded = retry_transient(
            lambda: self.store.record_page(self.job_id, outcome),
            operation="record page",
        )
        if not recorded.recorded:
            self._discard_late_page(outcome)
            return
        if outcome.ok:
            logger.info(
                "page done",
                page=outcome.page,
                duration_ms=outcome.duration_ms,
                **outcome.extra,
            )
        else:
            logger.warning(
                "page failed",
                page=outcome.page,
                duration_ms=outcome.duration_ms,
                error_code=outcome.error_code,
                error_message=outcome.error_message,
            )
        if recorded.completes_job:
            self.close()

    def fail_page(self, page: int, error: PindaiError) -> None:
        """Record `page` as failed with `error`, unless it already has an outcome."""
        self.record(
            PageOutcome(
                page=page,
                duration_ms=0,
                error_code=error.code,
                error_message=error.message,
            )
        )

    def close(self) -> None:
        """Assemble the full text and end the job: finished, partial, or failed."""
        outcomes = self.store.get_pages(self.job_id)
        failures = [outcome for outcome in outcomes if not outcome.ok]
        summary = {
            "page_count": len(outcomes),
            "pages_ok": len(outcomes) - len(failures),
            "pages_failed": len(failures),
        }
        drop_cached_source(self.job_id)
        if len(failures) == len(outcomes):
            first = failures[0]
            if self.store.fail(self.job_id, first.error_code, first.error_message):
                logger.warning(
                    "job failed",
                    error_code=first.error_code,
                    reason="no page could be read",
                    **summary,
                )
            return

        texts = [
            self._read_page_text(outcome.page) for outcome in outcomes if outcome.ok
        ]
        full_text = "\n\n".join(texts).encode("utf-8")
        key = text_object_key(self.job_id)
        retry_transient(
            lambda: self.storage.put_bytes(key, full_text), operation="write text"
        )
        record = self.store.get(self.job_id)
        if record is not None:
            done = [outcome.page for outcome in outcomes if outcome.ok]
            self._assemble_outputs(record.options.get("outputs", []), done)
        if self.store.finish(self.job_id, partial=bool(failures)):
            logger.info("job finished", **summary)
            return
        # The job was cancelled or deleted while its last page ran.
        self._delete_objects_of_ended_job()

    def _assemble_outputs(self, outputs: list[str], pages: list[int]) -> None:
        """Join the per-page parts of each requested output into one document."""
        if Output.WORDS in outputs:
            entries = [
                json.loads(self._get(self._part(page, Output.WORDS))) for page in pages
            ]
            self._put(
                output_object_key(self.job_id, Output.WORDS), words_document(entries)
            )
        if Output.HOCR in outputs:
            parts = [
                (page, self._get(self._part(page, Output.HOCR)).decode("utf-8"))
                for page in pages
            ]
            self._put(output_object_key(self.job_id, Output.HOCR), merge_hocr(parts))
        if Output.PDF in outputs and pages:
            self._assemble_pdf(pages)

    def _assemble_pdf(self, pages: list[int]) -> None:
        settings = get_settings()
        with job_directory() as workdir:
            parts = []
            for page in pages:
                part = workdir / f"{page:05d}.pdf"
                part.write_bytes(self._get(self._part(page, Output.PDF)))
                parts.append(part)
            document = workdir / "document.pdf"
            unite_pdfs(
                parts,
                document,
                timeout_s=settings.RASTER_TIMEOUT_SECONDS,
                memory_limit_bytes=settings.TOOL_MEMORY_LIMIT_MB * 1024 * 1024,
            )
            self._put(output_object_key(self.job_id, Output.PDF), document.read_bytes())

    def _part(self, page: int, output: Output) -> str:
        return page_output_object_key(self.job_id, page, output)

    def _get(self, key: str) -> bytes:
        return retry_transient(
            lambda: self.storage.get_bytes(key), operation="read page output"
        )

    def _read_page_text(self, page: int) -> str:
        key = page_text_object_key(self.job_id, page)
        data = retry_transient(
            lambda: self.storage.get_bytes(key), operation="read page text"
        )
        return data.decode("utf-8")

    def _discard_late_page(self, outcome: PageOutcome) -> None:
        """Handle an outcome that was not recorded: a duplicate, or a gone job."""
        record = self.store.get(self.job_id)
        if record is None or record.status == JobStatus.FAILED:
            self._delete_objects_of_ended_job()
            drop_cached_source(self.job_id)
        logger.info("page outcome not recorded", page=outcome.page)

    def _delete_objects_of_ended_job(self) -> None:
        record = self.store.get(self.job_id)
        if record is not None and record.status == JobStatus.FINISHED:
            return
        try:
            self.storage.delete_prefix(job_object_prefix(self.job_id))
        except StorageError as error:
            logger.warning("deleting objects of an ended job failed", error=str(error))


def error_of(outcome: PageOutcome) -> PindaiError:
    """Rebuild the exception of a recorded page failure, to fail its RQ job with it."""
    error = error_for_code(outcome.error_code or "", outcome.error_message)
    error.recorded = True
    return error
