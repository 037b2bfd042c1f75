"""The closed set of error codes that clients see, and the exceptions that carry them.

Each code has one HTTP status and a flag for whether repeating the request can help.
The API returns the code in every error body; the workers store it on failed jobs
and failed pages.
"""

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar


class ErrorCode(StrEnum):
    INVALID_REQUEST = "invalid_request"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    EMPTY_FILE = "empty_file"
    FILE_TOO_LARGE = "file_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    JOB_NOT_FOUND = "job_not_found"
    PDF_CORRUPT = "pdf_corrupt"
    PDF_ENCRYPTED = "pdf_encrypted"
    TOO_MANY_PAGES = "too_many_pages"
    PAGES_OUT_OF_RANGE = "pages_out_of_range"
    IMAGE_CORRUPT = "image_corrupt"
    IMAGE_TOO_LARGE = "image_too_large"
    OCR_TIMEOUT = "ocr_timeout"
    OCR_FAILED = "ocr_failed"
    WORKER_LOST = "worker_lost"
    CANCELLED = "cancelled"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    PAGE_NOT_FOUND = "page_not_found"
    OUTPUT_NOT_FOUND = "output_not_found"
    UPLOAD_TIMEOUT = "upload_timeout"
    UPLOAD_NOT_FOUND = "upload_not_found"
    CALLBACK_URL_REFUSED = "callback_url_refused"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    UNAUTHORIZED = "unauthorized"
    RATE_LIMITED = "rate_limited"
    NOT_SUPPORTED = "not_supported"
    STORAGE_UNAVAILABLE = "storage_unavailable"
    QUEUE_UNAVAILABLE = "queue_unavailable"
    INTERNAL_ERROR = "internal_error"


RESPONSE = "response"
JOB = "job"
PAGE = "page"


@dataclass(frozen=True)
class ErrorSpec:
    http_status: int
    retryable: bool
    description: str
    # Where clients meet the code: an HTTP error response, a failed job's `error`,
    # or a failed page's `error` inside a finished job.
    surfaces: tuple[str, ...] = (RESPONSE,)


