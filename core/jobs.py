"""The job record kept in Redis: statuses, key layout and (de)serialization.

A job is one Redis hash with a small summary (never file bytes, never text) and one
hash of per-page outcomes. Page text lives in object storage under `jobs/<job_id>/`.
Both hashes expire RESULT_TTL_SECONDS after the job was created, and again that long
after it ends.
"""

import json
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from core.ocr_options import parse_page_ranges


class JobStatus(StrEnum):
    QUEUED = "queued"
    STARTED = "started"
    FINISHED = "finished"
    FAILED = "failed"


TERMINAL_STATUSES = frozenset({JobStatus.FINISHED, JobStatus.FAILED})


class PageState(StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


# Sorted set of documents still running, scored by their deadline (Unix seconds).
DEADLINES_KEY = "pindai:deadlines"


def job_key(job_id: str) -> str:
    return f"pindai:job:{job_id}"


def pages_key(job_id: str) -> str:
    return f"pindai:job:{job_id}:pages"


def active_jobs_key(caller: str) -> str:
    """Sorted set of a caller's jobs that have not ended, scored by creation time."""
    return f"pindai:active:{caller}"


def owner_jobs_key(owner: str) -> str:
    """Sorted set of every job a caller created, scored by creation time."""
    return f"pindai:owner:{owner}:jobs"


def upload_key(upload_id: str) -> str:
    """Return the Redis key of a direct upload; its id becomes the job's id."""
    return f"pindai:upload:{upload_id}"


def events_channel(job_id: str) -> str:
    """Pub/sub channel on which a job's end is announced, for long-polling readers."""
    return f"pindai:job:{job_id}:events"


def source_object_key(job_id: str) -> str:
    return f"jobs/{job_id}/source"


def upload_object_key(upload_id: str) -> str:
    """Return where a direct upload lands; a checked one is copied to its job key."""
    return f"uploads/{upload_id}/source"


def upload_object_prefix(upload_id: str) -> str:
    return f"uploads/{upload_id}/"


def result_path(job_id: str) -> str:
    """Return the API path of a job's result, relative to the API's base URL."""
    return f"/api/v1/ocr/result/{job_id}"


def page_text_object_key(job_id: str, page: int) -> str:
    return f"jobs/{job_id}/pages/{page:05d}.txt"


def page_output_object_key(job_id: str, page: int, output: str) -> str:
    """Return the key of one page's part of a `words`, `hocr` or `pdf` output."""
    suffix = {"words": "words.json", "hocr": "hocr", "pdf": "pdf"}[output]
    return f"jobs/{job_id}/pages/{page:05d}.{suffix}"


def output_object_key(job_id: str, output: str) -> str:
    """Return the key of a job's assembled output; `text` is the document's text."""
    if output == "text":
        return text_object_key(job_id)
    name = {"words": "words.json", "hocr": "document.hocr", "pdf": "document.pdf"}
    return f"jobs/{job_id}/{name[output]}"


def text_object_key(job_id: str) -> str:
    """Return the key of the whole document's text, assembled when the job finishes."""
    return f"jobs/{job_id}/text.txt"


def job_object_prefix(job_id: str) -> str:
    return f"jobs/{job_id}/"


def utc_now() -> datetime:
    return datetime.now(UTC)


def parse_timestamp(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def format_timestamp(moment: datetime) -> str:
    """Format as ISO 8601 in UTC with millisecond precision and a Z suffix."""
    return (
        moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


@dataclass
class JobRecord:
    """The summary of one job, as stored in its Redis hash."""

    job_id: str
    status: JobStatus
    file_type: str
    filename: str | None
    sha256: str
    size_bytes: int
    request_id: str
    created_at: str
    # The API key name that created the job ("ip:<address>" when the API runs open).
    owner: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    duration_ms: int | None = None
    deadline_at: str | None = None
    page_count: int | None = None
    pages_done: int = 0
    partial: bool = False
    error_code: str | None = None
    error_message: str | None = None
    # Webhook: where to POST the outcome, the client's tag to echo, and the API's
    # public base URL, which makes the result URL in the body absolute.
    callback_url: str | None = None
    tag: str | None = None
    base_url: str | None = None
    # The OCR options (core.ocr_options), and the document pages being read as range
    # text when the `pages` option selects some (set once the page count is known).
    options: dict[str, Any] = field(default_factory=dict)
    page_numbers: str | None = None
    # The Redis key of the Idempotency-Key claim that created the job, if any.
    idempotency_claim: str | None = None

    def pages_to_read(self) -> list[int]:
        """Return the document page numbers this job reads, in order."""
        if self.page_numbers:
            return parse_page_ranges(self.page_numbers, max_pages=self.page_count or 0)
        return list(range(1, (self.page_count or 0) + 1))

    def to_redis(self) -> dict[str, str]:
        """Encode as hash fields; None values are left out so HSET can take the rest."""
        fields = {
            name: _encode(value)
            for name, value in asdict(self).items()
            if value is not None and name != "options"
        }
        fields["options"] = json.dumps(self.options, separators=(",", ":"))
        return fields

    @classmethod
    def from_redis(cls, job_id: str, raw: dict[Any, Any]) -> "JobRecord | None":
        """Decode an HGETALL reply; return None for a missing or partial hash."""
        values = {_text(key): _text(value) for key, value in raw.items()}
        if "status" not in values or "created_at" not in values:
            return None
        record = cls(
            job_id=job_id,
            status=JobStatus(values["status"]),
            file_type=values.get("file_type", ""),
            filename=values.get("filename"),
            sha256=values.get("sha256", ""),
            size_bytes=int(values.get("size_bytes", 0)),
            request_id=values.get("request_id", ""),
            created_at=values["created_at"],
            owner=values.get("owner", ""),
        )
        for name in (
            "started_at",
            "finished_at",
            "deadline_at",
            "error_code",
            "error_message",
            "callback_url",
            "tag",
            "base_url",
            "page_numbers",
            "idempotency_claim",
        ):
            setattr(record, name, values.get(name))
        for name in ("duration_ms", "page_count"):
            if name in values:
                setattr(record, name, int(values[name]))
        record.options = json.loads(values.get("options") or "{}")
        record.pages_done = int(values.get("pages_done", 0))
        record.partial = values.get("partial") == "1"
        return record


@dataclass
class PageOutcome:
    """The outcome of one page: done (its text is in storage) or failed with a code."""

    page: int
    duration_ms: int
    error_code: str | None = None
    error_message: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error_code is None

    @property
    def state(self) -> PageState:
        return PageState.DONE if self.ok else PageState.FAILED

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> "PageOutcome":
        data = json.loads(raw)
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


def _encode(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
