"""Response bodies of the OCR routes, as they appear in the OpenAPI schema."""

from dataclasses import asdict
from typing import Any

from pydantic import BaseModel, Field

from core.errors import ErrorCode
from core.jobs import JobRecord, JobStatus, PageState


class SubmitResponse(BaseModel):
    job_id: str
    status: JobStatus
    result_url: str


class JobError(BaseModel):
    code: ErrorCode
    message: str

    @classmethod
    def of_record(cls, record: JobRecord) -> "JobError | None":
        """Return a failed job's error, or None for a job that has not failed."""
        if record.status != JobStatus.FAILED:
            return None
        return cls(
            code=record.error_code or ErrorCode.INTERNAL_ERROR,
            message=record.error_message or "",
        )


def fields_of(record: JobRecord, model: type[BaseModel]) -> dict[str, Any]:
    """Return the record's fields that `model` also has, for building it."""
    return {
        name: value
        for name, value in asdict(record).items()
        if name in model.model_fields
    }


class PageQuality(BaseModel):
    source: str = Field(
        description="ocr, or text_layer when the PDF page's own text was used."
    )
    rotation: int = Field(
        description="Degrees the page was turned clockwise before OCR: 0, 90, 180 "
        "or 270."
    )
    rotation_confidence: float | None = Field(
        description="Tesseract's orientation confidence; null when not estimated."
    )
    skew: float = Field(
        default=0.0,
        description="Degrees the page was turned counter-clockwise to level its "
        "lines; 0 when it was level enough.",
    )
    words: int = Field(description="Words recognized.")
    mean_confidence: float | None = Field(description="Mean word confidence, 0-100.")
    min_confidence: float | None = Field(description="Lowest word confidence, 0-100.")


class PageResult(BaseModel):
    page: int = Field(description="1-based page number.")
    state: PageState
    text: str | None = Field(
        description="The page's text once done; null while pending, when failed, "
        "or when the document's text is too large to inline."
    )
    error: JobError | None
    duration_ms: int | None = Field(description="Rendering and OCR time of the page.")
    dpi: int | None = Field(description="Resolution the page was read at.")
    quality: PageQuality | None = Field(
        default=None, description="How the page was read; once it is done."
    )


class JobResult(BaseModel):
    job_id: str
    status: JobStatus
    file_type: str = Field(description="png, jpeg or pdf, detected from the bytes.")
    filename: str | None = Field(description="The client's file name, base name only.")
    sha256: str | None = Field(
        description="SHA-256 of the uploaded bytes, hex; for a direct upload, null "
        "until a worker has read the file."
    )
    size_bytes: int
    page_count: int | None = Field(description="Known once a worker has read the file.")
    pages_done: int = Field(description="Pages with an outcome, failed ones included.")
    partial: bool = Field(description="True when the job finished with failed pages.")
    created_at: str
    started_at: str | None
    finished_at: str | None
    deadline_at: str | None = Field(
        default=None, description="When pages still pending fail (PDFs only)."
    )
    duration_ms: int | None = Field(description="started_at to finished_at.")
    text: str | None = Field(
        default=None,
        description="Page texts joined by a blank line; when finished and inlined.",
    )
    text_inline: bool = Field(
        default=True,
        description="False when the text is too large for this body; read text_url.",
    )
    text_url: str = Field(default="", description="The whole text as text/plain.")
    pages: list[PageResult] | None = Field(
        default=None, description="Every page with its state, once the count is known."
    )
    error: JobError | None = Field(default=None, description="When failed.")
    tag: str | None = Field(default=None, description="The client's tag, if given.")
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="The OCR options the job runs with: lang, pages, dpi, psm, mode "
        "and outputs, as given or defaulted.",
    )
    output_urls: dict[str, str] = Field(
        default_factory=dict,
        description="Where each requested output is served once the job finished.",
    )

    @classmethod
    def from_record(cls, record: JobRecord) -> "JobResult":
        """Build the summary from a job record; text, pages and error stay unset."""
        fields = fields_of(record, cls)
        fields["sha256"] = fields.get("sha256") or None
        return cls(**fields)


class JobSummary(BaseModel):
    job_id: str
    status: JobStatus
    file_type: str
    filename: str | None
    size_bytes: int
    page_count: int | None
    pages_done: int
    partial: bool
    created_at: str
    finished_at: str | None
    error: JobError | None = None
    tag: str | None = None
    result_url: str

    @classmethod
    def from_record(cls, record: JobRecord, result_url: str) -> "JobSummary":
        fields = fields_of(record, cls)
        fields["error"] = JobError.of_record(record)
        return cls(**fields, result_url=result_url)


class JobList(BaseModel):
    jobs: list[JobSummary] = Field(description="Newest first.")
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null when none is left."
    )


class DeliveryAttempt(BaseModel):
    attempt: int
    attempted_at: str
    outcome: str = Field(description="delivered, failed or rejected.")
    status_code: int | None = Field(description="The receiver's HTTP status.")
    error: str | None
    duration_ms: int
    next_attempt_at: str | None = Field(description="When a failed attempt is retried.")


class Deliveries(BaseModel):
    job_id: str
    callback_url: str | None
    state: str = Field(
        description="none (no callback_url), pending (not attempted yet), retrying, "
        "delivered, failed (every attempt failed) or rejected (address refused)."
    )
    attempts: list[DeliveryAttempt] = Field(description="Oldest first.")


class UsageCounts(BaseModel):
    jobs: int = Field(description="Jobs accepted.")
    pages: int = Field(description="Page outcomes recorded, failed ones included.")
    pages_failed: int
    bytes: int = Field(description="Bytes of accepted documents.")


class DayUsage(UsageCounts):
    date: str = Field(description="UTC day, YYYY-MM-DD.")


class Usage(BaseModel):
    caller: str = Field(description="The API key name (ip:<address> when open).")
    days: list[DayUsage] = Field(description="Newest first, days without use too.")
    total: UsageCounts = Field(description="Sums over `days`.")


class HealthStatus(BaseModel):
    status: str


class Readiness(HealthStatus):
    workers: int = Field(description="Workers whose heartbeat is at most 30 s old.")
    queues: dict[str, int] = Field(description="Stages waiting, by queue.")