# The README's error table is generated from this mapping (scripts/error_table.py).
ERROR_SPECS: dict[ErrorCode, ErrorSpec] = {
    ErrorCode.INVALID_REQUEST: ErrorSpec(
        422, False, "The request is malformed: a missing or unknown field, a bad value."
    ),
    ErrorCode.NOT_FOUND: ErrorSpec(404, False, "No route matches the path."),
    ErrorCode.METHOD_NOT_ALLOWED: ErrorSpec(
        405, False, "The route exists but not for this HTTP method."
    ),
    ErrorCode.EMPTY_FILE: ErrorSpec(400, False, "The uploaded file has no bytes."),
    ErrorCode.FILE_TOO_LARGE: ErrorSpec(
        413, False, "The file is larger than MAX_UPLOAD_BYTES."
    ),
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: ErrorSpec(
        415,
        False,
        "The file's bytes are not PNG, JPEG, TIFF, WebP or PDF, or the body is not "
        "multipart.",
    ),
    ErrorCode.JOB_NOT_FOUND: ErrorSpec(
        404, False, "No job has this id: it never existed, expired or is malformed."
    ),
    ErrorCode.PDF_CORRUPT: ErrorSpec(
        422,
        False,
        "The PDF cannot be read, has no pages, or a page cannot be rendered.",
        (JOB, PAGE),
    ),
    ErrorCode.PDF_ENCRYPTED: ErrorSpec(
        422,
        False,
        "The PDF needs a password to open; send a decrypted copy.",
        (JOB,),
    ),
    ErrorCode.TOO_MANY_PAGES: ErrorSpec(
        422,
        False,
        "The document has more pages than MAX_PAGES and no `pages` option selects "
        "fewer; split it or select pages.",
        (JOB,),
    ),
    ErrorCode.PAGES_OUT_OF_RANGE: ErrorSpec(
        422,
        False,
        "The pages option selects a page past the end of the document.",
        (JOB,),
    ),
    ErrorCode.IMAGE_CORRUPT: ErrorSpec(
        422,
        False,
        "The image is truncated or cannot be decoded.",
        (JOB,),
    ),
    ErrorCode.IMAGE_TOO_LARGE: ErrorSpec(
        422,
        False,
        "The image or rendered page has more pixels than MAX_IMAGE_PIXELS "
        "or a side longer than Tesseract accepts.",
        (JOB, PAGE),
    ),
    ErrorCode.OCR_TIMEOUT: ErrorSpec(
        422,
        False,
        "A page was not rendered within RASTER_TIMEOUT_SECONDS or not read by "
        "Tesseract within PAGE_TIMEOUT_SECONDS.",
        (JOB, PAGE),
    ),
    ErrorCode.OCR_FAILED: ErrorSpec(
        500,
        True,
        "Tesseract exited with an error or wrote no output.",
        (JOB, PAGE),
    ),
    ErrorCode.WORKER_LOST: ErrorSpec(
        500,
        True,
        "The worker running the job or page died more often than the retry budget "
        "allows; submit the file again.",
        (JOB, PAGE),
    ),
    ErrorCode.CANCELLED: ErrorSpec(
        409, False, "The job was cancelled with DELETE before it ended.", (JOB,)
    ),
    ErrorCode.DEADLINE_EXCEEDED: ErrorSpec(
        504,
        True,
        "The page was not done by the document's deadline (deadline_at).",
        (JOB, PAGE),
    ),
    ErrorCode.PAGE_NOT_FOUND: ErrorSpec(
        404, False, "The job has no page with this number."
    ),
    ErrorCode.OUTPUT_NOT_FOUND: ErrorSpec(
        404,
        False,
        "The job was not asked for this output, or has not finished, or failed.",
    ),
    ErrorCode.UNAUTHORIZED: ErrorSpec(
        401,
        False,
        "No API key, or an unknown one; send Authorization: Bearer <key> or X-API-Key.",
    ),
    ErrorCode.RATE_LIMITED: ErrorSpec(
        429,
        True,
        "Over the key's requests per minute or active jobs; retry after Retry-After "
        "seconds.",
    ),
    ErrorCode.UPLOAD_NOT_FOUND: ErrorSpec(
        404,
        False,
        "The upload id is unknown, expired or already used, or nothing was uploaded "
        "to its URL yet.",
    ),
    ErrorCode.CALLBACK_URL_REFUSED: ErrorSpec(
        422,
        False,
        "The callback_url resolves to a loopback, private, link-local or metadata "
        "address, or does not resolve; WEBHOOK_ALLOWED_NETWORKS admits networks.",
    ),
    ErrorCode.IDEMPOTENCY_CONFLICT: ErrorSpec(
        409,
        False,
        "The Idempotency-Key was already used with another file or other options.",
    ),
    ErrorCode.NOT_SUPPORTED: ErrorSpec(
        501,
        False,
        "The server's configuration does not offer this route (presigned uploads "
        "need STORAGE_BACKEND=s3).",
    ),
    ErrorCode.UPLOAD_TIMEOUT: ErrorSpec(
        408,
        True,
        "The upload stalled for UPLOAD_IDLE_SECONDS or took longer than "
        "UPLOAD_TIMEOUT_SECONDS.",
    ),
    ErrorCode.STORAGE_UNAVAILABLE: ErrorSpec(
        503,
        True,
        "Object storage did not answer; retry after Retry-After seconds.",
        (RESPONSE, JOB),
    ),
    ErrorCode.QUEUE_UNAVAILABLE: ErrorSpec(
        503, True, "Redis did not answer; retry after Retry-After seconds."
    ),
    ErrorCode.INTERNAL_ERROR: ErrorSpec(
        500,
        True,
        "An unexpected error; the request id finds it in the logs.",
        (RESPONSE, JOB),
    ),
}


class PindaiError(Exception):
    """Base of every error that maps to one client-visible code."""

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL_ERROR
    default_message: ClassVar[str] = "An unexpected error occurred."

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        # Set once the error is stored on its job or page, so it is stored only once.
        self.recorded = False
        super().__init__(self.message)

    @property
    def http_status(self) -> int:
        return ERROR_SPECS[self.code].http_status


class InvalidRequest(PindaiError):
    """The request is malformed."""

    code = ErrorCode.INVALID_REQUEST
    default_message = "The request is invalid."


class EmptyFile(PindaiError):
    """The uploaded file has no bytes."""

    code = ErrorCode.EMPTY_FILE
    default_message = "The uploaded file is empty."


class FileTooLarge(PindaiError):
    """The upload is over the size limit."""

    code = ErrorCode.FILE_TOO_LARGE


class UnsupportedMediaType(PindaiError):
    """The bytes are of a type the API does not OCR."""

    code = ErrorCode.UNSUPPORTED_MEDIA_TYPE
    default_message = "The file is not a PNG, JPEG, TIFF, WebP or PDF."


