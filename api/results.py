"""Assembly of a job's result body from its Redis record and its stored page texts."""

import asyncio

from api.schemas import JobError, JobResult, PageQuality, PageResult
from core.errors import JobNotFound
from core.jobs import (
    JobRecord,
    JobStatus,
    PageOutcome,
    PageState,
    page_text_object_key,
    result_path,
)
from storage import AsyncObjectStorage, ObjectNotFound

# Above this many characters of page text, the result body carries no text and
# points to the text endpoint instead, so a 300-page result stays a small JSON body.
INLINE_TEXT_MAX_CHARS = 200_000
# Page texts read from storage at once while building one result.
READ_CONCURRENCY = 16


def text_url(job_id: str) -> str:
    return f"/api/v1/ocr/result/{job_id}/text"


async def build_result(
    record: JobRecord, outcomes: list[PageOutcome], storage: AsyncObjectStorage
) -> JobResult:
    """Return the result body: summary, every page's state and, if small, the text."""
    result = JobResult.from_record(record)
    result.text_url = text_url(record.job_id)
    result.output_urls = {
        output: f"{result_path(record.job_id)}/{output}"
        for output in record.options.get("outputs", ["text"])
    }
    result.error = JobError.of_record(record)
    if record.page_count is None:
        return result

    by_page = {outcome.page: outcome for outcome in outcomes}
    total_chars = sum(int(outcome.extra.get("chars", 0)) for outcome in outcomes)
    result.text_inline = total_chars <= INLINE_TEXT_MAX_CHARS
    texts: dict[int, str] = {}
    # A failed job's page texts are not served: a cancelled job's are deleted.
    if result.text_inline and record.status != JobStatus.FAILED:
        done = [outcome.page for outcome in outcomes if outcome.ok]
        texts = await read_page_texts(storage, record.job_id, done)

    result.pages = [
        page_result(page, by_page.get(page), texts.get(page))
        for page in record.pages_to_read()
    ]
    if record.status == JobStatus.FAILED:
        # Pages that never ran share the job's error: they will not run any more.
        for page in result.pages:
            if page.state == PageState.PENDING:
                page.state = PageState.FAILED
                page.error = result.error
    if record.status == JobStatus.FINISHED and result.text_inline:
        result.text = "\n\n".join(texts[page] for page in sorted(texts))
    return result


def page_result(page: int, outcome: PageOutcome | None, text: str | None) -> PageResult:
    if outcome is None:
        return PageResult(
            page=page,
            state=PageState.PENDING,
            text=None,
            error=None,
            duration_ms=None,
            dpi=None,
        )
    error = None
    if not outcome.ok:
        error = JobError(code=outcome.error_code, message=outcome.error_message or "")
    quality = None
    if outcome.ok and "source" in outcome.extra:
        quality = PageQuality(
            source=outcome.extra["source"],
            rotation=outcome.extra.get("rotation", 0),
            rotation_confidence=outcome.extra.get("rotation_confidence"),
            skew=outcome.extra.get("skew", 0.0),
            words=outcome.extra.get("words", 0),
            mean_confidence=outcome.extra.get("mean_confidence"),
            min_confidence=outcome.extra.get("min_confidence"),
        )
    return PageResult(
        page=page,
        state=outcome.state,
        text=text,
        error=error,
        duration_ms=outcome.duration_ms,
        dpi=outcome.extra.get("dpi"),
        quality=quality,
    )


async def read_page_texts(
    storage: AsyncObjectStorage, job_id: str, pages: list[int]
) -> dict[int, str]:
    """Read the stored text of `pages`, a bounded number at a time."""
    limit = asyncio.Semaphore(READ_CONCURRENCY)

    async def read(page: int) -> tuple[int, str]:
        async with limit:
            data = await storage.get_bytes(page_text_object_key(job_id, page))
        return page, data.decode("utf-8")

    try:
        return dict(await asyncio.gather(*(read(page) for page in pages)))
    except ObjectNotFound as error:
        # Text objects removed with their job (deleted or cancelled meanwhile).
        raise JobNotFound() from error