class JobNotFound(PindaiError):
    """No job with this id is readable."""

    code = ErrorCode.JOB_NOT_FOUND
    default_message = "No job with this id exists, or its results have expired."


class PdfCorrupt(PindaiError):
    """poppler cannot read the PDF or one of its pages."""

    code = ErrorCode.PDF_CORRUPT
    default_message = "The PDF is damaged and cannot be read."


class PdfEncrypted(PindaiError):
    """The PDF needs a user password."""

    code = ErrorCode.PDF_ENCRYPTED
    default_message = (
        "The PDF is protected by a password; remove the password and upload it again."
    )


class PagesOutOfRange(PindaiError):
    """The pages option names pages the document does not have."""

    code = ErrorCode.PAGES_OUT_OF_RANGE


class OutputNotFound(PindaiError):
    """The requested output does not exist for this job (yet)."""

    code = ErrorCode.OUTPUT_NOT_FOUND


class TooManyPages(PindaiError):
    """The PDF has more pages than allowed."""

    code = ErrorCode.TOO_MANY_PAGES


class ImageCorrupt(PindaiError):
    """Pillow cannot decode the image."""

    code = ErrorCode.IMAGE_CORRUPT
    default_message = "The image is truncated or damaged and cannot be decoded."


class ImageTooLarge(PindaiError):
    """The image or rendered page is over the pixel cap."""

    code = ErrorCode.IMAGE_TOO_LARGE


class OcrTimeout(PindaiError):
    """Tesseract ran past its per-page time limit."""

    code = ErrorCode.OCR_TIMEOUT


class OcrFailed(PindaiError):
    """Tesseract failed or produced no output."""

    code = ErrorCode.OCR_FAILED


class WorkerLost(PindaiError):
    """The process running the job died."""

    code = ErrorCode.WORKER_LOST
    default_message = "The worker running this job stopped unexpectedly."


class Cancelled(PindaiError):
    """The client cancelled the job."""

    code = ErrorCode.CANCELLED
    default_message = "The job was cancelled."


class DeadlineExceeded(PindaiError):
    """The page was still pending when the document's deadline passed."""

    code = ErrorCode.DEADLINE_EXCEEDED
    default_message = "The page was not done before the document's deadline."


class PageNotFound(PindaiError):
    """The job has no page with this number."""

    code = ErrorCode.PAGE_NOT_FOUND


class UploadTimeout(PindaiError):
    """The request body arrived too slowly."""

    code = ErrorCode.UPLOAD_TIMEOUT


class Unauthorized(PindaiError):
    """The request carries no valid API key."""

    code = ErrorCode.UNAUTHORIZED
    default_message = (
        "A valid API key is required: send 'Authorization: Bearer <key>' or "
        "'X-API-Key: <key>'."
    )


class RateLimited(PindaiError):
    """The caller is over one of its limits."""

    code = ErrorCode.RATE_LIMITED

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class UploadNotFound(PindaiError):
    """No usable upload has this id."""

    code = ErrorCode.UPLOAD_NOT_FOUND
    default_message = "No upload with this id exists, or it was already used."


class CallbackUrlRefused(PindaiError):
    """The callback URL points at an address webhooks may not reach."""

    code = ErrorCode.CALLBACK_URL_REFUSED


class IdempotencyConflict(PindaiError):
    """An Idempotency-Key is reused for a different request."""

    code = ErrorCode.IDEMPOTENCY_CONFLICT
    default_message = (
        "This Idempotency-Key was already used with another file or other options; "
        "use a new key for a new request."
    )


class NotSupported(PindaiError):
    """The route needs a feature this deployment does not have."""

    code = ErrorCode.NOT_SUPPORTED


class StorageUnavailable(PindaiError):
    """Object storage failed or did not respond."""

    code = ErrorCode.STORAGE_UNAVAILABLE
    default_message = "Object storage is unavailable; try again shortly."


class QueueUnavailable(PindaiError):
    """Redis failed or did not respond."""

    code = ErrorCode.QUEUE_UNAVAILABLE
    default_message = "The job queue is unavailable; try again shortly."


class InternalError(PindaiError):
    """An unexpected failure."""

    code = ErrorCode.INTERNAL_ERROR


def error_for_code(code: str, message: str | None = None) -> PindaiError:
    """Build the exception that carries `code`, e.g. to re-raise a stored error."""
    for error_class in PindaiError.__subclasses__():
        if error_class.code == code:
            return error_class(message)
    return InternalError(message)
